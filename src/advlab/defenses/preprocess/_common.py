"""Shared pieces of the input-transformation defenses: the transform-then-classify pipeline,
the BPDA view, parameter checks, seeded randomness and mode-preserving views."""

from __future__ import annotations

import math
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from advlab.defenses.base import Defended, bpda
from advlab.models.classifier import Classifier, wrap_like
from advlab.models.eot import eot
from advlab.utils.modes import restored_modes

# --------------------------------------------------------------------------- parameter checks


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; ``ValueError`` naming the parameter otherwise."""
    ok = not isinstance(value, bool) and isinstance(value, int)
    if not ok or value < low or (high is not None and value > high):
        where = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {where}; got {value!r}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = True,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval (``low_open``/``high_open`` exclude ends)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        interval = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}; got {value!r}")
    return float(value)


def check_seed(seed: Any) -> int:
    """A resolved seed: ``None`` draws a fresh one (recorded in ``defense_args``)."""
    if seed is None:
        return secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None; got {seed!r}")
    return int(seed)


def image_shape(x: Tensor, what: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image batch ``(N, C, H, W)``; ``ValueError`` for other shapes."""
    if x.ndim != 4:
        raise ValueError(f"{what} works on image batches (N, C, H, W); got {tuple(x.shape)}")
    return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])


def base_image_shape(base: Classifier, what: str) -> tuple[int, int, int] | None:
    """The base's ``(C, H, W)`` when known; ``ValueError`` when it is not an image shape."""
    shape = base.input_shape
    if shape is None:
        return None
    if len(shape) != 3:
        raise ValueError(f"{what} needs an image model (C, H, W); the base takes {shape}")
    return int(shape[0]), int(shape[1]), int(shape[2])


# ------------------------------------------------------------------------------ building blocks


def zero_gradient(real: Tensor, x: Tensor) -> Tensor:
    """The value ``real`` with an all-zero input gradient: what autograd honestly gives an attacker
    through a non-differentiable step (``real`` is computed from ``x.detach()``)."""
    return real.detach() + 0.0 * x


def in_bounds(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Clamp into (scalar or per-feature) bounds on ``x``'s device and dtype."""
    lo = low.to(device=x.device, dtype=x.dtype)
    hi = high.to(device=x.device, dtype=x.dtype)
    return torch.maximum(torch.minimum(x, hi), lo)


class Transform(nn.Module, ABC):
    """An input transformation in pixel units, shape-preserving.

    ``real(x)`` is the real operation; ``forward(x)`` is what autograd sees in the defended model
    (the real operation where it is differentiable; its value with a zero gradient where it is
    not). ``low``/``high`` are the base model's bounds (shared references, not copies).
    """

    low: Tensor
    high: Tensor

    def __init__(self, low: Tensor, high: Tensor) -> None:
        super().__init__()
        self.register_buffer("low", low.detach().clone(), persistent=False)
        self.register_buffer("high", high.detach().clone(), persistent=False)

    @abstractmethod
    def real(self, x: Tensor) -> Tensor:
        """The transform itself; each subclass defines it."""

    def forward(self, x: Tensor) -> Tensor:
        return self.real(x)


class TransformThenClassify(nn.Module):
    """``base.logits(transform(x))``: the pipeline of an input-transformation defense. With
    ``draws > 1`` (randomized transforms) the logits are ``log mean softmax`` over that many
    independent transforms of each input."""

    def __init__(self, transform: Transform, base: Classifier) -> None:
        super().__init__()
        self.transform = transform
        self.base = base
        self.draws = 1

    def forward(self, x: Tensor) -> Tensor:
        if self.draws == 1:
            return self.base.logits(self.transform(x), check=False)
        logp = torch.stack(
            [
                torch.log_softmax(self.base.logits(self.transform(x), check=False), 1)
                for _ in range(self.draws)
            ]
        )
        return torch.logsumexp(logp, 0) - math.log(self.draws)


class _BPDAThenClassify(nn.Module):
    """``base(bpda(transform.real(x), x))``: the real transform forward, identity backward."""

    def __init__(self, model: InputTransformDefense) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        t = self.model.pipeline.transform
        with torch.no_grad():
            real = t.real(x.detach())
        return self.model.base.logits(bpda(real.to(x.dtype), x), check=False)


def view_of(model: Classifier, net: nn.Module) -> Classifier:
    """``wrap_like(model, net)`` without changing the train/eval flag of anything inside
    ``model`` (``wrap_like`` sets the wrapper's mode recursively)."""
    with restored_modes(model):
        return wrap_like(model, net)


def eot_view(model: Classifier, samples: int) -> Classifier:
    """:func:`advlab.models.eot` of ``model``, leaving every mode inside ``model`` as it was."""
    with restored_modes(model):
        return eot(model, samples)


def match_mode(defended: nn.Module, bases: Sequence[nn.Module]) -> None:
    """Give the defense's own modules (not the bases') the first base's train/eval flag, so a
    freshly built defense around an eval-mode model is in eval mode too."""
    inside = {id(m) for b in bases for m in b.modules()}
    flag = bases[0].training
    for m in defended.modules():
        if id(m) not in inside:
            m.training = flag


class InputTransformDefense(Defended):
    """A defense ``x -> base(t(x))`` with an input transformation ``t`` (a :class:`Transform`).

    ``transform(x)`` applies the real transformation (no gradient bookkeeping); ``naive()`` is the
    model itself (autograd as it comes); ``adaptive()`` depends on the gradient story: itself for
    ``"exact"``, the BPDA identity view for ``"bpda"``, the EOT view for ``"eot"``.
    """

    def __init__(self, base: Classifier, transform: Transform) -> None:
        if not isinstance(base, Classifier):
            raise TypeError(f"a defense needs an advlab Classifier as its base; got {base!r}")
        super().__init__(TransformThenClassify(transform, base), [base])
        match_mode(self, [base])

    @property
    def pipeline(self) -> TransformThenClassify:
        net = self.net
        if not isinstance(net, TransformThenClassify):  # pragma: no cover - set in __init__
            raise TypeError("an input-transformation defense's net must be its pipeline")
        return net

    @torch.no_grad()
    def transform(self, x: Tensor) -> Tensor:
        """The transformed inputs ``t(x)`` (same shape, device and dtype; no gradient)."""
        self.check_input(x)
        return self.pipeline.transform.real(x.detach())

    def bpda_view(self) -> Classifier:
        """The defended model with the real transform forward and the identity backward (BPDA,
        Athalye, Carlini & Wagner 2018)."""
        return view_of(self, _BPDAThenClassify(self))

    def adaptive(self) -> Classifier:
        if self.gradient == "bpda":
            return self.bpda_view()
        return self
