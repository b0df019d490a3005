"""FAB, the fast adaptive boundary attack [``fab``] (Croce & Hein 2020, "Minimally distorted
adversarial examples with a fast adaptive boundary attack", ICML), a minimum-norm attack for
Linf, L2 and L1, and its targeted variant FAB-T [``fab-t``] used by AutoAttack.

Each iteration linearizes the classifier at the current point ``x⁽ⁱ⁾``: for every class
``j ≠ y``, ``f_j = z_j − z_y`` and ``w_j = ∇f_j``; the closest linearized boundary is
``j* = argmin_j |f_j| / ||w_j||_q`` (``q`` the dual norm). Both ``x⁽ⁱ⁾`` and the clean ``x`` are
projected onto that hyperplane intersected with the input box (:func:`project_hyperplane_box`,
the exact minimal-norm point), giving ``δ⁽ⁱ⁾`` and ``δ_orig``; then, with
``α = min(||δ⁽ⁱ⁾|| / (||δ⁽ⁱ⁾|| + ||δ_orig||), α_max)``,
``x⁽ⁱ⁺¹⁾ = clip((1 − α)(x⁽ⁱ⁾ + η·δ⁽ⁱ⁾) + α(x + η·δ_orig))`` (biased towards ``x``, with
overshoot η). When ``x⁽ⁱ⁺¹⁾`` is adversarial it is recorded if smaller than the best so far, and
the iterate is pulled back, ``x⁽ⁱ⁺¹⁾ ← x + β(x⁽ⁱ⁺¹⁾ − x)``.

Defaults from the paper and AutoAttack: ``steps = 100``, ``alpha_max = 0.1``, ``eta = 1.05``,
``beta = 0.9``, 1 run; later restarts start at a random point of radius
``min(best norm, start_radius)/2`` (``start_radius``: 0.3 Linf, 1.0 L2, 5.0 L1, AutoAttack's
defaults). An untargeted step costs one forward pass and ``K − 1`` gradients (one vectorized
backward) plus one forward pass for the success check.

Targeted calls (``target=``) use the single hyperplane of ``z_t − max_{j≠t} z_j`` (the reference
FAB-T uses ``z_t − z_y``: the same at the start, but ours stays the binding constraint when a
third class overtakes) and one gradient per step. The projections handle any box (scalar or
per-feature bounds), where the reference code assumes ``[0, 1]``. An input whose step leaves
a non-adversarial iterate exactly unchanged (a fixed point of the iteration, such as a zero
gradient at the clean input under gradient masking) stops iterating for the rest of the run:
every later step would repeat it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import MinNormAttack, _nonneg, _positive_int
from advlab.attacks.jacobian import jacobian
from advlab.attacks.losses import margin
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks

_TINY = 1e-12
START_RADIUS: dict[str, float] = {"linf": 0.3, "l2": 1.0, "l1": 5.0}


def project_hyperplane_box(
    norm: str, t: Tensor, w: Tensor, b: Tensor, low: Tensor, high: Tensor
) -> Tensor:
    """The smallest ``d`` (in ``norm``) with ``⟨w, t + d⟩ = b`` and ``low <= t + d <= high``.

    ``t, w (n, D)``, ``b (n,)``, ``low, high`` broadcastable to ``(n, D)`` with ``t`` inside.
    Where the box cannot reach the hyperplane, ``d`` moves ``⟨w, ·⟩`` as far towards ``b`` as the
    box allows. Exact: with ``c = |⟨w, t⟩ − b|`` and each coordinate moving against the sign
    of the violation by ``m_i <= cap_i`` (its room in the box), the reduction
    ``Σ |w_i| m_i`` reaches ``c`` with ``m_i = min(λ, cap_i)`` (Linf), ``min(λ|w_i|, cap_i)``
    (L2) or, for L1, by filling the coordinates in decreasing ``|w_i|`` (a fractional knapsack);
    ``λ`` is found from the sorted breakpoints with one cumulative sum (no iterations).
    """
    s = (w * t).sum(1) - b  # (n,) signed violation
    wf = torch.where(s >= 0, 1.0, -1.0).to(w.dtype).unsqueeze(1) * w  # decrease ⟨wf, ·⟩ by c
    c = s.abs().unsqueeze(1)  # (n, 1)
    a = wf.abs()
    room = torch.where(wf > 0, t - low, high - t).clamp_min(0)
    cap = torch.where(a > 0, room, torch.zeros_like(room))  # (n, D)
    if norm == "l1":
        order = a.argsort(1, descending=True)
        a_s, cap_s = a.gather(1, order), cap.gather(1, order)
        before = (a_s * cap_s).cumsum(1) - a_s * cap_s  # reduction by the coordinates before
        m_s = torch.minimum(((c - before) / a_s.clamp_min(_TINY)).clamp_min(0), cap_s)
        m = torch.zeros_like(m_s).scatter(1, order, m_s)
    elif norm in ("linf", "l2"):
        rate = torch.ones_like(a) if norm == "linf" else a  # m_i = min(λ·rate_i, cap_i)
        bp = torch.where(a > 0, cap / rate.clamp_min(_TINY), torch.zeros_like(cap))  # saturation
        order = bp.argsort(1)
        bp_s, a_s, cap_s, slope_s = (v.gather(1, order) for v in (bp, a, cap, a * rate))
        sat = (a_s * cap_s).cumsum(1)  # reduction of the coordinates saturated up to k
        rest = slope_s.sum(1, keepdim=True) - slope_s.cumsum(1)  # slope of the others
        k = ((sat + bp_s * rest) < c).sum(1, keepdim=True)  # first breakpoint reaching c
        km = (k - 1).clamp_min(0)
        sat_prev = torch.where(k > 0, sat.gather(1, km), torch.zeros_like(c))
        rest_prev = torch.where(k > 0, rest.gather(1, km), slope_s.sum(1, keepdim=True))
        lam = (c - sat_prev) / rest_prev.clamp_min(_TINY)
        lam = torch.where(k >= a.shape[1], torch.full_like(lam, float("inf")), lam)
        m = torch.where(a > 0, torch.minimum(lam * rate, cap), torch.zeros_like(cap))
    else:
        raise ValueError(f"norm must be 'linf', 'l2' or 'l1'; got {norm!r}")
    return -wf.sign() * m


@attacks.register("fab")
class FAB(MinNormAttack):
    """FAB (Croce & Hein 2020), Linf / L2 / L1, untargeted or targeted; see the module docstring.

    Args:
        norm: ``"linf"`` (default), ``"l2"`` or ``"l1"``.
        steps: iterations per run (default 100). restarts: runs (default 1); runs after the
            first start at a random point, each keeps the smallest adversarial perturbation.
        alpha_max: largest weight of the step from the clean input (0.1). eta: overshoot
            (1.05). beta: pull-back factor towards ``x`` after a success (0.9).
        start_radius: radius cap of the random starts (default: 0.3 Linf, 1.0 L2, 5.0 L1).
        seed: seeds the random restarts.
    """

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")

    def __init__(
        self,
        *,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        start_radius: float | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, seed=seed)
        self.steps = _positive_int("steps", steps)
        self.restarts = _positive_int("restarts", restarts)
        self.alpha_max = _nonneg("alpha_max", alpha_max)
        if self.alpha_max > 1:
            raise ValueError(f"alpha_max must be in [0, 1]; got {alpha_max!r}")
        self.eta = _nonneg("eta", eta)
        self.beta = _nonneg("beta", beta)
        if self.beta > 1:
            raise ValueError(f"beta must be in [0, 1]; got {beta!r}")
        self.start_radius = (
            START_RADIUS[norm] if start_radius is None else _nonneg("start_radius", start_radius)
        )

    def gap(self, z: Tensor, y: Tensor, t: Tensor) -> Tensor:
        """Targeted boundary function ``(n,)``, positive past the boundary:
        ``z_t − max_{j≠t} z_j`` (FAB-T overrides it with ``z_t − z_y``)."""
        return margin(z, y, t)

    def hyperplane(
        self, p: Problem, xa: Tensor, idx: Tensor, t: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``(w (n, D), f (n,))`` of the closest linearized boundary at ``xa`` (towards ``t``
        when given, else towards any class ``j ≠ y``)."""
        y = p.y[idx]
        if t is not None:  # one hyperplane, one gradient

            def fn(z: Tensor) -> Tensor:
                return self.gap(z, y, t).unsqueeze(1)  # (n, 1)

            _, f, g = jacobian(p, xa, idx, fn)
            return g.flatten(2)[:, 0], f[:, 0]

        k = torch.arange(p.num_classes - 1, device=xa.device).expand(len(idx), -1)
        others = k + (k >= y.view(-1, 1)).long()  # (n, K-1): the classes j != y

        def diffs(z: Tensor) -> Tensor:  # (n, K-1): f_j = z_j - z_y
            return z.gather(1, others) - z.gather(1, y.view(-1, 1))

        _, f, g = jacobian(p, xa, idx, diffs)  # (n, K-1), (n, K-1, ...)
        g = g.flatten(2)  # (n, K-1, D)
        q = {"linf": 1.0, "l2": 2.0, "l1": float("inf")}[self.norm]  # dual norm
        j = (f.abs() / (torch.linalg.vector_norm(g, ord=q, dim=2) + _TINY)).argmin(1)  # (n,)
        rows = torch.arange(len(idx), device=xa.device)
        return g[rows, j], f[rows, j]

    def start(self, p: Problem, x0: Tensor, radius: Tensor) -> Tensor:
        """A random point at distance ``radius (n,)`` from ``x0``, clipped into the bounds."""
        gen, dev = p.generator, x0.device
        if self.norm == "linf":
            r = 2 * torch.rand(x0.shape, generator=gen, device=dev) - 1
        else:
            r = torch.randn(x0.shape, generator=gen, device=dev)
        size = self.lp.size(r).clamp_min(_TINY)
        scale = (radius / size).view(-1, *([1] * (x0.ndim - 1)))
        return p.clip(x0 + (scale * r).to(x0.dtype))

    def minimize(self, p: Problem, idx: Tensor) -> Tensor:
        x0 = p.x[idx]
        t = p.target[idx] if p.target is not None else None
        best_norm = torch.full((len(idx),), float("inf"), device=x0.device)
        return self.runs(p, idx, t, x0.clone(), best_norm)[0]

    def runs(
        self, p: Problem, idx: Tensor, t: Tensor | None, best: Tensor, best_norm: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``restarts`` FAB runs on ``idx``, improving ``best (n, ...)`` / ``best_norm (n,)``
        (the smallest adversarial point so far and its norm, ``inf`` if none)."""
        x0 = p.x[idx]  # (n, ...)
        view = (-1, *([1] * (x0.ndim - 1)))
        x0f = x0.flatten(1)  # (n, D)
        low = torch.broadcast_to(p.low, x0.shape[1:]).reshape(1, -1)  # (1, D)
        high = torch.broadcast_to(p.high, x0.shape[1:]).reshape(1, -1)
        for run in range(self.restarts):
            if run == 0:
                xa = x0.clone()
            else:
                xa = self.start(p, x0, 0.5 * best_norm.clamp(max=self.start_radius))
            pos = torch.arange(len(idx), device=x0.device)  # rows still iterating
            xs, xsf, ts, ia = x0, x0f, t, idx  # their clean inputs, targets, indices
            for _ in range(self.steps):
                n = len(pos)
                w, f = self.hyperplane(p, xa, ia, ts)  # (n, D), (n,)
                xf = xa.flatten(1)
                b = (w * xf).sum(1) - f  # hyperplane ⟨w, z⟩ = b
                # project x⁽ⁱ⁾ and x together: (2n, D) -> d1, d2 (n, ...)
                d = project_hyperplane_box(
                    self.norm, torch.cat((xf, xsf)), w.repeat(2, 1), b.repeat(2), low, high
                )
                d1, d2 = d[:n].view_as(xa), d[n:].view_as(xa)
                a1 = self.lp.size(d1).clamp_min(1e-8)
                a2 = self.lp.size(d2).clamp_min(1e-8)
                alpha = (a1 / (a1 + a2)).clamp(0, self.alpha_max).view(view).to(x0.dtype)
                new = p.clip((1 - alpha) * (xa + self.eta * d1) + alpha * (xs + self.eta * d2))
                adv = p.is_adv(p.logits(new, ia), ia)
                size = self.lp.size(new - xs)
                better = adv & (size < best_norm[pos])
                best[pos] = torch.where(better.view(view), new, best[pos])
                best_norm[pos] = torch.where(better, size, best_norm[pos])
                # a step that leaves a non-adversarial iterate exactly where it was has found a
                # fixed point of the (deterministic) iteration, e.g. a zero gradient (gradient
                # masking) at the clean input: every later step would repeat it
                fixed = ~adv & (new == xa).flatten(1).all(1)
                xa = torch.where(adv.view(view), xs + self.beta * (new - xs), new)
                if bool(fixed.any()):
                    keep = ~fixed
                    pos, xa, xs, xsf, ia = pos[keep], xa[keep], xs[keep], xsf[keep], ia[keep]
                    ts = ts[keep] if ts is not None else None
                    if pos.numel() == 0:
                        break
        return best, best_norm


@attacks.register("fab-t")
class FABT(FAB):
    """FAB-T (Croce & Hein 2020, as in AutoAttack): FAB along the single hyperplane
    ``z_t − z_y`` (one gradient per step) for the targets ``t`` = the 2nd, 3rd, ... highest clean
    logits other than ``y`` (the top ``n_target_classes``, default 9, capped at K − 1).
    Untargeted to the caller (success = misclassified; ``target=`` is refused).

    As a minimum-norm attack it runs every target on every input and keeps the smallest
    adversarial perturbation (AutoAttack, which has a budget eps, only runs later targets on
    inputs not yet broken within eps). Cost per target: ``steps`` gradients and ``2·steps``
    forward passes per input. Other arguments as :class:`FAB`.
    """

    supports_targeted: ClassVar[bool] = False

    def __init__(
        self,
        *,
        norm: str = "linf",
        steps: int = 100,
        n_target_classes: int = 9,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        start_radius: float | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            norm=norm,
            steps=steps,
            restarts=restarts,
            alpha_max=alpha_max,
            eta=eta,
            beta=beta,
            start_radius=start_radius,
            seed=seed,
        )
        self.n_target_classes = _positive_int("n_target_classes", n_target_classes)

    def gap(self, z: Tensor, y: Tensor, t: Tensor) -> Tensor:
        return z.gather(1, t.view(-1, 1)).squeeze(1) - z.gather(1, y.view(-1, 1)).squeeze(1)

    def minimize(self, p: Problem, idx: Tensor) -> Tensor:
        x0, y = p.x[idx], p.y[idx]
        logits = p.logits(x0, idx).float()  # (n, K) clean
        ranked = logits.scatter(1, y.view(-1, 1), float("-inf")).argsort(1, descending=True)
        best, best_norm = x0.clone(), torch.full((len(idx),), float("inf"), device=x0.device)
        for j in range(min(self.n_target_classes, p.num_classes - 1)):
            best, best_norm = self.runs(p, idx, ranked[:, j], best, best_norm)
        return best
