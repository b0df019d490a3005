"""HopSkipJumpAttack [``hsja``] (Chen, Jordan & Wainwright 2020, "HopSkipJumpAttack: A
Query-Efficient Decision-Based Attack", IEEE S&P).

A decision-based, minimum-norm attack (L2 or Linf): it only reads the model's top-1 label. Every
model answer goes through ``p.logits`` and only its argmax (``p.is_adv``) is used, so it runs on
``query_access(clf, "labels")``. The paper's Algorithm 2 with the geometric step-size search, as
in the authors' reference code (``hsja.py``):

* **Initialization** (reference ``initialize``): uniform noise in the bounds, drawn until one is
  adversarial (misclassified, or at the target class when targeted), then a binary search on the
  blend ``(1 − α)·x + α·noise`` to a tolerance of ``0.001`` in ``α``. Or a caller's
  ``starting_points=`` (one adversarial point per input), which must all be adversarial.
* **Binary search** to the boundary between ``x`` and a point ``x̃``, with the threshold
  ``θ = γ / d^{3/2}`` (L2) or ``θ = γ / d²`` (Linf), ``d`` the number of features: L2 searches
  the blend factor ``α ∈ [0, 1]`` of ``(1 − α)·x + α·x̃`` until ``α_high − α_low ≤ θ``; Linf
  searches the radius ``α ∈ [0, ||x̃ − x||_∞]`` of ``clip(x̃, x − α, x + α)`` until
  ``α_high − α_low ≤ min(θ·||x̃ − x||_∞, θ)``. The result is the last adversarial point queried.
* **Gradient-direction estimate** at the boundary point ``x_t`` from ``B_t = B_0·√t`` probes
  (``B_0 = init_evals = 100``, capped at ``max_num_evals = 10,000``): ``x_t + δ_t·u_b`` with
  ``u_b`` Gaussian (L2) or uniform in ``[−1, 1]^d`` (Linf), normalized to unit L2 norm; probes are
  clipped into the bounds and ``u_b`` recomputed from the clipped probe; with ``φ_b = ±1``
  (adversarial or not), the estimate is ``mean_b (φ_b − mean φ)·u_b`` (baseline-subtracted;
  ``mean_b φ_b·u_b`` when all ``φ_b`` agree), normalized. ``δ_1 = 0.1·(high − low)``, then
  ``δ_t = √d·θ·||x̃_{t−1} − x||_2`` (L2) or ``d·θ·||x̃_{t−1} − x||_∞`` (Linf), ``x̃_{t−1}`` the
  previous iteration's point before its binary search (paper §4.1, reference ``select_delta``).
* **Geometric step-size search**: ``v_t`` = the estimate (L2) or its sign (Linf), ``ξ_t =
  ||x_t − x|| / √t`` halved until ``x̃_t = clip(x_t + ξ_t·v_t)`` is adversarial; then the binary
  search from ``x̃_t`` gives ``x_{t+1}``.

The batch advances together (iteration ``t`` is shared): the binary-search and step-size queries
of all active inputs go in one forward pass per round, the Monte-Carlo probes of all active
inputs in forward passes of at most ``batch_size`` points; step sizes, thresholds and query
counts are per input. The smallest adversarial point found per input is returned.

Queries. ``res.queries`` counts every point queried for an input: the attack's own queries (at
most ``max_queries`` per input: an input whose budget is spent stops wherever it is, keeping its
best point; a binary search, step-size search or Monte-Carlo estimate is cut short, an estimate
using fewer probes) plus :class:`~advlab.attacks.base.MinNormAttack`'s two scoring queries (the
clean input, and the returned point), plus one for ``target="least-likely"``.

Defaults: ``steps = 40`` iterations (the reference code's ``num_iterations``; Foolbox uses 64),
``gamma = 1``, ``init_evals = 100``, ``max_num_evals = 10,000`` (all the reference's),
``max_queries = 10,000``, ``init_tries = 10,000`` noise draws (the reference asserts after 10⁴).

Deviations from the reference (none from the paper's algorithm):

* Batched, with per-input query budgets (``max_queries``, which the reference lacks).
* Noise draws are batched in rounds of 1, 2, 4, ... per input (the first adversarial draw of a
  round is used), so the search costs at most twice the reference's one-at-a-time draws.
* The step-size search gives up after 50 halvings (the reference loops until success, which in
  exact arithmetic always comes: ``x_t`` is adversarial); the input then stays at ``x_t``.
* Inputs for which no adversarial noise is found within ``init_tries`` draws (or the budget)
  are left unchanged (failures, logged as a warning) when untargeted, as in Foolbox and ART;
  targeted, the call raises ``ValueError`` asking for ``starting_points=`` (the paper starts a
  targeted attack from an image of the target class, which a single batch may not contain).
* The Monte-Carlo noise is drawn per group of inputs (``batch_size`` probes), so results with
  the same seed also depend on ``batch_size``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import MinNormAttack, ModelMode, TargetSpec, _positive_int
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks
from advlab.attacks.result import AttackResult
from advlab.models.classifier import Classifier

log = logging.getLogger(__name__)

_INIT_TOL = 0.001  # reference: blend binary search of the initialization, tolerance in α
_HALVINGS = 50  # step-size search: at most this many halvings of ξ_t
_TINY = 1e-12


class _Run:
    """The per-call state of one HSJA run on the samples ``idx`` of ``p`` (local positions
    ``0..n-1``): clean points, per-input query counts and the batched query helper."""

    def __init__(self, p: Problem, idx: Tensor, max_queries: int, batch_size: int) -> None:
        self.p = p
        self.idx = idx
        self.x0 = p.x[idx]  # (n, ...)
        self.n = int(idx.numel())
        self.spent = torch.zeros(self.n, dtype=torch.long, device=idx.device)
        self.max_queries = max_queries
        self.batch_size = batch_size
        self.start = self.x0  # (n, ...) adversarial starting points, set by the initialization

    def remaining(self, pos: Tensor) -> Tensor:
        """``(len(pos),)`` queries left in each input's budget."""
        return self.max_queries - self.spent[pos]

    def ask(self, xa: Tensor, owner: Tensor) -> Tensor:
        """``(m,)`` bool: is each point of ``xa (m, ...)`` adversarial for the input it belongs
        to (``owner (m,)``, local positions, may repeat)? One counted query per point, in
        forward passes of at most ``batch_size`` points."""
        p, g = self.p, self.idx[owner]
        if g.numel() == 0:
            return torch.zeros(0, dtype=torch.bool, device=g.device)
        out = []
        for s in range(0, int(owner.numel()), self.batch_size):
            rows = g[s : s + self.batch_size]  # p.logits counts a repeated row once per listing
            out.append(p.is_adv(p.logits(xa[s : s + self.batch_size], rows), rows))
        self.spent += torch.bincount(owner, minlength=self.n)
        return torch.cat(out)

    def groups(self, pos: Tensor, k: int) -> Iterator[Tensor]:
        """Consecutive slices of ``pos`` with at most ``batch_size`` points at ``k`` per input
        (at least one input each)."""
        step = max(1, self.batch_size // max(k, 1))
        for s in range(0, int(pos.numel()), step):
            yield pos[s : s + step]


def _view(t: Tensor, like: Tensor) -> Tensor:
    """``t (n,)`` as ``(n, 1, ..., 1)`` to broadcast against ``like (n, ...)``."""
    return t.view(-1, *([1] * (like.ndim - 1)))


@attacks.register("hsja")
class HopSkipJump(MinNormAttack):
    """HopSkipJumpAttack (Chen et al. 2020), decision-based, L2 or Linf, untargeted or targeted;
    see the module docstring for the algorithm, the query counting and the deviations.

    Args:
        norm: ``"l2"`` (default) or ``"linf"``: the distance minimized.
        steps: iterations (gradient estimate, step, binary search); default 40, the reference
            code's (Foolbox: 64). ``0`` returns the initialization projected to the boundary.
        max_queries: the attack's query budget per input (default 10,000); the base class's
            two scoring queries come on top.
        init_evals: ``B_0``, Monte-Carlo probes at iteration 1 (default 100); ``B_t = B_0·√t``.
        max_num_evals: cap on ``B_t`` (default 10,000).
        gamma: ``γ`` of the binary-search threshold ``θ`` (default 1.0).
        init_tries: uniform-noise draws per input to find a starting point (default 10,000).
        batch_size: most points in one forward pass (default 4096).
        seed: seeds the attack's private generator.

    Call with ``starting_points=`` (``(N, ...)`` like ``x``, adversarial for every input that
    is not already misclassified) to skip the noise search, e.g. images of the target class.
    """

    norms: ClassVar[tuple[str, ...]] = ("l2", "linf")

    def __init__(
        self,
        *,
        norm: str = "l2",
        steps: int = 40,
        max_queries: int = 10_000,
        init_evals: int = 100,
        max_num_evals: int = 10_000,
        gamma: float = 1.0,
        init_tries: int = 10_000,
        batch_size: int = 4096,
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, seed=seed)
        self.steps = _positive_int("steps", steps, minimum=0)
        self.max_queries = _positive_int("max_queries", max_queries)
        self.init_evals = _positive_int("init_evals", init_evals)
        self.max_num_evals = _positive_int("max_num_evals", max_num_evals)
        if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not gamma > 0:
            raise ValueError(f"gamma must be a number > 0; got {gamma!r}")
        if not math.isfinite(gamma):
            raise ValueError(f"gamma must be finite; got {gamma!r}")
        self.gamma = float(gamma)
        self.init_tries = _positive_int("init_tries", init_tries)
        self.batch_size = _positive_int("batch_size", batch_size)
        self._starting_points: Tensor | None = None

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        target: TargetSpec = None,
        model_mode: ModelMode = "eval",
        starting_points: Tensor | None = None,
    ) -> AttackResult:
        """As :meth:`Attack.__call__`, plus optional ``starting_points (N, ...)``: adversarial
        points (inside the bounds) to start from instead of the uniform-noise search. They are
        held on the attack object for the duration of the call (one call at a time per
        object); each costs one query to check."""
        if starting_points is not None:
            self._check_starts(model, x, starting_points)
        self._starting_points = starting_points
        try:
            return super().__call__(model, x, y, target=target, model_mode=model_mode)
        finally:
            self._starting_points = None

    @staticmethod
    def _check_starts(model: Classifier, x: Tensor, starts: Tensor) -> None:
        if not isinstance(starts, Tensor):
            raise TypeError(f"starting_points must be a tensor; got {type(starts).__name__}")
        if isinstance(x, Tensor) and starts.shape != x.shape:
            raise ValueError(
                f"starting_points must have the shape of x {tuple(x.shape)}; "
                f"got {tuple(starts.shape)}"
            )
        if isinstance(model, Classifier):
            model.check_input(starts)

    def theta(self, d: int) -> float:
        """The binary-search threshold ``θ``: ``γ / d^{3/2}`` (L2) or ``γ / d²`` (Linf)."""
        return self.gamma / (d**1.5 if self.norm == "l2" else d**2)

    # ------------------------------------------------------------------ pieces
    def _dist(self, r: _Run, xa: Tensor, pos: Tensor) -> Tensor:
        """``(len(pos),)`` distances ``||xa − x0[pos]||`` in the attack's norm."""
        return self.lp.size(xa - r.x0[pos])

    def _bisect(
        self, r: _Run, xt: Tensor, pos: Tensor, linf: bool, high: Tensor, thr: Tensor
    ) -> Tensor:
        """Binary search between ``x0[pos]`` and the adversarial ``xt (len(pos), ...)``: the
        blend factor in ``[0, 1]`` (``linf=False``) or the Linf radius in ``[0, high]``, until
        ``high − low <= thr`` or the budget is spent. Returns the last adversarial point."""
        p, x0 = r.p, r.x0[pos]
        low = torch.zeros_like(high)
        out = xt.clone()
        while True:
            q = ((high - low > thr) & (r.remaining(pos) > 0)).nonzero().squeeze(1)
            if q.numel() == 0:
                return out
            mid = (high[q] + low[q]) / 2
            m = _view(mid, xt).to(xt.dtype)
            if linf:
                xm = p.clip(torch.minimum(torch.maximum(xt[q], x0[q] - m), x0[q] + m))
            else:
                xm = p.clip((1 - m) * x0[q] + m * xt[q])
            ok = r.ask(xm, pos[q])
            out[q[ok]] = xm[ok]
            high[q[ok]] = mid[ok]
            low[q[~ok]] = mid[~ok]

    def _to_boundary(self, r: _Run, xt: Tensor, pos: Tensor, theta: float) -> Tensor:
        """The paper's binary search (threshold ``θ``) from ``xt`` toward ``x0[pos]``."""
        if self.norm == "l2":
            high = torch.ones(pos.numel(), dtype=torch.float64, device=xt.device)
            thr = torch.full_like(high, theta)
            return self._bisect(r, xt, pos, False, high, thr)
        high = self._dist(r, xt, pos).double()
        return self._bisect(r, xt, pos, True, high, (high * theta).clamp(max=theta))

    def _initialize(self, r: _Run) -> Tensor:
        """``(n,)`` bool, found; fills ``r.start (n, ...)`` with adversarial starting points
        (the noise blended toward ``x`` by binary search), ``x0`` where none was found."""
        p, x0 = r.p, r.x0
        every = torch.arange(r.n, device=x0.device)
        starts = self._starting_points
        if starts is not None:
            xs = starts[r.idx].to(x0.dtype)
            ok = r.ask(xs, every)
            if not bool(ok.all()):
                bad = r.idx[~ok]
                raise ValueError(
                    f"{bad.numel()} starting point(s) are not adversarial (first at index "
                    f"{int(bad[0])}): each must be misclassified (untargeted) or classified as "
                    "its target (targeted)"
                )
            r.start = xs
            return ok
        found = torch.zeros(r.n, dtype=torch.bool, device=x0.device)
        noise = x0.clone()
        limit = min(self.init_tries, self.max_queries)
        k, used = 1, 0  # every input still searching has made `used` draws
        low, high = p.low, p.high
        while used < limit:
            pend = (~found).nonzero().squeeze(1)
            if pend.numel() == 0:
                break
            k = min(k, limit - used)
            for grp in r.groups(pend, k):
                shape = (grp.numel(), k, *x0.shape[1:])
                u = torch.rand(shape, generator=p.generator, device=x0.device, dtype=x0.dtype)
                cand = (low + (high - low) * u).flatten(0, 1)  # (g·k, ...), input-major
                ok = r.ask(cand, grp.repeat_interleave(k)).view(-1, k)
                hit = ok.any(1)
                first = ok.to(torch.uint8).argmax(1)  # first adversarial draw
                pick = cand.view(shape)[torch.arange(grp.numel(), device=x0.device), first]
                noise[grp[hit]] = pick[hit]
                found[grp[hit]] = True
            used += k
            k *= 2
        pos = found.nonzero().squeeze(1)
        r.start = x0.clone()
        if pos.numel():
            high_a = torch.ones(pos.numel(), dtype=torch.float64, device=x0.device)
            tol = torch.full_like(high_a, _INIT_TOL)
            r.start[pos] = self._bisect(r, noise[pos], pos, False, high_a, tol)
        return found

    def _gradient(self, r: _Run, xb: Tensor, pos: Tensor, delta: Tensor, num_evals: int) -> Tensor:
        """Unit-L2 estimate ``(len(pos), ...)`` of the boundary's normal at ``xb``, from
        ``min(num_evals, budget left)`` probes per input at radius ``delta (len(pos),)``."""
        p = r.p
        grads = torch.empty_like(xb)
        local = torch.arange(pos.numel(), device=xb.device)
        for grp in r.groups(local, num_evals):
            g, k = grp.numel(), num_evals
            shape = (g, k, *xb.shape[1:])
            if self.norm == "l2":
                u = torch.randn(shape, generator=p.generator, device=xb.device, dtype=xb.dtype)
            else:
                u = torch.rand(shape, generator=p.generator, device=xb.device, dtype=xb.dtype)
                u = 2 * u - 1
            u = u / (u.flatten(2).norm(dim=2).view(g, k, *([1] * (xb.ndim - 1))) + _TINY)
            base = xb[grp].unsqueeze(1)  # (g, 1, ...)
            dl = delta[grp].to(xb.dtype).view(g, 1, *([1] * (xb.ndim - 1)))
            probe = p.clip(base + dl * u)
            u = (probe - base) / dl  # the direction actually probed
            b = r.remaining(pos[grp]).clamp(max=k)  # (g,) probes each input can pay for
            valid = torch.arange(k, device=xb.device).view(1, -1) < b.view(-1, 1)  # (g, k)
            owner = pos[grp].view(-1, 1).expand(g, k)[valid]
            phi = torch.zeros(g, k, dtype=xb.dtype, device=xb.device)
            phi[valid] = r.ask(probe[valid], owner).to(xb.dtype) * 2 - 1
            cnt = b.to(xb.dtype).clamp(min=1)
            mean = phi.sum(1) / cnt  # (g,)
            agree = mean.abs() == 1
            vals = torch.where(agree.view(-1, 1), phi, phi - mean.view(-1, 1)) * valid
            grad = (vals.view(g, k, *([1] * (xb.ndim - 1))) * u).sum(1) / _view(cnt, xb)
            grads[grp] = grad / _view(grad.flatten(1).norm(dim=1) + _TINY, grad)
        return grads

    def _step(self, r: _Run, xb: Tensor, pos: Tensor, v: Tensor, xi: Tensor) -> Tensor:
        """Geometric step-size search: ``clip(xb + ξ·v)`` with ``ξ`` halved until adversarial
        (per input; ``xb`` itself where none is found within the halvings or the budget)."""
        out = xb.clone()
        todo = torch.ones(pos.numel(), dtype=torch.bool, device=xb.device)
        xi = xi.clone()
        for _ in range(_HALVINGS + 1):
            q = (todo & (r.remaining(pos) > 0)).nonzero().squeeze(1)
            if q.numel() == 0:
                break
            cand = r.p.clip(xb[q] + _view(xi[q], xb).to(xb.dtype) * v[q])
            ok = r.ask(cand, pos[q])
            out[q[ok]] = cand[ok]
            todo[q[ok]] = False
            xi[q[~ok]] /= 2
        return out

    # ------------------------------------------------------------------ algorithm
    def minimize(self, p: Problem, idx: Tensor) -> Tensor:
        r = _Run(p, idx, self.max_queries, self.batch_size)
        x0 = r.x0
        d = int(x0[0].numel())
        theta = self.theta(d)
        found = self._initialize(r)
        if not bool(found.all()):
            miss = r.idx[~found]
            if p.targeted:
                raise ValueError(
                    f"hsja found no uniform noise classified as the target for {miss.numel()} "
                    f"input(s) (first at index {int(miss[0])}) within {self.init_tries} draws "
                    f"(max_queries {self.max_queries}); pass starting_points= (e.g. images of "
                    "the target class) or raise init_tries"
                )
            log.warning(
                "hsja: no adversarial uniform noise for %d input(s) (first at index %d) within "
                "%d draws; they are returned unchanged",
                miss.numel(),
                int(miss[0]),
                min(self.init_tries, self.max_queries),
            )
        act = found.nonzero().squeeze(1)
        best = x0.clone()
        best_d = torch.full((r.n,), float("inf"), dtype=torch.float64, device=x0.device)
        if act.numel() == 0:
            return best
        x_t = x0.clone()
        dist_tilde = torch.zeros_like(best_d)  # ||x̃_{t-1} − x||: sets δ_t
        dist_tilde[act] = self._dist(r, r.start[act], act).double()
        x_t[act] = self._to_boundary(r, r.start[act], act, theta)
        dist = self._dist(r, x_t, torch.arange(r.n, device=x0.device)).double()
        best[act], best_d[act] = x_t[act], dist[act]
        scale = math.sqrt(d) if self.norm == "l2" else float(d)
        span = float((p.high - p.low).max())
        for t in range(1, self.steps + 1):
            act = (found & (r.remaining(torch.arange(r.n, device=x0.device)) > 0)).nonzero()
            act = act.squeeze(1)
            if act.numel() == 0:
                break
            delta = (
                torch.full((act.numel(),), 0.1 * span, dtype=torch.float64, device=x0.device)
                if t == 1
                else scale * theta * dist_tilde[act]
            )
            num_evals = min(int(self.init_evals * math.sqrt(t)), self.max_num_evals)
            grad = self._gradient(r, x_t[act], act, delta, num_evals)
            v = grad if self.norm == "l2" else grad.sign()
            xt = self._step(r, x_t[act], act, v, dist[act] / math.sqrt(t))
            dist_tilde[act] = self._dist(r, xt, act).double()
            x_t[act] = self._to_boundary(r, xt, act, theta)
            dist[act] = self._dist(r, x_t[act], act).double()
            better = act[dist[act] < best_d[act]]
            best[better], best_d[better] = x_t[better], dist[better]
        return best
