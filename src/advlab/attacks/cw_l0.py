"""Carlini-Wagner L0 attack [``cw-l0``] (Carlini & Wagner 2017, §VI-B; reference code
``l0_attack.py``): shrink the set of features the L2 attack may change until it fails."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import _nonneg
from advlab.attacks.cw_l2 import State, TanhBox, adam_reset, adam_step, margin_grad, reached, rows
from advlab.attacks.cw_linf import CWLadder
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks

_BIG_CHANGE = 0.01  # reference: stop removing at a feature whose |g·δ| exceeds this
_REMOVE_FRACTION = 0.3  # reference: remove at most 0.3·sqrt(#changed) features per round
_CHANGED = 1e-4  # reference: |δ| above this fraction of the range counts as changed


@attacks.register("cw-l0")
class CWL0(CWLadder[Tensor]):
    """Carlini-Wagner L0 attack (Carlini & Wagner 2017), batched as in the reference code.

    Keeps a per-sample set of *allowed* features (initially all). Each round runs the L2
    attack restricted to them: Adam over ``x' = low + (high - low)·(tanh(w) + 1)/2`` on the
    allowed features (the others stay at ``x``), minimizing
    ``||x' - x||²₂ + c·max(κ - m(x'), 0)`` (``m`` the CW margin, positive = adversarial),
    warm-started from the previous round's solution, ``c`` times ``const_factor`` after every
    ``steps`` iterations without success, carried over between rounds. A round succeeds at the
    first iterate with ``max(κ - m, 0) < 1e-4`` that is adversarial. Then, with
    ``g = ∇f(x')`` (the unclamped margin's gradient) and ``δ = x' - x``, allowed features are
    removed in increasing order of ``|g_i·δ_i|``: the reference rule removes up to
    ``max(1, ceil(0.3·sqrt(#changed features)))`` per round and stops after the first one with
    ``|g_i·δ_i| > 0.01`` (the paper describes one feature per round; the reference code, and
    this implementation, remove several low-importance ones for speed). The attack stops when
    a round fails (``c`` reaches ``largest_const``), returning the last successful round's
    ``x'``, or ``x`` unchanged if the first round failed.

    L0 counts *features*: for images with ``C`` channels each channel of each pixel is one
    feature (the reference code's ``independent_channels=True``; its default counts pixels).

    Deviation from the reference code, which ranks by the gradient of the whole objective
    in tanh space (mostly the ``2δ`` distance term once the margin term is flat): this uses
    the paper's ``g = ∇f``, without the clamp at κ so that it is informative at
    already-adversarial points.

    Args (defaults from ``l0_attack.py``):
        steps: Adam iterations per value of ``c`` (1000). lr: Adam learning rate (1e-2).
        initial_const (1e-3), largest_const (2e6), const_factor (2): the ``c`` schedule.
        confidence: κ (0.01, the reference's fixed margin). reduce_const: halve ``c`` after
            each successful round (False). abort_early: end a round at its first success
            (True); off, a round can only succeed on the last iteration of a ``c`` value.
        seed: unused (deterministic); kept for the common interface.

    Counts one query and one gradient per sample per iteration. The final, failing round
    climbs the whole ``c`` ladder (``steps`` iterations per value): lower ``largest_const``
    for speed.
    """

    norms: ClassVar[tuple[str, ...]] = ("l0",)

    def __init__(
        self,
        *,
        steps: int = 1000,
        lr: float = 1e-2,
        initial_const: float = 1e-3,
        largest_const: float = 2e6,
        const_factor: float = 2.0,
        confidence: float = 0.01,
        reduce_const: bool = False,
        abort_early: bool = True,
        norm: str = "l0",
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            norm=norm,
            seed=seed,
            steps=steps,
            lr=lr,
            initial_const=initial_const,
            largest_const=largest_const,
            const_factor=const_factor,
        )
        self.confidence = _nonneg("confidence", confidence)
        self.reduce_const = bool(reduce_const)
        self.abort_early = bool(abort_early)

    def _start(self, p: Problem, s: State) -> Tensor:
        """Adds ``valid`` (the features a round may change, initially all) to ``s``; returns
        the change above which a feature counts as changed."""
        s["valid"] = torch.ones_like(s["x0"], dtype=torch.bool)
        return _CHANGED * (p.high - p.low)

    def _iterate(self, p: Problem, box: TanhBox, s: State, changed_tol: Tensor) -> None:
        """One Adam iteration for every running sample of ``s``, with the round transitions."""
        kappa, x0, valid = self.confidence, s["x0"], s["valid"]
        xb, dxdw = box.to_x(s["w"], x0)
        xa = torch.where(valid, xb, x0)  # (n, ...)
        m, gm, logits = margin_grad(p, xa, s["y"], s.get("t"))
        delta = xa - x0
        live = m < kappa
        run = ~s["done"]
        win = run & (torch.where(live, kappa - m, 0.0) < 1e-4)
        win &= reached(logits, m, s["y"], s.get("t"), kappa)
        if not self.abort_early:
            win &= s["it"] == self.steps - 1
        s["spent"] += run
        w4 = rows(win, xa)
        s["best"] = torch.where(w4, xa, s["best"])
        changed = (delta.abs() > changed_tol).flatten(1).sum(1)
        s["valid"] = torch.where(w4, shrink(valid, (gm * delta).abs(), changed), valid)
        c = torch.where(win, s["c"] / 2, s["c"]) if self.reduce_const else s["c"]
        grad = (2 * delta - rows(c * live, gm) * gm) * valid
        w = adam_step(s, grad * dxdw, self.lr)
        s["w"] = torch.where(w4, box.to_w(xa), w)  # warm start the next round
        adam_reset(s, win)
        it = torch.where(win, 0, s["it"] + 1)
        bump = it >= self.steps
        s["c"] = torch.where(bump, c * self.const_factor, c)
        s["it"] = torch.where(bump, 0, it)
        no_features = ~s["valid"].flatten(1).any(1)
        s["done"] = s["done"] | (s["c"] >= self.largest_const) | no_features


def shrink(valid: Tensor, importance: Tensor, changed: Tensor) -> Tensor:
    """``valid (n, ...)`` less each row's least important allowed features (reference rule):
    in increasing ``importance`` order, up to ``max(1, ceil(0.3·sqrt(changed)))`` of them,
    stopping after the first one whose importance exceeds 0.01."""
    v = valid.flatten(1)  # (n, D)
    score, order = importance.flatten(1).masked_fill(~v, float("inf")).sort(1)
    big = score > _BIG_CHANGE
    d = v.shape[1]
    first_big = torch.where(big.any(1), big.to(torch.uint8).argmax(1), d)
    quota = (_REMOVE_FRACTION * changed.float().sqrt()).ceil().long().clamp_min(1)
    count = torch.minimum(torch.minimum(quota, first_big + 1), v.sum(1))  # (n,)
    ranks = torch.arange(d, device=v.device).expand_as(order)
    drop = torch.zeros_like(v).scatter_(1, order, ranks < count.view(-1, 1))
    return (v & ~drop).view_as(valid)
