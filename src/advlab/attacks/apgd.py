"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", ICML), the gradient attacks of AutoAttack.

* APGD-CE [``apgd-ce``]: APGD on the cross-entropy loss.
* APGD-DLR [``apgd-dlr``]: APGD on the difference-of-logits-ratio loss (needs >= 3 classes).
* APGD-T [``apgd-t``]: targeted APGD-DLR run over the top ``n_target_classes`` other classes of
  the clean logits, one target at a time, each only on inputs not yet misclassified; it is an
  untargeted attack to the caller (success = misclassified). Needs >= 4 classes.

The algorithm (paper §3, Algorithm 1): from ``x⁽⁰⁾`` (a random point on the eps-sphere), with
``z = P(x⁽ᵏ⁾ + η·d(∇f(x⁽ᵏ⁾)))`` (``d``: the norm's steepest-ascent direction),
``x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α(z − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))`` with momentum α = 0.75 (α = 1 on the
first step) and initial step ``η = 2·eps``. At the checkpoints ``w_j = ⌈p_j·N⌉`` (see
:func:`checkpoints`) the step of a sample is halved, and its iterate reset to its highest-loss
point ``x_max`` (with that point's gradient), when

1. the loss increased in fewer than ``rho·(w_j − w_{j−1})`` of the steps since ``w_{j−1}``
   (rho = 0.75), or
2. the step was not halved at ``w_{j−1}`` and the best loss did not improve since ``w_{j−1}``.

``steps`` (N, default 100) is the number of updates: N gradients (at ``x⁽⁰⁾ … x⁽ᴺ⁻¹⁾``) and one
more forward pass at ``x⁽ᴺ⁾``. Each sample returns its best iterate: an adversarial one if any
(the one with the highest loss), else ``x_max``. Restarts (``restarts``, default 1 as in
AutoAttack's standard version) and skipping already-adversarial inputs come from
:class:`BudgetAttack`; with ``early_stop=True`` inputs also leave the loop at their first
adversarial iterate (faster; same success, a less confident adversarial point), and when they
are stuck: an exactly zero gradient at an iterate that stopped moving (gradient masking; every
later iterate would be the same point, so the result is the same, see :func:`_stuck`).

Details the paper leaves open follow the authors' reference code (AutoAttack): the random start
``x + eps·t/||t||`` (``t`` uniform in ``[−1, 1]^d`` for Linf, Gaussian for L2, then clipped into
the bounds), the checkpoint test right after ``x⁽ʷʲ⁾`` is computed, and the momentum after a
reset using the iterate before it. Condition 2 is applied from the first checkpoint on, as the
paper writes it (the reference code skips it there). Norms: Linf and L2 (the paper's); the L1
variant (Croce & Hein 2021) is not implemented.
"""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import BudgetAttack, TargetSpec, _positive_int
from advlab.attacks.losses import LossFn, get_loss, margin
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks


def checkpoint_fractions() -> list[float]:
    """The paper's ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``
    for all ``p_j <= 1``: ``[0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99]``."""
    hundredths = [0, 22]  # exact integer arithmetic in units of 0.01
    while True:
        nxt = hundredths[-1] + max(hundredths[-1] - hundredths[-2] - 3, 6)
        if nxt > 100:
            return [h / 100 for h in hundredths]
        hundredths.append(nxt)


def checkpoints(steps: int) -> list[int]:
    """Checkpoint iterations ``w_j = ⌈p_j·steps⌉`` (distinct, increasing, starting at 0)."""
    steps = _positive_int("steps", steps)
    return sorted({-(-round(p * 100) * steps // 100) for p in checkpoint_fractions()})


def _fixed_target(loss: LossFn, target: Tensor | None) -> LossFn:
    """``loss`` with its target fixed to ``target`` (rows matching the current batch)."""

    def fn(logits: Tensor, y: Tensor, _t: Tensor | None) -> Tensor:
        return loss(logits, y, target)

    return fn


class _AutoPGD(BudgetAttack):
    """Shared APGD loop; subclasses choose the loss (``loss_name``) and how targets are used."""

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    loss_name: ClassVar[str] = "ce"

    def __init__(
        self,
        *,
        norm: str = "linf",
        eps: float = 0.3,
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        early_stop: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, eps=eps, early_stop=early_stop, restarts=restarts, seed=seed)
        self.steps = _positive_int("steps", steps)
        self.rho = _unit("rho", rho)
        self.momentum = _unit("momentum", momentum)

    def start(self, p: Problem, idx: Tensor) -> Tensor:
        """``x + eps·t/||t||``, ``t`` uniform in the cube (Linf) or Gaussian (L2), clipped.

        The noise is drawn for the whole batch and indexed, so a sample's start does not depend
        on which other samples are attacked (``early_stop`` then only saves work)."""
        x0, gen, dev = p.x[idx], p.generator, p.x.device
        if self.norm == "linf":
            t = (2 * torch.rand(p.x.shape, generator=gen, device=dev) - 1)[idx]
        else:
            t = torch.randn(p.x.shape, generator=gen, device=dev)[idx]
        size = self.lp.size(t).clamp_min(1e-12).view(-1, *([1] * (t.ndim - 1)))
        return p.clip(x0 + (self.eps * t / size).to(x0.dtype))

    def perturb(self, p: Problem, idx: Tensor) -> Tensor:
        target = p.target[idx] if p.target is not None else None
        return self.ascend(p, idx, target)[0]

    def ascend(self, p: Problem, idx: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
        """One APGD run on samples ``idx`` maximizing ``loss_name``'s loss ``(logits, y, target)``.

        Returns each sample's best iterate ``(len(idx), ...)`` and its logits ``(len(idx), K)``.
        Success is judged by ``p.is_adv`` (so APGD-T's internal targets only shape the loss).
        """
        loss_of = get_loss(self.loss_name)
        eps, rho, steps = self.eps, self.rho, self.steps
        x0 = p.x[idx]  # (n, ...)
        view = (-1, *([1] * (x0.ndim - 1)))

        def proj(xa: Tensor, center: Tensor) -> Tensor:  # onto the eps-ball, then the bounds
            return p.clip(center + self.lp.project(xa - center, eps))

        xa = self.start(p, idx)
        f, g, z = p.loss_grad(xa, idx, _fixed_target(loss_of, target))
        f = f.float()
        adv = p.is_adv(z, idx)
        # best iterate per sample (adversarial first, then highest loss): full size n
        out, out_f, out_adv, out_z = xa.clone(), f.clone(), adv.clone(), z.clone()
        pos = torch.arange(len(idx), device=x0.device)  # positions still iterating
        tgt = target
        # per active sample: previous iterate, highest-loss point and its gradient, step size,
        # loss at the previous iterate / last checkpoint, count of loss increases since then
        xp, xm, gm, fm = xa, xa, g, f
        eta = torch.full_like(f, 2.0 * eps)  # (n,)
        f_prev, f_check = f, f
        n_inc = torch.zeros_like(f)
        halved = torch.zeros_like(adv)
        marks = checkpoints(steps)
        interval = {w: w - v for v, w in pairwise(marks) if w < steps}

        for k in range(steps):
            if self.early_stop:
                keep = ~adv & ~_stuck(g, gm, xa, xp, xm)
                if not bool(keep.all()):  # drop inputs that became adversarial or are stuck
                    pos, x0, xa, xp, g, xm, gm = (t[keep] for t in (pos, x0, xa, xp, g, xm, gm))
                    fm, eta, f_prev, f_check, n_inc, halved = (
                        t[keep] for t in (fm, eta, f_prev, f_check, n_inc, halved)
                    )
                    tgt = tgt[keep] if tgt is not None else None
                    if pos.numel() == 0:
                        break
            a = 1.0 if k == 0 else self.momentum
            zk = proj(xa + eta.view(view).to(xa.dtype) * self.lp.direction(g), x0)
            xa, xp = proj(xa + a * (zk - xa) + (1 - a) * (xa - xp), x0), xa
            ia, last = idx[pos], k == steps - 1
            if last:  # no gradient needed at the final iterate
                z = p.logits(xa, ia)
                f = loss_of(z, p.y[ia], tgt).float()
            else:
                f, g, z = p.loss_grad(xa, ia, _fixed_target(loss_of, tgt))
                f = f.float()
            adv = p.is_adv(z, ia)
            prev_adv = out_adv[pos]
            better = (adv & ~prev_adv) | ((adv == prev_adv) & (f > out_f[pos]))
            out[pos] = torch.where(better.view(view), xa, out[pos])
            out_z[pos] = torch.where(better.view(-1, 1), z, out_z[pos])
            out_f[pos] = torch.where(better, f, out_f[pos])
            out_adv[pos] = prev_adv | adv
            if last:
                break
            up = f > fm  # new highest loss
            xm, gm = torch.where(up.view(view), xa, xm), torch.where(up.view(view), g, gm)
            fm = torch.where(up, f, fm)
            n_inc = n_inc + (f > f_prev).to(n_inc.dtype)
            f_prev = f
            if k + 1 in interval:  # checkpoint w_j = k + 1
                cut = (n_inc < rho * interval[k + 1]) | (~halved & (fm <= f_check))
                eta = torch.where(cut, eta / 2, eta)
                xa, g = torch.where(cut.view(view), xm, xa), torch.where(cut.view(view), gm, g)
                f_prev = torch.where(cut, fm, f_prev)
                halved, f_check, n_inc = cut, fm, torch.zeros_like(n_inc)
        return out, out_z


def _stuck(g: Tensor, gm: Tensor, xa: Tensor, xp: Tensor, xm: Tensor) -> Tensor:
    """``(n,)``: inputs that can never move again: the loss gradient is exactly zero at the
    iterate and at the highest-loss point, the last step did not move, and the iterate is the
    highest-loss point. The step direction and the momentum are then zero, a checkpoint reset
    lands on the same point, and every later iterate is the same point (up to the rounding of
    re-projecting it), with the same loss: the rest of the run cannot change the result. Such
    inputs come from gradient masking (e.g. a quantized input, whose gradient is zero)."""
    zero = ~g.flatten(1).any(1)  # (n,)
    if not bool(zero.any()):
        return zero
    same = (xa == xp).flatten(1).all(1) & (xa == xm).flatten(1).all(1)
    return zero & same & ~gm.flatten(1).any(1)


def _unit(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    return float(value)


@attacks.register("apgd-ce")
class APGDCE(_AutoPGD):
    """APGD on the cross-entropy loss (Croce & Hein 2020), Linf or L2.

    Args:
        norm, eps, early_stop, restarts, seed: see :class:`BudgetAttack` (eps default 0.3, the
            MNIST Linf budget; pass the budget of your threat model).
        steps: iterations N (default 100, the paper's). rho: checkpoint condition 1 threshold
            (0.75). momentum: α (0.75). Targeted calls maximize ``−CE(x, target)``.
    """


@attacks.register("apgd-dlr")
class APGDDLR(_AutoPGD):
    """APGD on the DLR loss ``−(z_y − max_{j≠y} z_j)/(z_π1 − z_π3)`` (Croce & Hein 2020), which is
    invariant to shifting and rescaling the logits. Same arguments as :class:`APGDCE`. Needs
    >= 3 classes; targeted calls use the targeted DLR loss and need >= 4 classes."""

    min_classes: ClassVar[int] = 3
    loss_name: ClassVar[str] = "dlr"

    def _resolve_target(self, p: Problem, target: TargetSpec) -> Tensor | None:
        t = super()._resolve_target(p, target)
        if t is not None and p.num_classes < 4:
            raise ValueError(
                f"{self.name} with a target uses the targeted DLR loss, which needs >= 4 "
                f"classes; this model has {p.num_classes}"
            )
        return t


@attacks.register("apgd-t")
class APGDT(APGDDLR):
    """APGD-T (Croce & Hein 2020): APGD on the targeted DLR loss
    ``−(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2)``, run for the targets ``t`` = the 2nd, 3rd, ...
    highest clean logit other than ``y`` (the top ``n_target_classes``, default 9 as in
    AutoAttack, capped at K − 1), each target only on the inputs not yet misclassified; the
    first success is kept, else the attempt with the highest CW margin. Untargeted to the
    caller (success = misclassified; ``target=`` is refused). Needs >= 4 classes. Each target
    costs ``steps`` gradients per input still attacked.
    """

    supports_targeted: ClassVar[bool] = False
    min_classes: ClassVar[int] = 4

    def __init__(
        self,
        *,
        norm: str = "linf",
        eps: float = 0.3,
        steps: int = 100,
        n_target_classes: int = 9,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        early_stop: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            norm=norm,
            eps=eps,
            steps=steps,
            restarts=restarts,
            rho=rho,
            momentum=momentum,
            early_stop=early_stop,
            seed=seed,
        )
        self.n_target_classes = _positive_int("n_target_classes", n_target_classes)

    def perturb(self, p: Problem, idx: Tensor) -> Tensor:
        y = p.y[idx]
        logits = p.logits(p.x[idx], idx).float()  # (n, K) clean
        ranked = logits.scatter(1, y.view(-1, 1), float("-inf")).argsort(1, descending=True)
        out = p.x[idx].clone()
        score = torch.full((len(idx),), float("-inf"), device=out.device)
        done = torch.zeros(len(idx), dtype=torch.bool, device=out.device)
        for j in range(min(self.n_target_classes, p.num_classes - 1)):
            sel = (~done).nonzero().squeeze(1)  # positions not yet fooled
            if sel.numel() == 0:
                break
            xa, z = self.ascend(p, idx[sel], ranked[sel, j])
            adv = p.is_adv(z, idx[sel])
            m = margin(z.float(), y[sel])
            better = adv | (m > score[sel])
            out[sel] = torch.where(better.view(-1, *([1] * (out.ndim - 1))), xa, out[sel])
            score[sel] = torch.where(better, m, score[sel])
            done[sel] = adv
        return out
