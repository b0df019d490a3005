"""One-pixel attack (Su, Vargas & Sakurai 2019, "One pixel attack for fooling deep neural
networks", IEEE TEC) [``one-pixel``].

A score-based black-box attack: differential evolution (DE) over the positions and values of
``pixels`` pixels, reading only the model's scores (``p.logits``, one counted query per
candidate image) and never a gradient. Every candidate of every image still being attacked is
scored in one forward pass per generation (split into chunks of ``batch_size`` candidate
images), not one image at a time.

* **Candidate**: ``pixels`` tuples ``(row, col, u_1, ..., u_C)``. ``row`` and ``col`` are
  continuous, the pixel is ``(⌊row⌋, ⌊col⌋)``; ``u_c ∈ [0, 1]`` is the channel's value as a
  fraction of that feature's range, so the pixel is set to ``low + u·(high − low)`` (scalar
  or per-feature bounds alike). Where two of a candidate's pixels land on the same location
  the later one is written.
* **Initial population** (the paper: U(1, 32) coordinates on 32×32 CIFAR-10 images and
  N(µ=128, σ=127) RGB values on the 0–255 scale): ``row ~ U(0, H)``, ``col ~ U(0, W)`` (the
  paper's uniform over all pixels, 0-based); ``u ~ N(128/255, 127/255)`` clipped to
  ``[0, 1]``, i.e. the paper's Gaussian mapped onto the model's bounds (for ``(0, 1)`` bounds:
  ``N(0.502, 0.498)`` clipped; about 16 % of the draws land on each end of the range).
* **Mutation** (paper Eq. 2, DE/rand/1, ``F = scale = 0.5``, no crossover): child
  ``i = x_r1 + F·(x_r2 − x_r3)`` with ``r1, r2, r3`` distinct and different from ``i`` (the
  usual DE/rand/1 of Storn & Price; the paper writes ``r1 ≠ r2 ≠ r3``). All children of a
  generation come from the previous generation. Coordinates that leave the image wrap around
  (mod ``H`` / ``W``) and values are clipped to ``[0, 1]`` (the paper does not
  say; SciPy's DE, used by torchattacks and ART, redraws out-of-range parameters instead).
* **Selection**: each child competes with the parent of its index and replaces it when its
  fitness is at least as good (Storn & Price's ``≤``).
* **Fitness** (paper: the true-class probability ``p_y``, minimised, untargeted; the
  target-class probability ``p_t``, maximised, targeted): computed as the log-odds
  ``logsumexp_{j≠y} z_j − z_y`` (maximised; ``−log p_y`` is its softplus) and
  ``z_t − logsumexp_{j≠t} z_j`` (maximised; ``log p_t`` is minus the softplus of its
  negative). Both order candidates exactly as the probabilities do (selection only compares
  fitness values), but they keep resolving candidates where float32 probabilities saturate at
  1 (``p_y > 1 − 6·10⁻⁸``, common on confident models: every candidate would then tie).
* **Early exit**: an image leaves the search as soon as one of its candidates is adversarial
  (misclassified, or classified as the target), with the fittest such candidate. The paper
  stops on probability thresholds instead (target probability above 50 % for its targeted
  attacks, true-class probability below 5 % for its untargeted ones) and then checks the
  label; exiting at the first adversarial candidate is what torchattacks and ART do (they
  check the best candidate after each generation). Images never fooled return the fittest
  candidate of the last generation.

**Threat model and the budget.** This is a :class:`BudgetAttack` with norm ``"l0"``, which in
advlab counts changed *features* (one channel of one pixel each, as for CW-L0 and JSMA). A
``pixels``-pixel candidate changes at most ``pixels × C`` features, so that is the attack's
budget: the result's ``eps`` is ``min(eps, pixels × C)``, resolved per call from the images'
channel count, and ``res.accuracy_at(res.eps)`` is the accuracy under the attack. ``eps``
(default ``inf``) is an optional tighter cap: with ``eps < pixels × C`` each candidate image
keeps only its ``⌊eps⌋`` largest feature changes before it is scored, so the search optimises
exactly the points it can return (e.g. ``eps=1`` with ``pixels=1`` on RGB changes one channel
of one pixel). The base class's projection onto the L0 ball is then the identity on every
returned point (it is applied, exactly, only to points over the budget, which this search
never produces), and ``eps=0`` returns the inputs.

**Duplicates are not queried again** (``skip_duplicates=True``, default): a child whose
image is identical to that of a member of the current population, or of an earlier child of
the same generation, takes that image's fitness instead of a new query (the image is a
function of the candidate's pixel positions ``(⌊row⌋, ⌊col⌋)`` and values, compared exactly).
For a deterministic model (whose output for an image does not depend on the rest of its
batch) the search, the result and the random stream are exactly those of the plain algorithm,
with fewer queries: once the population converges most children are exact copies
(``x_r2 = x_r3``) or land on a pixel and a clipped value already scored. On LeNet (one
pixel, population 399, 100 generations; ``benchmarks/blackbox_speed.py``) it spends 31 % of
the plain algorithm's queries on MNIST and 18 % on the 8x8 digits, for the same results; with
several pixels or colour channels exact repeats are rarer. Pass ``False`` for randomized
models, where a repeated query is a fresh draw, or to spend the paper's query budget exactly.

**Queries** (forward evaluations per image, exact): one per distinct candidate image scored,
at most ``population`` for the initial population and ``population`` per generation run
(exactly that with ``skip_duplicates=False``), plus one scoring query of the returned point
by :class:`BudgetAttack` (plus one with ``early_stop=True``, which first checks the clean
inputs and leaves misclassified ones unchanged). With ``skip_duplicates=False`` an image that
is never fooled costs ``population · (generations + 1) + 1`` queries: 40,401 with the paper's
settings. ``restarts`` re-runs the search on the images not yet fooled.

Inputs must be images ``(N, C, H, W)``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import BudgetAttack, _positive_int
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks
from advlab.attacks.result import AttackResult
from advlab.models.classifier import Classifier

_INIT_MEAN = 128.0 / 255.0  # paper: N(128, 127) on the 0..255 scale, as a fraction of the range
_INIT_STD = 127.0 / 255.0
Bounds = tuple[Tensor, Tensor]  # per-feature (low, high), each (C, H·W)


def distinct_others(n: int, size: int, gen: torch.Generator, device: torch.device) -> Tensor:
    """``(n, size, 3)`` int64: for each member ``i`` of ``n`` populations of ``size``, three
    indices drawn uniformly without replacement from ``{0, ..., size−1} \\ {i}``."""
    taken = torch.arange(size, device=device).expand(n, size).unsqueeze(2)  # (n, size, 1)
    for m in range(3):
        r = torch.randint(0, size - 1 - m, (n, size), generator=gen, device=device)
        for s in taken.sort(dim=2).values.unbind(2):  # skip the taken ones, in ascending order
            r = r + (r >= s).long()
        taken = torch.cat([taken, r.unsqueeze(2)], 2)
    return taken[:, :, 1:]


def first_of_kind(rows: Tensor) -> Tensor:
    """``(m,)`` int64: for each row of ``rows (m, d)``, the index of the first row equal to it.
    A stable sort on one column at a time, least significant first (much faster than
    ``torch.unique(dim=0)`` on the CPU)."""
    m = rows.shape[0]
    order = torch.arange(m, device=rows.device)
    for j in range(rows.shape[1] - 1, -1, -1):
        order = order[torch.sort(rows[order, j], stable=True).indices]
    srt = rows[order]  # equal rows are adjacent, in their original order
    new = torch.ones(m, dtype=torch.bool, device=rows.device)
    new[1:] = (srt[1:] != srt[:-1]).any(1)
    start = torch.where(new, torch.arange(m, device=rows.device), 0).cummax(0).values
    first = torch.empty_like(order)
    first[order] = order[start]
    return first


@attacks.register("one-pixel")
class OnePixel(BudgetAttack):
    """One-pixel attack (Su et al. 2019): differential evolution over ``pixels`` pixels,
    score-based; see the module docstring for the algorithm, the budget and the query count.

    Args:
        pixels: pixels changed per image (default 1; the paper also reports 3 and 5).
        population: candidates per image (default 400, the paper's), at least 4.
        generations: DE iterations after the initial population (default 100, the paper's).
        scale: DE's scale parameter ``F`` (default 0.5, the paper's), in ``(0, 2]``.
        eps: optional cap on the changed features (L0), default ``inf``: the ``pixels × C``
            features of the pixels; see the module docstring.
        skip_duplicates: do not query a candidate image identical to one already scored in
            the population or the generation (default ``True``; see the module docstring).
        batch_size: candidate images per forward pass; ``None`` (default): 512 on the CPU
            (small chunks stay in cache: about 2x faster than 2048 for LeNet on MNIST) and
            4096 on other devices. Lower it for large models or images. It only changes how
            the forward passes are chunked, not the search.
        early_stop, restarts, seed, norm (``"l0"`` only): see :class:`BudgetAttack`. Every
            image stops at its first adversarial candidate whatever ``early_stop`` says.
    """

    norms: ClassVar[tuple[str, ...]] = ("l0",)

    def __init__(
        self,
        *,
        pixels: int = 1,
        population: int = 400,
        generations: int = 100,
        scale: float = 0.5,
        eps: float = math.inf,
        skip_duplicates: bool = True,
        batch_size: int | None = None,
        norm: str = "l0",
        early_stop: bool = False,
        restarts: int = 1,
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, eps=eps, early_stop=early_stop, restarts=restarts, seed=seed)
        self.pixels = _positive_int("pixels", pixels)
        self.population = _positive_int("population", population, minimum=4)
        self.generations = _positive_int("generations", generations, minimum=0)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 2:
            raise ValueError(f"scale (DE's F) must be a number in (0, 2]; got {scale!r}")
        self.scale = float(scale)
        self.skip_duplicates = bool(skip_duplicates)
        self.batch_size = None if batch_size is None else _positive_int("batch_size", batch_size)

    def _check(self, model: Classifier, x: Tensor, y: Tensor) -> Tensor:
        y = super()._check(model, x, y)
        if x.ndim != 4:
            raise ValueError(
                f"one-pixel needs images of shape (N, C, H, W); got x of shape {tuple(x.shape)}"
            )
        return y

    # ------------------------------------------------------------------ budget
    def features(self, channels: int) -> int:
        """The effective L0 budget for images with ``channels`` channels:
        ``min(⌊eps⌋, pixels × channels)``."""
        full = self.pixels * channels
        return full if self.eps >= full else math.floor(self.eps)

    def project(self, p: Problem, xa: Tensor, idx: Tensor) -> Tensor:
        """Points within the budget are returned as they are (no ``x + (xa − x)`` round trip);
        any other is projected onto the L0 ball; then clamped into the bounds."""
        x0 = p.rows(p.x, idx)
        budget = self.features(x0.shape[1])
        delta = xa - x0
        over = self.lp.size(delta) > budget
        if bool(over.any()):
            xa = torch.where(over.view(-1, 1, 1, 1), x0 + self.lp.project(delta, budget), xa)
        return p.clip(xa)

    def _cap(self, channels: int) -> int | None:
        """The cap on feature changes per candidate, ``None`` when ``eps`` does not bind."""
        cap = self.features(channels)
        return cap if cap < self.pixels * channels else None

    def _result(self, p: Problem, x_adv: Tensor, logits: Tensor | None) -> AttackResult:
        res = super()._result(p, x_adv, logits)
        res.eps = float(self.features(p.x.shape[1]))
        return res

    # ------------------------------------------------------------------ candidates
    def _init_population(self, n: int, shape: tuple[int, int, int], p: Problem) -> Tensor:
        """``(n, population, pixels, 2 + C)`` float32: coordinates ``U(0, H)``, ``U(0, W)``;
        value fractions ``N(128/255, 127/255)`` clipped to ``[0, 1]``."""
        c, h, w = shape
        size = (n, self.population, self.pixels)
        gen, dev = p.generator, p.x.device
        coords = torch.rand((*size, 2), generator=gen, device=dev)
        coords = coords * torch.tensor([float(h), float(w)], device=dev)
        values = torch.randn((*size, c), generator=gen, device=dev) * _INIT_STD + _INIT_MEAN
        return torch.cat([coords, values.clamp_(0.0, 1.0)], 3)

    def _mutate(self, pop: Tensor, h: int, w: int, gen: torch.Generator) -> Tensor:
        """DE/rand/1 children ``(n, P, pixels, 2 + C)`` of ``pop``: ``x_r1 + F·(x_r2 − x_r3)``,
        coordinates wrapped into the image, values clipped to ``[0, 1]``."""
        n, size = pop.shape[:2]
        r = distinct_others(n, size, gen, pop.device)  # (n, P, 3)
        rows = torch.arange(n, device=pop.device).view(n, 1)
        child = pop[rows, r[..., 0]] + self.scale * (pop[rows, r[..., 1]] - pop[rows, r[..., 2]])
        child[..., 0].remainder_(h)
        child[..., 1].remainder_(w)
        child[..., 2:].clamp_(0.0, 1.0)
        return child

    @staticmethod
    def _positions(cand: Tensor, h: int, w: int) -> Tensor:
        """``(..., pixels)`` int64 flat pixel index ``⌊row⌋·W + ⌊col⌋`` of each pixel of
        ``cand (..., pixels, 2 + C)``."""
        row = cand[..., 0].floor().long().clamp_(0, h - 1)
        col = cand[..., 1].floor().long().clamp_(0, w - 1)
        return row * w + col

    def _images(
        self, x0: Tensor, img: Tensor, cand: Tensor, low: Tensor, high: Tensor, cap: int | None
    ) -> Tensor:
        """Candidate images ``(m, C, H, W)``: ``x0[img]`` (``x0 (n, C, H, W)``, ``img (m,)``)
        with the pixels of ``cand (m, pixels, 2 + C)`` set; ``low``/``high`` ``(C, H·W)``;
        ``cap``: keep only that many largest feature changes (``None``: all)."""
        _, c, h, w = x0.shape
        m, k = cand.shape[:2]
        xc = x0.reshape(x0.shape[0], c, h * w).index_select(0, img)  # (m, C, HW), a copy
        pos = self._positions(cand, h, w).unsqueeze(1).expand(m, c, k)  # (m, C, k)
        lo = low.unsqueeze(0).expand(m, c, h * w).gather(2, pos)  # (m, C, k)
        hi = high.unsqueeze(0).expand(m, c, h * w).gather(2, pos)
        values = lo + cand[..., 2:].transpose(1, 2).to(x0.dtype) * (hi - lo)  # (m, C, k)
        if cap is not None:  # keep the cap largest changes, the others stay at x0
            clean = xc.gather(2, pos)
            change = (values - clean).abs().flatten(1)  # (m, C·k)
            keep = torch.zeros_like(change, dtype=torch.bool)
            keep.scatter_(1, change.topk(cap, dim=1).indices, True)
            values = torch.where(keep.view(m, c, k), values, clean)
        for j in range(k):  # one pixel at a time: a later pixel overwrites an earlier one
            xc.scatter_(2, pos[:, :, j : j + 1], values[:, :, j : j + 1])
        return xc.view(m, c, h, w)

    # ------------------------------------------------------------------ scoring
    @staticmethod
    def _query(p: Problem, xc: Tensor, rows: Tensor) -> Tensor:
        """Logits ``(m, K)`` of candidate images ``xc (m, ...)`` of the samples ``rows (m,)``
        (sorted, repeated): one counted query per candidate image."""
        return p.logits(xc, rows)  # counts one query per listing of a sample

    @staticmethod
    def _fitness(p: Problem, logits: Tensor, rows: Tensor) -> Tensor:
        """``(m,)``, maximised: ``logsumexp_{j≠y} z_j − z_y`` untargeted, ``z_t −
        logsumexp_{j≠t} z_j`` targeted (log-odds; see the module docstring)."""
        y, t = p.labels(rows)
        z = logits.float()
        c = (y if t is None else t).view(-1, 1)
        odds = z.gather(1, c).squeeze(1) - z.scatter(1, c, float("-inf")).logsumexp(1)
        return -odds if t is None else odds

    def _score(
        self, p: Problem, rows: Tensor, x0: Tensor, img: Tensor, cand: Tensor, bounds: Bounds
    ) -> tuple[Tensor, Tensor]:
        """Fitness (maximised, :meth:`_fitness`) and adversarial flags,
        ``(m,)`` each, of the candidates ``cand (m, pixels, 2 + C)`` of the images ``img (m,)``
        (positions in ``x0``, sorted) whose samples are ``rows (m,)``; ``batch_size`` at a time."""
        m = cand.shape[0]
        bs = self.batch_size or (512 if x0.device.type == "cpu" else 4096)
        cap = self._cap(x0.shape[1])
        fit = torch.empty(m, device=x0.device)
        adv = torch.empty(m, dtype=torch.bool, device=x0.device)
        for s in range(0, m, bs):
            sl = slice(s, s + bs)
            logits = self._query(p, self._images(x0, img[sl], cand[sl], *bounds, cap), rows[sl])
            fit[sl] = self._fitness(p, logits, rows[sl])
            adv[sl] = p.is_adv(logits, rows[sl])
        return fit, adv

    def _leaders(self, cand: Tensor, parents: Tensor | None, h: int, w: int) -> Tensor:
        """``(n, P)``: for each candidate of ``cand (n, P, pixels, 2 + C)``, the first row of
        ``[parents; cand]`` (per image, ``(n, R, ...)``, parents first) with the same image:
        itself when it is the first of its kind, else a parent or an earlier candidate."""
        both = cand if parents is None else torch.cat([parents, cand], 1)  # (n, R, k, D)
        n, r = both.shape[:2]
        owner = torch.arange(n, device=cand.device).view(n, 1, 1).expand(n, r, 1)
        pixel = torch.cat([self._positions(both, h, w).float().unsqueeze(3), both[..., 2:]], 3)
        keys = torch.cat([owner.float(), pixel.flatten(2)], 2)  # (n, R, 1 + k·(1 + C))
        lead = first_of_kind(keys.view(n * r, -1)).view(n, r)
        lead = lead - torch.arange(0, n * r, r, device=cand.device).view(n, 1)  # within image
        return lead[:, r - cand.shape[1] :]

    def _evaluate(
        self,
        p: Problem,
        idx: Tensor,
        x0: Tensor,
        cand: Tensor,
        bounds: Bounds,
        known: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Fitness and adversarial flags, ``(n, P)`` each, of every candidate of
        ``cand (n, P, pixels, 2 + C)`` for the samples ``idx (n,)`` with clean images ``x0``.
        ``known``: the current population and its fitness ``(n, P)``, none adversarial; with
        ``skip_duplicates`` only the first candidate of each distinct image not in the
        population is queried."""
        n, size = cand.shape[:2]
        flat = cand.reshape(n * size, *cand.shape[2:])
        img = torch.arange(n, device=cand.device).repeat_interleave(size)  # (n·P,)
        if not self.skip_duplicates:
            fit, adv = self._score(p, idx[img], x0, img, flat, bounds)
            return fit.view(n, size), adv.view(n, size)
        off = 0 if known is None else known[0].shape[1]
        lead = self._leaders(cand, None if known is None else known[0], *x0.shape[2:])
        own = lead == torch.arange(off, off + size, device=cand.device)  # (n, P) first of kind
        q = own.view(-1).nonzero().squeeze(1)  # image-major, so img[q] stays sorted
        fit = torch.empty(n * size, device=cand.device)
        adv = torch.zeros(n * size, dtype=torch.bool, device=cand.device)
        fit[q], adv[q] = self._score(p, idx[img[q]], x0, img[q], flat[q], bounds)
        fit, adv = fit.view(n, size), adv.view(n, size)
        src = (lead - off).clamp_(min=0)  # an earlier candidate of the same image
        fit = torch.where(own, fit, fit.gather(1, src))
        adv = torch.where(own, adv, adv.gather(1, src))
        if known is not None:  # a copy of a parent: its fitness, not adversarial
            parent = lead < off
            fit = torch.where(parent, known[1].gather(1, lead.clamp(max=off - 1)), fit)
            adv = adv & ~parent
        return fit, adv

    # ------------------------------------------------------------------ search
    def perturb(self, p: Problem, idx: Tensor) -> Tensor:
        x0_all = p.rows(p.x, idx)
        n, c, h, w = x0_all.shape
        bounds = (
            torch.broadcast_to(p.low, (c, h, w)).reshape(c, h * w),
            torch.broadcast_to(p.high, (c, h, w)).reshape(c, h * w),
        )
        pop = self._init_population(n, (c, h, w), p)  # (n, P, k, 2 + C)
        winner = pop[:, 0].clone()  # (n, k, 2 + C): the candidate each image returns
        act = torch.arange(n, device=x0_all.device)  # positions still searching
        x0 = x0_all
        fit, adv = self._evaluate(p, idx, x0, pop, bounds)
        cand, cfit = pop, fit  # the candidates scored last (the children after generation 0)
        for g in range(self.generations + 1):
            if g > 0:
                cand = self._mutate(pop, h, w, p.generator)
                cfit, adv = self._evaluate(p, idx[act], x0, cand, bounds, (pop, fit))
                better = cfit >= fit  # (n_act, P): the child replaces its parent
                pop = torch.where(better.view(*better.shape, 1, 1), cand, pop)
                fit = torch.where(better, cfit, fit)
            hit = adv.any(1)  # images with an adversarial candidate leave with the fittest one
            if bool(hit.any()):
                pick = torch.where(adv, cfit, float("-inf")).argmax(1)  # (n_act,)
                winner[act[hit]] = cand[hit, pick[hit]]
                keep = ~hit
                act, x0, pop, fit = act[keep], x0[keep], pop[keep], fit[keep]
            if act.numel() == 0:
                break
        if act.numel():  # never fooled: the fittest candidate of the last generation
            winner[act] = pop[torch.arange(len(act), device=pop.device), fit.argmax(1)]
        img = torch.arange(n, device=x0_all.device)
        return self._images(x0_all, img, winner, *bounds, self._cap(c))
