"""Carlini-Wagner L∞ attack [``cw-linf``] (Carlini & Wagner 2017, §VI-C; reference code
``li_attack.py``): the τ procedure, batched as a per-sample state machine. Also home to
:class:`CWLadder`, the ``c`` schedule and batched driver it shares with ``cw-l0``."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, Generic, TypeVar

import torch
from torch import Tensor

from advlab.attacks.base import MinNormAttack, _nonneg, _positive_int
from advlab.attacks.cw_l2 import (
    State,
    TanhBox,
    adam_init,
    adam_reset,
    adam_step,
    margin_grad,
    positive,
    reached,
    rows,
    select,
)
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks

SYNC_EVERY = 10  # iterations between host syncs (drop finished samples)


def check_consts(initial_const: float, largest_const: float, const_factor: float) -> None:
    if largest_const <= initial_const:
        raise ValueError(
            f"largest_const must be > initial_const; got {largest_const} <= {initial_const}"
        )
    if const_factor <= 1:
        raise ValueError(f"const_factor must be > 1; got {const_factor!r}")


Extra = TypeVar("Extra")


class CWLadder(MinNormAttack, Generic[Extra]):
    """What ``cw-linf`` and ``cw-l0`` share: the ``c`` schedule's hyperparameters and the
    batched driver of their per-sample state machines.

    The driver keeps a state ``s`` (per-sample rows: ``pos`` (row in the batch), ``x0``,
    ``y``, ``t`` if targeted, ``c``, ``it`` (iterations at this ``c``), ``best``, ``done``,
    ``spent`` and the Adam state), plus what :meth:`_start` adds, and calls :meth:`_iterate`
    until every sample is done, writing back ``best`` and dropping finished samples every
    ``SYNC_EVERY`` iterations. ``spent`` counts as one query and one gradient per iteration.
    """

    def __init__(
        self,
        *,
        norm: str,
        seed: int | None,
        steps: int,
        lr: float,
        initial_const: float,
        largest_const: float,
        const_factor: float,
    ) -> None:
        super().__init__(norm=norm, seed=seed)
        self.steps = _positive_int("steps", steps)
        self.lr = positive("lr", lr)
        self.initial_const = positive("initial_const", initial_const)
        self.largest_const = positive("largest_const", largest_const)
        self.const_factor = positive("const_factor", const_factor)
        check_consts(self.initial_const, self.largest_const, self.const_factor)

    def minimize(self, p: Problem, idx: Tensor) -> Tensor:
        x0 = p.x[idx]
        y, t = p.labels(idx)
        n, dev = len(idx), x0.device
        box = TanhBox(p)
        out, spent = x0.clone(), torch.zeros(n, dtype=torch.long, device=dev)
        s: State = {
            "pos": torch.arange(n, device=dev),
            "x0": x0,
            "y": y,
            "c": torch.full((n,), self.initial_const, dtype=x0.dtype, device=dev),
            "it": torch.zeros(n, dtype=torch.long, device=dev),
            "best": x0.clone(),
            "done": torch.zeros(n, dtype=torch.bool, device=dev),
            "spent": spent.clone(),
        }
        if t is not None:
            s["t"] = t
        extra = self._start(p, s)
        adam_init(s, box.to_w(x0))
        while True:
            for _ in range(SYNC_EVERY):
                self._iterate(p, box, s, extra)
            out[s["pos"]] = s["best"]
            spent[s["pos"]] += s["spent"]
            s["spent"].zero_()
            if bool(s["done"].all()):
                break
            s = select(s, ~s["done"])
        p.queries[idx] += spent
        p.gradients[idx] += spent
        return out

    @abstractmethod
    def _start(self, p: Problem, s: State) -> Extra:
        """Add the attack's own per-sample rows to ``s``; return the constant, fixed by the
        problem, that :meth:`_iterate` takes."""

    @abstractmethod
    def _iterate(self, p: Problem, box: TanhBox, s: State, extra: Extra) -> None:
        """One Adam iteration for every running sample of ``s``."""


@attacks.register("cw-linf")
class CWLinf(CWLadder[float]):
    """Carlini-Wagner L∞ attack (Carlini & Wagner 2017), faithful to the reference code.

    For a threshold τ (initially the whole range ``high - low``), minimize with Adam over
    ``x' = low + (high - low)·(tanh(w) + 1)/2``::

        c·max(-m(x'), -κ) + κ·c + Σ_i max(|x'_i - x_i| - τ, 0)

    (``m`` the CW margin, positive = adversarial; with κ = 0 the first term is the paper's
    ``c·f``). A run succeeds at the first iterate whose loss is below ``1e-4·c`` and that is
    adversarial: then τ ← 0.9·min(τ, max_i |δ_i|) (the paper says "if all |δ_i| < τ, reduce
    τ by 0.9"; the reference code also first drops τ to the actual max |δ_i|, as here), and a
    new run starts from that iterate (warm start, fresh Adam state). A run that has not
    succeeded after ``steps`` iterations multiplies ``c`` by ``const_factor`` and continues
    from where it is; once ``c >= largest_const`` the sample stops and keeps its last success.
    It also stops when τ ≤ range/256. ``c`` is not reset between runs. "range" is
    ``high - low`` (its maximum for per-feature bounds). All of this is per sample, vectorized
    over the batch, with the same tanh box and its limitation at the bounds as ``cw-l2``.

    Args (defaults from the reference code ``li_attack.py``):
        steps: Adam iterations per value of ``c`` (1000). lr: Adam learning rate (5e-3).
        initial_const (1e-5), largest_const (20), const_factor (2): the ``c`` schedule.
        decrease_factor: τ shrink factor (0.9). reduce_const: halve ``c`` after each success
            (False). confidence: κ ≥ 0 (0; an addition, the reference has none).
        abort_early: end a run at its first success (True). Off: a run can only succeed on its
            last iteration (the reference's flag tests ``step == CONST - 1`` there, a typo).
        seed: unused (deterministic); kept for the common interface.

    Samples that never succeed come back unchanged. Counts one query and one gradient per
    sample per iteration. The cost is large by design (dozens of runs per sample, and the
    final failing run climbs the whole ``c`` ladder): lower ``largest_const`` or ``steps``
    for speed.
    """

    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def __init__(
        self,
        *,
        steps: int = 1000,
        lr: float = 5e-3,
        initial_const: float = 1e-5,
        largest_const: float = 20.0,
        const_factor: float = 2.0,
        decrease_factor: float = 0.9,
        reduce_const: bool = False,
        confidence: float = 0.0,
        abort_early: bool = True,
        norm: str = "linf",
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
        self.decrease_factor = positive("decrease_factor", decrease_factor)
        if self.decrease_factor >= 1:
            raise ValueError(f"decrease_factor must be in (0, 1); got {decrease_factor!r}")
        self.reduce_const = bool(reduce_const)
        self.confidence = _nonneg("confidence", confidence)
        self.abort_early = bool(abort_early)

    def _start(self, p: Problem, s: State) -> float:
        """Adds ``tau`` (τ, initially the range) to ``s``; returns the stopping τ, range/256."""
        tau0 = float((p.high - p.low).max())
        s["tau"] = torch.full_like(s["c"], tau0)
        return tau0 / 256

    def _iterate(self, p: Problem, box: TanhBox, s: State, tau_min: float) -> None:
        """One Adam iteration for every running sample of ``s``, with the run transitions."""
        kappa, x0 = self.confidence, s["x0"]
        xa, dxdw = box.to_x(s["w"], x0)  # (n, ...)
        m, gm, logits = margin_grad(p, xa, s["y"], s.get("t"))
        delta = xa - x0
        excess = delta.abs() - rows(s["tau"], delta)  # (n, ...) > 0: over the threshold
        live = m < kappa
        c = s["c"]
        loss = c * torch.where(live, kappa - m, 0.0) + excess.clamp_min(0).flatten(1).sum(1)
        run = ~s["done"]
        win = run & (loss < 1e-4 * c) & reached(logits, m, s["y"], s.get("t"), kappa)
        if not self.abort_early:
            win &= s["it"] == self.steps - 1
        s["spent"] += run
        s["best"] = torch.where(rows(win, xa), xa, s["best"])
        actual = delta.abs().flatten(1).amax(1)
        s["tau"] = torch.where(
            win, torch.minimum(s["tau"], actual) * self.decrease_factor, s["tau"]
        )
        if self.reduce_const:
            c = torch.where(win, c / 2, c)
        grad = -rows(c * live, gm) * gm + delta.sign() * (excess > 0)
        w = adam_step(s, grad * dxdw, self.lr)
        s["w"] = torch.where(rows(win, w), box.to_w(xa), w)  # warm start the next run
        adam_reset(s, win)
        it = torch.where(win, 0, s["it"] + 1)
        bump = it >= self.steps
        s["c"] = torch.where(bump, c * self.const_factor, c)
        s["it"] = torch.where(bump, 0, it)
        s["done"] = s["done"] | (s["c"] >= self.largest_const) | (s["tau"] <= tau_min)
