"""Square attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV) [``square``].

A score-based black-box attack: it only reads the model's logits (``p.logits``, one counted
query per input per iteration) and never computes a gradient. It is a random search on the
eps-sphere: each iteration proposes a change of ``x̂`` (the best point so far) inside a random
square window, queries it, and keeps it when the loss decreases (or the input becomes
adversarial).

* **Loss** (as in the reference code, AutoAttack's ``SquareAttack``): untargeted, the margin
  ``z_y − max_{j≠y} z_j``; targeted, the cross-entropy ``CE(z, t)``; both minimised (in
  advlab's "maximise" convention: :func:`~advlab.attacks.losses.margin` and
  :func:`~advlab.attacks.losses.ce`). Success is ``p.is_adv`` (misclassified / at the
  target), after which the input leaves the loop.
* **Square side** ``s = round(sqrt(p·H·W))`` (at least 1 for Linf; odd and at least 3 for L2;
  at most ``min(H, W)``), with ``p`` halved at iterations 10, 50, 200, 500, 1000, 2000, 4000,
  6000 and 8000 of a 10,000-query run, rescaled to ``n_queries`` (``it·10000/n_queries``), as
  in the reference code. Each input draws its own window position, uniformly among all
  ``(H − s + 1)·(W − s + 1)`` positions, and its own signs.
* **Linf** (paper Alg. 2): start from vertical stripes ``x + eps·ρ`` with one random sign ``ρ``
  per (input, channel, column); an update sets the window to ``x ± eps`` with one random sign
  per channel. As in the authors' code, a sign that would leave ``x̂`` unchanged is redrawn
  (up to 16 draws) so that no query is wasted on a repeat.
* **L2** (paper Alg. 3): start from a grid of ``min(H, W)//5``-sided tiles, each a "meta
  pseudo-Gaussian" pattern (two opposite-signed bumps, randomly transposed) with a random sign
  per channel, scaled to ``||δ|| = eps``; an update picks two windows, moves the L2 mass of the
  second into the first (whose content becomes its old direction plus a new random
  pseudo-Gaussian pattern, rescaled per channel to use the budget left), and rescales ``δ`` to
  the eps-sphere.

Everything is clipped into the bounds (per-feature bounds allowed) and the eps-ball every step.
Inputs must be images ``(N, C, H, W)``; non-square images use ``H·W`` for the area and
``min(H, W)`` as the largest side.

Budget and counting: ``n_queries`` (default 5000, AutoAttack's standard version) is the number
of queries of one run per input, the initial point included (as in the authors' code: one
query at the start, then at most ``n_queries − 1`` iterations). :class:`BudgetAttack` adds one
scoring query of the returned point, so ``res.queries`` is at most ``n_queries + 1`` per input
and run (plus one with ``early_stop=True``, which first checks the clean inputs and leaves the
already-misclassified ones unchanged). Square is early-exiting by construction: an input stops
at its first adversarial point whatever ``early_stop`` says. ``restarts`` re-runs the search on
the inputs not yet fooled.

Deviations from the reference code (none from the paper): window positions range over all
valid positions (the reference's ``randint(0, h − s)`` never touches the last row/column), and
the Linf side is capped at ``min(H, W)`` instead of ``h − 1``; L2 positions and signs are drawn
per input (the reference draws one position for the whole batch); targeted attacks use CE only
(no ``loss`` option).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import BudgetAttack, _positive_int
from advlab.attacks.losses import ce, margin
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks
from advlab.models.classifier import Classifier

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # p halves after each (of 10k)
_DRAWS = 16  # Linf: sign draws per update, the first that changes x̂ is used


def p_schedule(p_init: float, it: int, n_queries: int) -> float:
    """The reference's piecewise-constant fraction ``p`` of pixels changed at iteration ``it``
    (0-based) of an ``n_queries`` run: ``p_init / 2^k``, ``k`` = breakpoints passed."""
    scaled = int(it / n_queries * 10000)
    halvings = sum(1 for b in _SCHEDULE if scaled > b)
    return p_init / float(2**halvings)


def _bump(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(rows, cols)``: nested centred rectangles weighted ``1/(k+1)²``, unit L2 norm (the
    reference's ``pseudo_gaussian_pert_rectangles``)."""
    d = torch.zeros(rows, cols, dtype=dtype, device=device)
    rc, cc = rows // 2, cols // 2
    for k in range(max(rc, cc) + 1):
        d[max(rc - k, 0) : min(rc + k + 1, rows), max(cc - k, 0) : min(cc + k + 1, cols)] += (
            1.0 / (k + 1) ** 2
        )
    return d / d.square().sum().sqrt().clamp_min(1e-12)


