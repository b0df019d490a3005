"""What a batched attack run keeps (:class:`Outputs`), shared by ``_classics.attack_all`` and
the cached :meth:`advlab.reproduce.base.Context.attacked`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advlab.attacks import Attack
from advlab.attacks.base import TargetSpec
from advlab.models import Classifier

FIELDS = ("x_adv", "pred", "success", "norms")


@dataclass
class Outputs:
    """What a batched attack run keeps: ``x_adv (N, ...)``, predictions ``(N,)`` on it,
    ``success (N,)`` and perturbation sizes ``norms (N,)`` in the attack's norm."""

    x_adv: Tensor
    pred: Tensor
    success: Tensor
    norms: Tensor

    def to(self, device: torch.device | str) -> Outputs:
        return Outputs(*(getattr(self, f).to(device) for f in FIELDS))

    def to_dict(self) -> dict[str, Tensor]:
        return {f: getattr(self, f) for f in FIELDS}


def check_batches(y: Tensor, target: Tensor | None, batch: int) -> None:
    """Clear errors for no inputs, a batch size below 1 or targets that do not match the
    labels."""
    if y.shape[0] == 0:
        raise ValueError("no inputs to attack (0 samples)")
    if batch < 1:
        raise ValueError(f"batch size must be >= 1; got {batch}")
    if target is not None and target.shape != y.shape:
        raise ValueError(f"target must have shape {tuple(y.shape)}; got {tuple(target.shape)}")


def run_batch(
    attack: Attack, model: Classifier, x: Tensor, y: Tensor, target: TargetSpec = None
) -> Outputs:
    """``attack`` on one batch (``target``: ``None`` or one target class per input)."""
    r = attack(model, x, y, target=target)
    return Outputs(r.x_adv, r.logits_adv.argmax(1), r.success, r.norms)


def join(parts: list[Outputs], device: torch.device | str | None = None) -> Outputs:
    """The batches' outputs in order, as one :class:`Outputs` (on ``device`` if given)."""
    out = Outputs(*(torch.cat([getattr(p, f) for p in parts]) for f in FIELDS))
    return out if device is None else out.to(device)
