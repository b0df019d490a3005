"""Gradient oracles for PGD: exact (autograd) or estimated from forward queries only.

* ``"spsa"`` (Uesato et al. 2018, "Adversarial risk and the dangers of evaluating against weak
  attacks", ICML; Spall 1992): ``g = mean_i (L(x + δ·v_i) − L(x − δ·v_i)) / (2δ) · v_i`` with
  Rademacher ``v_i ∈ {−1, +1}^d``.
* ``"nes"`` (Ilyas et al. 2018, "Black-box adversarial attacks with limited queries and
  information", ICML): natural evolution strategies with antithetic Gaussian samples,
  ``g = Σ_i (L(x + σ·u_i) − L(x − σ·u_i)) · u_i / (2nσ)``, ``u_i ~ N(0, I)``.

Both cost ``2·samples`` forward queries per input and step (plus one for the logits at ``x``
that early stopping and the result need) and never a backward pass, so PGD with them runs on
:func:`advlab.models.query_access` models. Estimates are plugged into PGD's steepest-ascent
step (sign for L∞), as Uesato et al. do for their L∞ evaluation (they also use Adam updates on
the estimate; advlab uses PGD's plain step). Perturbed points are not clipped to the bounds
(the model is queried slightly outside them, as in both papers' reference code).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from advlab.attacks.losses import LossFn
from advlab.attacks.problem import Problem

GradFn = Callable[[Problem, Tensor, Tensor, LossFn], tuple[Tensor, Tensor, Tensor]]
GRADIENTS = ("autograd", "spsa", "nes")
_CHUNK = 8192  # rows per forward pass


def _estimate(
    p: Problem, xa: Tensor, idx: Tensor, loss: LossFn, *, samples: int, size: float, kind: str
) -> tuple[Tensor, Tensor, Tensor]:
    n = xa.shape[0]
    shape = (n, samples, *xa.shape[1:])
    if kind == "spsa":
        v = torch.randint(0, 2, shape, generator=p.generator, device=xa.device).to(xa.dtype)
        v = v * 2 - 1
    else:
        v = torch.randn(shape, generator=p.generator, device=xa.device, dtype=xa.dtype)
    points = torch.cat([xa.unsqueeze(1) + size * v, xa.unsqueeze(1) - size * v], 1)
    flat = points.reshape(n * 2 * samples, *xa.shape[1:])
    y, t = p.labels(idx)
    yy = y.repeat_interleave(2 * samples)
    tt = t.repeat_interleave(2 * samples) if t is not None else None
    values = []
    with torch.no_grad():
        for i in range(0, flat.shape[0], _CHUNK):
            logits = p.model.logits(flat[i : i + _CHUNK], check=False)
            sl = slice(i, i + _CHUNK)
            values.append(loss(logits.float(), yy[sl], tt[sl] if tt is not None else None))
    p.count(p.queries, idx, 2 * samples)
    f = torch.cat(values).view(n, 2, samples)
    diff = (f[:, 0] - f[:, 1]) / (2 * size)  # (n, samples)
    grad = (diff.view(n, samples, *([1] * (xa.ndim - 1))).to(xa.dtype) * v).mean(1)
    logits = p.logits(xa, idx)
    return loss(logits.float(), y, t), grad, logits


def gradient_oracle(name: str, *, samples: int, size: float) -> GradFn:
    """``(p, xa, idx, loss) -> (loss, grad, logits)`` for ``name`` in :data:`GRADIENTS`."""
    if name == "autograd":
        return lambda p, xa, idx, loss: p.loss_grad(xa, idx, loss)
    if name not in GRADIENTS:
        raise ValueError(f"gradient must be one of {', '.join(GRADIENTS)}; got {name!r}")

    def fn(p: Problem, xa: Tensor, idx: Tensor, loss: LossFn) -> tuple[Tensor, Tensor, Tensor]:
        return _estimate(p, xa, idx, loss, samples=samples, size=size, kind=name)

    return fn
