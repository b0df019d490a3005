"""Run one attack over a dataset in batches and summarize it (the ``advlab attack`` engine)."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from advlab._version import __version__
from advlab.attacks import Attack, AttackResult
from advlab.attacks.base import TargetSpec
from advlab.models.classifier import Classifier
from advlab.utils.metrics import perturbation_norms
from advlab.utils.progress import progress


def _cat(parts: list[AttackResult]) -> AttackResult:
    first = parts[0]
    fields: dict[str, Any] = {}
    for name, value in vars(first).items():
        if isinstance(value, Tensor):
            fields[name] = torch.cat([getattr(p, name) for p in parts])
        elif value is None and name == "target":
            fields[name] = None
        else:
            fields[name] = value
    return AttackResult(**fields)


def attack_dataset(
    clf: Classifier,
    attack: Attack,
    x: Tensor,
    y: Tensor,
    *,
    target: TargetSpec = None,
    batch_size: int = 500,
    device: torch.device | None = None,
) -> tuple[AttackResult, float]:
    """Attack ``x (N, ...)``, ``y (N,)`` in batches (with a progress bar); returns the combined
    result (on the CPU) and the wall time in seconds."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    dev = device or clf.device
    parts = []
    t0 = time.perf_counter()
    for i in progress(
        range(0, x.shape[0], batch_size),
        desc=attack.name,
        total=(x.shape[0] + batch_size - 1) // batch_size,
    ):
        t = target[i : i + batch_size].to(dev) if isinstance(target, Tensor) else target
        res = attack(clf, x[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev), target=t)
        parts.append(res.cpu())
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return _cat(parts), time.perf_counter() - t0


def attack_summary(
    res: AttackResult, x: Tensor, clean_pred: Tensor, seconds: float, attack: Attack
) -> dict[str, Any]:
    """JSON-ready summary: accuracies, success rates, confidence, perturbation statistics."""
    y = res.y
    correct = clean_pred == y
    probs = torch.softmax(res.logits_adv.float(), 1)
    conf = probs.max(1).values
    stats: dict[str, Any] = {}
    for norm, values in perturbation_norms(res.x_adv - x).items():
        stats[norm] = {
            "mean": float(values.mean()),
            "median": float(values.median()),
            "max": float(values.max()),
        }
    wrong_adv = res.logits_adv.argmax(1) != y
    return {
        "attack": attack.name,
        "config": attack.config(),
        "n": len(res),
        "clean_accuracy": float(correct.float().mean()),
        "accuracy_under_attack": res.accuracy,
        "error_under_attack": 1.0 - res.accuracy,
        "attack_success_rate": res.success_rate,
        "success_rate_on_correct": float(res.success[correct].float().mean())
        if correct.any()
        else None,
        "mean_confidence_adv": float(conf.mean()),
        "mean_confidence_on_errors": float(conf[wrong_adv].mean()) if wrong_adv.any() else None,
        "perturbation": stats,
        "queries_mean": float(res.queries.float().mean()),
        "gradients_mean": float(res.gradients.float().mean()),
        "seconds": seconds,
        "targeted": res.targeted,
        "advlab_version": __version__,
        "torch_version": torch.__version__,
    }
