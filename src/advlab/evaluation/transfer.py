"""Transfer attacks: adversarial inputs crafted on source models, scored on target models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from advlab.evaluation.suites import Suite, get_suite
from advlab.models.classifier import Classifier


def craft(
    source: Classifier,
    suite: Suite,
    norm: str,
    eps: float,
    x: Tensor,
    y: Tensor,
    *,
    seed: int = 0,
    batch_size: int = 500,
) -> list[Tensor]:
    """Adversarial inputs from each budget attack of ``suite`` on ``source`` (minimum-norm attacks
    are skipped: they have no eps), one tensor per attack, on ``x``'s device."""
    out = []
    for k, spec in enumerate(suite.attacks):
        if not spec.budget:
            continue
        atk = spec.build(norm, eps, seed + k)
        parts = [
            atk(source, x[i : i + batch_size], y[i : i + batch_size]).x_adv
            for i in range(0, x.shape[0], batch_size)
        ]
        out.append(torch.cat(parts))
    if not out:
        raise ValueError(f"suite {suite.name!r} has no budget attack to craft transfer inputs with")
    return out


def broken_by_transfer(target: Classifier, crafted: Sequence[Tensor], y: Tensor) -> Tensor:
    """``(N,)`` bool: some crafted input of the sample is misclassified by ``target``."""
    broken = torch.zeros_like(y, dtype=torch.bool)
    for xa in crafted:
        with torch.no_grad():
            broken |= (
                target.logits(xa.to(target.low.device), check=False).argmax(1).to(y.device) != y
            )
    return broken


def transfer_matrix(
    sources: Mapping[str, Classifier],
    targets: Mapping[str, Classifier],
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    suite: str | Suite = "quick",
    norm: str = "linf",
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Accuracy of each target on the inputs crafted on each source (per-sample worst case over
    the suite's budget attacks). Returns the ``transfer`` block of a report: ``{"attack", "eps",
    "n", "sources", "targets", "accuracy": [[...] per source]}``; the diagonal entries where a
    model is both source and target are white-box numbers."""
    if not sources or not targets:
        raise ValueError("give at least one source and one target model")
    s = get_suite(suite, norm)
    rows = []
    for source in sources.values():
        crafted = craft(source, s, norm, eps, x, y, seed=seed, batch_size=batch_size)
        row = []
        for target in targets.values():
            broken = broken_by_transfer(target, crafted, y)
            row.append(1.0 - float(broken.float().mean()))
        rows.append(row)
    titles = [a.title for a in s.attacks if a.budget]
    return {
        "attack": " + ".join(titles),
        "eps": eps,
        "n": int(y.shape[0]),
        "sources": list(sources),
        "targets": list(targets),
        "accuracy": rows,
    }
