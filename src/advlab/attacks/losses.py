"""Attack objectives, per sample, written as the quantity an attack *maximizes*.

Every loss takes ``logits (N, K)``, true labels ``y (N,)`` and optional ``target (N,)``; with a
target it rewards moving towards the target class instead of away from ``y``.

* ``ce``: cross-entropy ``J(x, y)``; targeted ``-J(x, t)`` (Goodfellow et al. 2015; seed 003's
  ``x - eps·sign(∇J(x, y_target))`` is the targeted step).
* ``margin``: the Carlini-Wagner margin, ``max_{j≠y} z_j - z_y`` clipped at ``kappa``
  (untargeted), ``z_t - max_{j≠t} z_j`` clipped at ``kappa`` (targeted). Positive = adversarial.
* ``dlr``: difference of logits ratio (Croce & Hein 2020):
  ``-(z_y - max_{j≠y} z_j) / (z_π1 - z_π3)``; targeted
  ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)``. Needs ≥ 3 (targeted: ≥ 4) classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def _other_max(logits: Tensor, cls: Tensor) -> Tensor:
    """``max_{j != cls} z_j`` per row."""
    return logits.scatter(1, cls.view(-1, 1), float("-inf")).max(1).values


def ce(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def margin(
    logits: Tensor, y: Tensor, target: Tensor | None = None, kappa: float = float("inf")
) -> Tensor:
    if target is None:
        m = _other_max(logits, y) - logits.gather(1, y.view(-1, 1)).squeeze(1)
    else:
        m = logits.gather(1, target.view(-1, 1)).squeeze(1) - _other_max(logits, target)
    return m.clamp(max=kappa)


def dlr(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    srt = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    if target is None:
        if logits.shape[1] < 3:
            raise ValueError("the DLR loss needs at least 3 classes")
        return -(z_y - _other_max(logits, y)) / (srt[:, 0] - srt[:, 2] + 1e-12)
    if logits.shape[1] < 4:
        raise ValueError("the targeted DLR loss needs at least 4 classes")
    z_t = logits.gather(1, target.view(-1, 1)).squeeze(1)
    return -(z_y - z_t) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


LOSSES: dict[str, LossFn] = {"ce": ce, "margin": margin, "dlr": dlr}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None
