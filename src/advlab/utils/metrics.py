"""Plain classification metrics on label tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(K, K)`` int64 counts; row = true label, column = predicted label."""
    if pred.shape != target.shape or pred.ndim != 1:
        raise ValueError(
            f"pred and target must be 1-D and of equal length; got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    idx = target.long().cpu() * num_classes + pred.long().cpu()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> list[float | None]:
    """Accuracy of each true class (``None`` for a class with no samples)."""
    totals = confusion.sum(1)
    return [
        (float(confusion[k, k]) / float(totals[k])) if totals[k] > 0 else None
        for k in range(confusion.shape[0])
    ]


def perturbation_norms(delta: Tensor) -> dict[str, Tensor]:
    """Per-sample L0 (changed features), L1, L2 and Linf sizes of ``delta (N, ...)``."""
    flat = delta.detach().reshape(delta.shape[0], -1).float()
    return {
        "l0": (flat != 0).sum(1).float(),
        "l1": flat.abs().sum(1),
        "l2": flat.norm(dim=1),
        "linf": flat.abs().amax(1) if flat.shape[1] else flat.new_zeros(flat.shape[0]),
    }
