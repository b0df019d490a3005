"""Lp-ball strategies shared by every attack (DESIGN §3): one object per norm, not one class
per (attack, norm) pair.

Each strategy works on perturbations ``delta`` of shape ``(N, ...)`` with per-sample radii
``eps`` of shape ``(N,)`` (or a float) and offers:

* ``size(delta) -> (N,)``: the perturbation's norm;
* ``project(delta, eps) -> delta``: the closest point of the eps-ball (exact Euclidean
  projection for Linf, L2, L1 and L0);
* ``direction(grad) -> (N, ...)``: the steepest-ascent direction of unit size
  (``argmax_{||d|| <= 1} <grad, d>``): ``sign`` for Linf, ``grad / ||grad||_2`` for L2, the
  largest coordinates for L1 (sparse steps, Tramèr & Boneh 2019), the single largest for L0;
* ``random(shape, eps, generator) -> delta``: a random point of the ball (uniform in volume for
  Linf and L2; for L1 a Laplace-direction scaled to a uniform radius; for L0 random pixels).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from advlab.types import Norm, check_norm

_TINY = 1e-12


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _in_ball(direction: Tensor, eps: Tensor | float, generator: torch.Generator) -> Tensor:
    """Scale unit-norm ``direction (N, ...)`` by ``eps · U^(1/d)``: uniform in volume."""
    d = direction[0].numel()
    u = torch.rand(direction.shape[0], generator=generator, device=direction.device)
    r = u ** (1.0 / d)
    return direction * r.view(-1, *([1] * (direction.ndim - 1))) * _per_sample(eps, direction)


def _per_sample(eps: Tensor | float, t: Tensor) -> Tensor:
    """``eps`` as a ``(N, 1, ..., 1)`` tensor broadcastable against ``t``."""
    e = torch.as_tensor(eps, dtype=t.dtype, device=t.device)
    if e.ndim == 0:
        e = e.expand(t.shape[0])
    return e.view(-1, *([1] * (t.ndim - 1)))


class LpNorm(ABC):
    """An Lp-ball strategy; see the module docstring."""

    name: ClassVar[Norm]
    p: ClassVar[float]

    def size(self, delta: Tensor) -> Tensor:
        out: Tensor = torch.linalg.vector_norm(_flat(delta), ord=self.p, dim=1)
        return out

    @abstractmethod
    def project(self, delta: Tensor, eps: Tensor | float) -> Tensor: ...

    @abstractmethod
    def direction(self, grad: Tensor) -> Tensor: ...

    @abstractmethod
    def random(
        self,
        shape: torch.Size | tuple[int, ...],
        eps: Tensor | float,
        generator: torch.Generator,
        device: torch.device,
    ) -> Tensor: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linf(LpNorm):
    name = "linf"
    p = float("inf")

    def project(self, delta: Tensor, eps: Tensor | float) -> Tensor:
        e = _per_sample(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)

    def direction(self, grad: Tensor) -> Tensor:
        return grad.sign()

    def random(
        self,
        shape: torch.Size | tuple[int, ...],
        eps: Tensor | float,
        generator: torch.Generator,
        device: torch.device,
    ) -> Tensor:
        u = torch.rand(shape, generator=generator, device=device)
        return (2 * u - 1) * _per_sample(eps, u)


class L2(LpNorm):
    name = "l2"
    p = 2.0

    def project(self, delta: Tensor, eps: Tensor | float) -> Tensor:
        n = self.size(delta).view(-1, *([1] * (delta.ndim - 1)))
        factor = torch.clamp(_per_sample(eps, delta) / n.clamp_min(_TINY), max=1.0)
        return delta * factor

    def direction(self, grad: Tensor) -> Tensor:
        n = self.size(grad).view(-1, *([1] * (grad.ndim - 1)))
        return grad / n.clamp_min(_TINY)

    def random(
        self,
        shape: torch.Size | tuple[int, ...],
        eps: Tensor | float,
        generator: torch.Generator,
        device: torch.device,
    ) -> Tensor:
        g = torch.randn(shape, generator=generator, device=device)
        return _in_ball(self.direction(g), eps, generator)


class L1(LpNorm):
    """L1 ball. ``direction`` moves the top ``sparsity`` fraction of coordinates (by |grad|),
    split evenly, which is the steepest L1 ascent generalized to several coordinates."""

    name = "l1"
    p = 1.0

    def __init__(self, sparsity: float = 0.01) -> None:
        if not 0 < sparsity <= 1:
            raise ValueError(f"sparsity must be in (0, 1]; got {sparsity}")
        self.sparsity = sparsity

    def project(self, delta: Tensor, eps: Tensor | float) -> Tensor:
        """Exact projection onto the L1 ball (Duchi et al. 2008, sort-based)."""
        flat = _flat(delta)
        e = _per_sample(eps, flat).view(-1)
        a = flat.abs()
        inside = a.sum(1) <= e
        srt = a.sort(dim=1, descending=True).values
        csum = srt.cumsum(1)
        k = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
        cond = srt - (csum - e.view(-1, 1)) / k > 0
        rho = cond.to(flat.dtype).mul(k).argmax(1, keepdim=True)  # last index where cond holds
        theta = ((csum.gather(1, rho) - e.view(-1, 1)) / (rho + 1).to(flat.dtype)).clamp_min(0)
        out = flat.sign() * (a - theta).clamp_min(0)
        out = torch.where(inside.view(-1, 1), flat, out)
        return out.view_as(delta)

    def direction(self, grad: Tensor) -> Tensor:
        flat = _flat(grad)
        k = max(1, round(self.sparsity * flat.shape[1]))
        idx = flat.abs().topk(k, dim=1).indices
        out = torch.zeros_like(flat).scatter_(1, idx, flat.gather(1, idx).sign() / k)
        return out.view_as(grad)

    def random(
        self,
        shape: torch.Size | tuple[int, ...],
        eps: Tensor | float,
        generator: torch.Generator,
        device: torch.device,
    ) -> Tensor:
        u = torch.rand(shape, generator=generator, device=device).clamp_min(_TINY)
        s = torch.rand(shape, generator=generator, device=device) < 0.5
        lap = torch.where(s, -torch.log(u), torch.log(u))  # Laplace(0, 1)
        return _in_ball(lap / self.size(lap).view(-1, *([1] * (len(shape) - 1))), eps, generator)

    def __repr__(self) -> str:
        return f"L1(sparsity={self.sparsity})"


class L0(LpNorm):
    """L0 "ball": at most ``eps`` changed coordinates (``eps`` is a count)."""

    name = "l0"
    p = 0.0

    def size(self, delta: Tensor) -> Tensor:
        return (_flat(delta) != 0).sum(1).to(delta.dtype)

    def project(self, delta: Tensor, eps: Tensor | float) -> Tensor:
        flat = _flat(delta)
        k = _per_sample(eps, flat).view(-1).floor().long().clamp(0, flat.shape[1])
        order = flat.abs().argsort(dim=1, descending=True)
        rank = torch.empty_like(order).scatter_(
            1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order)
        )
        return torch.where(rank < k.view(-1, 1), flat, torch.zeros_like(flat)).view_as(delta)

    def direction(self, grad: Tensor) -> Tensor:
        flat = _flat(grad)
        idx = flat.abs().argmax(1, keepdim=True)
        return torch.zeros_like(flat).scatter_(1, idx, flat.gather(1, idx).sign()).view_as(grad)

    def random(
        self,
        shape: torch.Size | tuple[int, ...],
        eps: Tensor | float,
        generator: torch.Generator,
        device: torch.device,
    ) -> Tensor:
        u = torch.rand(shape, generator=generator, device=device) * 2 - 1
        return self.project(u, eps)


_NORMS: dict[str, type[LpNorm]] = {"linf": Linf, "l2": L2, "l1": L1, "l0": L0}


def get_norm(norm: str | LpNorm) -> LpNorm:
    """The strategy for ``"linf"``, ``"l2"``, ``"l1"`` or ``"l0"`` (or pass one through)."""
    if isinstance(norm, LpNorm):
        return norm
    return _NORMS[check_norm(norm)]()