def meta_pseudo_gaussian(s: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(s, s)``: a positive bump on the top ``s//2`` rows and a negative one below, unit L2
    norm (the paper's L2 update pattern η, untransposed)."""
    d = torch.zeros(s, s, dtype=dtype, device=device)
    if s // 2:
        d[: s // 2] = _bump(s // 2, s, dtype, device)
    d[s // 2 :] = -_bump(s - s // 2, s, dtype, device)
    return d / d.square().sum().sqrt().clamp_min(1e-12)


def _window_mask(vh: Tensor, vw: Tensor, s: int, h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-input ``s × s`` windows at rows ``vh (n,)`` and columns ``vw (n,)``: the mask
    ``(n, 1, H, W)`` and the in-window offsets ``(n, H)``, ``(n, W)`` (clamped to ``[0, s)``)."""
    r = torch.arange(h, device=vh.device).view(1, -1) - vh.view(-1, 1)  # (n, H)
    c = torch.arange(w, device=vw.device).view(1, -1) - vw.view(-1, 1)  # (n, W)
    inr, inc = (r >= 0) & (r < s), (c >= 0) & (c < s)
    mask = (inr.unsqueeze(2) & inc.unsqueeze(1)).unsqueeze(1)
    return mask, r.clamp(0, s - 1), c.clamp(0, s - 1)


@attacks.register("square")
class Square(BudgetAttack):
    """Square attack (Andriushchenko et al. 2020), score-based, Linf or L2; see the module
    docstring for the algorithm, the query counting and the deviations from the reference.

    Args:
        norm, eps, restarts, seed: see :class:`BudgetAttack` (eps default 0.3, the MNIST Linf
            budget; pass the budget of your threat model).
        n_queries: queries per input and run, the initial point included (default 5000).
        p_init: initial fraction of pixels in the square (default 0.8, AutoAttack's value; the
            authors' code suggests 0.05 (Linf) and 0.1 (L2) for standard ImageNet models and
            larger values for robust ones).
        early_stop: also check the clean inputs first (one query each) and leave the
            misclassified ones unchanged. Every input stops at its first success regardless.
    """

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")

    def __init__(
        self,
        *,
        norm: str = "linf",
        eps: float = 0.3,
        n_queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        early_stop: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, eps=eps, early_stop=early_stop, restarts=restarts, seed=seed)
        self.n_queries = _positive_int("n_queries", n_queries)
        if isinstance(p_init, bool) or not isinstance(p_init, int | float) or not 0 < p_init <= 1:
            raise ValueError(f"p_init must be a number in (0, 1]; got {p_init!r}")
        self.p_init = float(p_init)

    def _check(self, model: Classifier, x: Tensor, y: Tensor) -> Tensor:
        y = super()._check(model, x, y)
        if x.ndim != 4:
            raise ValueError(
                f"square needs images of shape (N, C, H, W); got x of shape {tuple(x.shape)}"
            )
        return y

    # ------------------------------------------------------------------ helpers
    def _side(self, it: int, h: int, w: int) -> int:
        s = round(math.sqrt(p_schedule(self.p_init, it, self.n_queries) * h * w))
        if self.norm == "l2":
            s = max(s, 3)
            s += 1 - s % 2  # odd
        return max(1, min(s, h, w))

    @staticmethod
    def _signs(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
        """Random ``±1`` of ``shape`` in ``like``'s dtype and device."""
        bits = torch.randint(0, 2, shape, generator=gen, device=like.device)
        return (2 * bits - 1).to(like.dtype)

    def _objective(self, p: Problem, logits: Tensor, idx: Tensor) -> Tensor:
        """``(len(idx),)``, maximised: ``max_{j≠y} z_j − z_y``, or ``−CE(z, t)`` targeted."""
        y, t = p.labels(idx)
        z = logits.float()
        return margin(z, y) if t is None else ce(z, y, t)

    # ------------------------------------------------------------------ init
    def _init_linf(self, p: Problem, x0: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        n, c, _, w = x0.shape
        stripes = self._signs((n, c, 1, w), p.generator, x0)  # one sign per column and channel
        return torch.clamp(x0 + self.eps * stripes, lo, hi)

    def _init_l2(self, p: Problem, x0: Tensor) -> Tensor:
        n, c, h, w = x0.shape
        s = max(min(h, w) // 5, 1)
        nh, nw = h // s, w // s  # tiles per column / row (truncated at the border)
        eta = meta_pseudo_gaussian(s, x0.dtype, x0.device)
        tiles = eta.repeat(nh, nw)  # (nh·s, nw·s)
        tiles_t = eta.t().repeat(nh, nw)
        gen, dev = p.generator, x0.device

        def per_tile(t: Tensor) -> Tensor:  # (n, k, nh, nw) -> (n, k, nh·s, nw·s)
            return t.repeat_interleave(s, 2).repeat_interleave(s, 3)

        flip = per_tile(torch.rand((n, 1, nh, nw), generator=gen, device=dev) > 0.5)
        sign = per_tile(self._signs((n, c, nh, nw), gen, x0))
        pattern = torch.where(flip, tiles_t, tiles) * sign  # (n, c, nh·s, nw·s)
        sh, sw = max((h - 5 * s) // 2, 0), max((w - 5 * s) // 2, 0)
        delta = torch.zeros_like(x0)
        hh, ww = min(nh * s, h - sh), min(nw * s, w - sw)
        delta[:, :, sh : sh + hh, sw : sw + ww] = pattern[:, :, :hh, :ww]
        return p.clip(x0 + self.eps * self.lp.direction(delta))  # ||delta|| = eps, clipped

    # ------------------------------------------------------------------ updates
    def _window(self, p: Problem, n: int, s: int, h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
        """A uniformly placed ``s × s`` window per input: ``_window_mask``'s triple."""
        dev = p.x.device
        vh = torch.randint(0, h - s + 1, (n,), generator=p.generator, device=dev)
        vw = torch.randint(0, w - s + 1, (n,), generator=p.generator, device=dev)
        return _window_mask(vh, vw, s, h, w)

    def _step_linf(self, p: Problem, it: int, xb: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        """Set a random window of ``x̂`` to ``x ± eps`` (one sign per channel), i.e. to ``hi`` or
        ``lo`` of the box ``(lo, hi)`` = eps-ball ∩ bounds. Among ``_DRAWS`` sign draws the first
        one that changes ``x̂`` is used (the reference redraws until one does)."""
        n, c, h, w = xb.shape
        mask, _, _ = self._window(p, n, self._side(it, h, w), h, w)  # (n, 1, h, w)
        # (n, c): the window of channel c already sits at hi / at lo
        at_hi = ((hi == xb) | ~mask).flatten(2).all(2)
        at_lo = ((lo == xb) | ~mask).flatten(2).all(2)
        up = torch.randint(0, 2, (n, _DRAWS, c), generator=p.generator, device=xb.device) == 1
        same = torch.where(up, at_hi.unsqueeze(1), at_lo.unsqueeze(1)).all(2)  # (n, draws)
        first = (~same).to(torch.uint8).argmax(1)  # first draw that changes x̂ (else 0)
        sign = up[torch.arange(n, device=xb.device), first].view(n, c, 1, 1)
        return torch.where(mask, torch.where(sign, hi, lo), xb)

    def _step_l2(
        self, p: Problem, it: int, x0: Tensor, xb: Tensor, etas: dict[int, Tensor]
    ) -> Tensor:
        """Move the L2 mass of a second random window into a first one, whose content becomes
        its old direction plus a random pseudo-Gaussian pattern; back onto the eps-sphere.
        ``etas``: the patterns by side, computed once per run."""
        n, c, h, w = x0.shape
        s = self._side(it, h, w)
        dev, eps = x0.device, self.eps
        delta = xb - x0  # (n, c, h, w)
        m1, r1, c1 = self._window(p, n, s, h, w)
        m2, _, _ = self._window(p, n, s, h, w)
        m1f = m1.to(delta.dtype)

        def wnorm(t: Tensor) -> Tensor:  # per-channel L2 norm, (n, c, 1, 1)
            return t.square().sum((2, 3), keepdim=True).sqrt()

        norm_w1 = wnorm(delta * m1f)
        norm_img = self.lp.size(delta).view(-1, 1, 1, 1)
        norm_both = wnorm(delta * (m1 | m2).to(delta.dtype))
        # the pseudo-Gaussian pattern placed in window 1, transposed for a random half
        if s not in etas:
            etas[s] = meta_pseudo_gaussian(s, delta.dtype, dev)
        eta = etas[s]
        straight = eta[r1.unsqueeze(2), c1.unsqueeze(1)]  # (n, h, w)
        transposed = eta.t()[r1.unsqueeze(2), c1.unsqueeze(1)]
        flip = torch.rand((n, 1, 1), generator=p.generator, device=dev) > 0.5
        pattern = torch.where(flip, transposed, straight).unsqueeze(1) * m1f  # (n, 1, h, w)
        sign = self._signs((n, c, 1, 1), p.generator, x0)
        new = pattern * sign + delta * m1f / (norm_w1 + 1e-12)
        budget = ((eps**2 - norm_img.square()).clamp_min(0) / c + norm_both.square()).sqrt()
        new = new / (wnorm(new) + 1e-12) * budget
        delta = delta.masked_fill(m2, 0.0)
        delta = torch.where(m1, new, delta)
        return p.clip(x0 + eps * self.lp.direction(delta))

    # ------------------------------------------------------------------ search
    def perturb(self, p: Problem, idx: Tensor) -> Tensor:
        x0 = p.x[idx]
        lo, hi = self.linf_box(p, idx)
        xb = self._init_linf(p, x0, lo, hi) if self.norm == "linf" else self._init_l2(p, x0)
        logits = p.logits(xb, idx)
        f = self._objective(p, logits, idx)
        adv = p.is_adv(logits, idx)
        out = xb.clone()  # each input's result (written when it leaves the loop)
        act = torch.arange(len(idx), device=x0.device)  # positions still searching
        view = (-1, 1, 1, 1)
        etas: dict[int, Tensor] = {}  # L2 update patterns by side
        for it in range(self.n_queries - 1):
            if bool(adv.any()):  # drop inputs that are adversarial
                keep = ~adv
                out[act[adv]] = xb[adv]
                act, x0, xb, lo, hi, f = (t[keep] for t in (act, x0, xb, lo, hi, f))
            if act.numel() == 0:
                return out
            if self.norm == "linf":
                xn = self._step_linf(p, it, xb, lo, hi)
            else:
                xn = self._step_l2(p, it, x0, xb, etas)
            logits = p.logits(xn, idx[act])
            fn = self._objective(p, logits, idx[act])
            adv = p.is_adv(logits, idx[act])
            better = adv | (fn > f)
            xb = torch.where(better.view(view), xn, xb)
            f = torch.where(better, fn, f)
        out[act] = xb
        return out
