"""Helpers shared by the classic MNIST reproductions (``tramer2018``, ``papernot2016``,
``carlini2017``, ``madry2018``): batched attack runs, error rates, per-target distance
statistics and "ordering" cells."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from advlab.attacks import Attack
from advlab.attacks.base import TargetSpec
from advlab.models import Classifier
from advlab.reproduce._runs import Outputs, check_batches, join, run_batch
from advlab.reproduce.base import Cell


def attack_all(
    attack: Attack,
    model: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    target: Tensor | None = None,
    batch_size: int = 500,
) -> Outputs:
    """Run ``attack`` on ``(x, y)`` in batches of ``batch_size`` (targets sliced alongside)."""
    check_batches(y, target, batch_size)
    parts = []
    for i in range(0, x.shape[0], batch_size):
        t: TargetSpec = None if target is None else target[i : i + batch_size]
        parts.append(run_batch(attack, model, x[i : i + batch_size], y[i : i + batch_size], t))
    return join(parts)


def error_pct(model: Classifier, x: Tensor, y: Tensor) -> float:
    """Percentage of ``x`` that ``model`` (in eval mode) misclassifies."""
    was = model.training
    model.eval()
    try:
        return 100 * float((model.predict(x) != y).float().mean())
    finally:
        model.train(was)


def all_targets(y: Tensor, num_classes: int = 10) -> tuple[Tensor, Tensor]:
    """Every other class of every sample: ``(index (N·(K-1),), target (N·(K-1),))``, sample
    by sample (``index`` repeats each sample ``K - 1`` times)."""
    n = y.shape[0]
    classes = torch.arange(num_classes, device=y.device).expand(n, num_classes)
    keep = classes != y.view(-1, 1)
    target = classes[keep]
    index = torch.arange(n, device=y.device).repeat_interleave(num_classes - 1)
    return index, target


@dataclass
class TargetStats:
    """Over samples attacked towards every other class: success rate (%) of all pairs, and
    the mean distance of the best (closest successful target per sample), average (all
    successful pairs) and worst case (farthest target, samples whose every target succeeded).
    A distance is ``nan`` when no sample qualifies."""

    success: float
    best: float
    average: float
    worst: float


def target_stats(success: Tensor, norms: Tensor) -> TargetStats:
    """:class:`TargetStats` from ``success``/``norms`` of shape ``(N, K-1)``."""
    if success.shape != norms.shape or success.ndim != 2:
        raise ValueError(
            f"success and norms must share a 2-D shape (N, K-1); got {tuple(success.shape)} "
            f"and {tuple(norms.shape)}"
        )
    ok = success.bool()
    d = norms.double()
    inf = torch.full_like(d, math.inf)
    best = torch.where(ok, d, inf).min(1).values
    best = best[torch.isfinite(best)]
    full = ok.all(1)
    worst = d[full].max(1).values if bool(full.any()) else d.new_empty(0)

    def mean(v: Tensor) -> float:
        return float(v.mean()) if v.numel() else math.nan

    return TargetStats(100 * float(ok.float().mean()), mean(best), mean(d[ok]), mean(worst))


def finite(value: float) -> float | None:
    """``value``, or ``None`` where it is not a finite number (an empty statistic)."""
    return value if math.isfinite(value) else None


def order_cell(
    table: str, row: str, column: str, paper_gap: float, ours_gap: float, note: str = ""
) -> Cell:
    """A cell that checks an ordering: ``paper_gap`` (> 0, the paper's difference) beside ours;
    it is within tolerance iff our difference is >= 0, i.e. the ordering holds."""
    return Cell(
        table,
        row,
        column,
        paper_gap,
        ours_gap,
        unit="%",
        tolerance=paper_gap,
        bound="min",
        note=note or "ordering: holds when ours >= 0",
    )
