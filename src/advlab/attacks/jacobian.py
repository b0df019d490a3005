"""Per-sample input Jacobians of the logits, shared by DeepFool and JSMA.

* ``jacobian(p, xa, idx, fn)``: one forward pass with autograd on ``xa (n, ...)``, returning the
  logits ``(n, K)``, ``out = fn(logits) (n, C)`` and ``∂ out[i, j] / ∂ xa[i]`` as
  ``(n, C, ...)``, for any per-sample function of the logits (JSMA needs only two outputs, the
  target logit and the sum of the others: 2 gradients instead of ``K``).
* ``logits_jacobian(p, xa, idx, classes)``: the same for ``C`` selected logits; ``classes`` is
  ``None`` (all ``K``, in order), an index tensor ``(n, C)`` (per-sample classes, e.g.
  DeepFool's candidates) or a function ``logits -> (n, C)`` that picks them from this very
  forward pass (no extra pass is spent choosing them).
* ``retire``: the active-set bookkeeping both attacks share (samples that are done leave the
  batch, their current point written to the output).

Each output row depends only on its own input row (no batch-coupled layers in eval mode), so the
gradient of ``Σ_i out[i, j]`` is every sample's gradient of its ``j``-th output at once. The
``C`` backward passes run as one vectorized backward (``is_grads_batched``, vmap over the
backward graph); a model with an op that vmap cannot batch falls back to ``C`` plain backward
passes sharing the forward graph. Counts 1 query and ``C`` gradients per sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from advlab.attacks.problem import Problem

log = logging.getLogger(__name__)

ClassPick = Tensor | Callable[[Tensor], Tensor] | None


def _backward_rows(out: Tensor, xg: Tensor) -> Tensor:
    """``(n, C, ...)``: gradient of every column of ``out (n, C)`` w.r.t. ``xg (n, ...)``."""
    c = out.shape[1]
    if c == 1:
        return torch.autograd.grad(out.sum(), xg)[0].unsqueeze(1)
    # one-hot cotangents, one per column: (C, n, C)
    eye = torch.eye(c, dtype=out.dtype, device=out.device)
    cot = eye.view(c, 1, c).expand(c, out.shape[0], c)
    try:
        (g,) = torch.autograd.grad(out, xg, grad_outputs=cot, is_grads_batched=True)
        return g.transpose(0, 1)  # (C, n, ...) -> (n, C, ...)
    except (RuntimeError, NotImplementedError) as err:  # an op without a vmap rule
        log.debug("batched backward failed (%s); using %d backward passes", err, c)
    rows = [torch.autograd.grad(out[:, j].sum(), xg, retain_graph=j < c - 1)[0] for j in range(c)]
    return torch.stack(rows, 1)


def jacobian(
    p: Problem, xa: Tensor, idx: Tensor, fn: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """``(logits (n, K), out (n, C), jac (n, C, ...))`` with ``out = fn(logits)`` at ``xa``.

    ``fn`` maps the logits to ``C`` per-sample outputs, row ``i`` depending on logits row ``i``
    only; ``jac[i, j] = ∂ out[i, j] / ∂ xa[i]``. Counts 1 query and ``C`` gradients per sample.
    """
    with torch.enable_grad():
        xg = xa.detach().requires_grad_(True)
        logits = p.model.logits(xg, check=False)  # (n, K)
        out = fn(logits)  # (n, C)
        jac = _backward_rows(out, xg)
    p.queries[idx] += 1
    p.gradients[idx] += out.shape[1]
    return logits.detach(), out.detach(), jac.detach()


def logits_jacobian(
    p: Problem, xa: Tensor, idx: Tensor, classes: ClassPick = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(logits (n, K), classes (n, C), jac (n, C, ...))`` at ``xa`` for the samples ``idx``.

    ``jac[i, j] = ∂ z_{classes[i, j]}(xa[i]) / ∂ xa[i]``; ``classes`` as in the module docstring.
    """
    picked: list[Tensor] = []

    def select(logits: Tensor) -> Tensor:  # (n, K) -> (n, C)
        n, k = logits.shape
        if classes is None:
            cls = torch.arange(k, device=logits.device).expand(n, k)
        elif isinstance(classes, Tensor):
            cls = classes
        else:
            cls = classes(logits.detach())
        picked.append(cls)
        return logits.gather(1, cls)

    logits, _, jac = jacobian(p, xa, idx, select)
    return logits, picked[0], jac


def retire(out: Tensor, done: Tensor, act: Tensor, xa: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
    """Write ``xa[done]`` to ``out[act[done]]`` and drop the done rows of ``act (n,)``,
    ``xa (n, ...)`` and every tensor of ``rest`` (each ``(n, ...)``); returns them in order."""
    if not bool(done.any()):
        return (act, xa, *rest)
    out[act[done]] = xa[done]
    keep = ~done
    return tuple(v[keep] for v in (act, xa, *rest))
