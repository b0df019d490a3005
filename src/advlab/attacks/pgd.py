"""Gradient-ascent attacks in the eps-ball: PGD and its special cases.

* PGD [``pgd``] (Madry et al. 2018): random start in the ball, ``steps`` steps of size
  ``step_size`` along the norm's steepest-ascent direction, projection after each step.
  Defaults are Madry's MNIST setting: Linf, eps 0.3, 40 steps of 0.01, random start.
* FGSM [``fgsm``] (Goodfellow et al. 2015): one step of size eps along ``sign ∇J(x, y)``;
  targeted: ``x - eps·sign ∇J(x, y_target)``. FGM [``fgm``]: the L2 fast gradient method.
* BIM / I-FGSM [``bim``] (Kurakin et al. 2017): no random start, step 1/255,
  ``min(eps·255 + 4, 1.25·eps·255)`` iterations by default. ILLC [``illc``]: BIM towards the
  least-likely class.
* MI-FGSM [``mi-fgsm``] (Dong et al. 2018): momentum ``g ← μ·g + ∇/||∇||_1``, step along
  ``sign g``; 10 steps of eps/10, μ = 1.

Every step computes one forward and one backward pass; with ``early_stop=True`` inputs leave
the loop as soon as they are adversarial (their first adversarial point is kept).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import BudgetAttack, _nonneg, _positive_int
from advlab.attacks.losses import get_loss, margin
from advlab.attacks.oracles import gradient_oracle
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks


@attacks.register("pgd")
class PGD(BudgetAttack):
    """Projected gradient descent (Madry et al. 2018) for Linf, L2 and L1.

    Args:
        norm, eps, early_stop, restarts, seed: see :class:`BudgetAttack`.
        steps: iterations (default 40). step_size: per-step size in the norm (default 0.01 for
            eps 0.3; ``None`` means ``2.5 · eps / steps``, Madry et al.'s rule).
        random_start: start from a uniform random point of the ball (default True).
        loss: ``"ce"`` (default), ``"margin"`` (CW) or ``"dlr"``.
        gradient: ``"autograd"`` (default: exact input gradients), or a black-box estimate from
            forward queries only, ``"spsa"`` (Uesato et al. 2018) or ``"nes"`` (Ilyas et al. 2018)
            (see :mod:`advlab.attacks.oracles`); ``samples`` perturbation pairs per step (default
            64) of size ``fd_size`` (default 0.01 for SPSA's δ and NES's σ).
        keep: without early stop, which iterate to return: ``"last"`` (default, the textbook
            algorithm) or ``"confident"`` (per input, the adversarial iterate with the largest CW
            margin seen during the run, else the last one). With ``early_stop=True`` an input
            keeps its first adversarial point.
    """

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")

    def __init__(
        self,
        *,
        norm: str = "linf",
        eps: float = 0.3,
        steps: int = 40,
        step_size: float | None = 0.01,
        random_start: bool = True,
        loss: str = "ce",
        restarts: int = 1,
        early_stop: bool = False,
        keep: str = "last",
        gradient: str = "autograd",
        samples: int = 64,
        fd_size: float = 0.01,
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, eps=eps, early_stop=early_stop, restarts=restarts, seed=seed)
        if keep not in ("last", "confident"):
            raise ValueError(f"keep must be 'last' or 'confident'; got {keep!r}")
        self.keep = keep
        self.gradient = gradient
        self.samples = _positive_int("samples", samples)
        self.fd_size = _nonneg("fd_size", fd_size)
        if self.fd_size == 0:
            raise ValueError("fd_size must be > 0")
        self._grad = gradient_oracle(gradient, samples=self.samples, size=self.fd_size)
        self.steps = _positive_int("steps", steps)
        self.step_size = (
            2.5 * self.eps / self.steps if step_size is None else _nonneg("step_size", step_size)
        )
        self.random_start = bool(random_start)
        get_loss(loss)
        self.loss = loss

    def start(self, p: Problem, idx: Tensor) -> Tensor:
        x0 = p.x[idx]
        if not self.random_start:
            return x0.clone()
        noise = self.lp.random(x0.shape, self.eps, p.generator, x0.device).to(x0.dtype)
        return p.clip(x0 + noise)

    @staticmethod
    def _more_confident(
        p: Problem, idx: Tensor, xa: Tensor, logits: Tensor, best: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        """Per input, keep ``xa`` where it is adversarial with a larger CW margin than ``best``
        (``best`` starts as ``xa`` with margin -inf, so non-adversarial inputs end at ``xa``)."""
        y, t = p.labels(idx)
        m = margin(logits.float(), y, t)
        m = torch.where(p.is_adv(logits, idx), m, torch.full_like(m, float("-inf")))
        if best is None:
            return xa.clone(), m
        better = m > best[1]
        shape = (-1, *([1] * (xa.ndim - 1)))
        return torch.where(better.view(shape), xa, best[0]), torch.maximum(m, best[1])

    def direction(self, grad: Tensor, state: dict[str, Any]) -> Tensor:
        """Unit steepest-ascent direction for this step; MI-FGSM overrides it."""
        return self.lp.direction(grad)

    def perturb(self, p: Problem, idx: Tensor) -> Tensor:
        loss = get_loss(self.loss)
        xa = self.start(p, idx)
        # Linf: ball ∩ bounds is a box (lo, hi), so each projection is one clamp
        box = self.linf_box(p, idx) if self.norm == "linf" else None

        def step(xa: Tensor, grad: Tensor, sel: Tensor | None, state: dict[str, Any]) -> Tensor:
            """One ascent step and projection; ``sel``: positions in ``idx`` (None: all)."""
            moved = torch.add(xa, self.direction(grad, state), alpha=self.step_size)
            if box is None:
                return self.project(p, moved, idx if sel is None else idx[sel])
            lo, hi = box if sel is None else (box[0][sel], box[1][sel])
            return moved.clamp_(lo, hi)

        state: dict[str, Any] = {}
        if not self.early_stop:  # textbook loop on the whole batch, no indexing overhead
            best: tuple[Tensor, Tensor] | None = None  # (x, margin) of the most confident
            for _ in range(self.steps):
                _, grad, logits = self._grad(p, xa, idx, loss)
                if self.keep == "confident":
                    best = self._more_confident(p, idx, xa, logits, best)
                xa = step(xa, grad, None, state)
            if best is None:
                return xa
            logits = p.logits(xa, idx)  # the last iterate competes too
            bx, bm = self._more_confident(p, idx, xa, logits, best)
            never = torch.isinf(bm).view(-1, *([1] * (xa.ndim - 1)))  # never adversarial
            return torch.where(never, xa, bx)
        out = xa.clone()
        act = torch.arange(len(idx), device=xa.device)  # positions still being attacked
        for _ in range(self.steps):
            _, grad, logits = self._grad(p, xa, idx[act], loss)
            adv = p.is_adv(logits, idx[act])
            if bool(adv.any()):
                out[act[adv]] = xa[adv]
                keep = ~adv
                act, xa, grad = act[keep], xa[keep], grad[keep]
                state = {k: v[keep] for k, v in state.items()}
                if act.numel() == 0:
                    return out
            xa = step(xa, grad, act, state)
        out[act] = xa
        return out


@attacks.register("fgsm")
class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2015): ``x + eps·sign ∇J(x, y)``, one step,
    clipped to the bounds; targeted: ``x - eps·sign ∇J(x, y_target)``."""

    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def __init__(
        self,
        *,
        eps: float = 0.3,
        loss: str = "ce",
        norm: str = "linf",
        early_stop: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            norm=norm,
            eps=eps,
            steps=1,
            step_size=eps,
            random_start=False,
            loss=loss,
            early_stop=early_stop,
            seed=seed,
        )

    def config(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in super().config().items()
            if k not in ("steps", "step_size", "random_start", "restarts", "keep")
        }


@attacks.register("fgm")
class FGM(FGSM):
    """Fast gradient method, L2 (Goodfellow et al. 2015; Miyato et al.): one step of L2 size eps
    along ``∇J / ||∇J||_2``."""

    norms: ClassVar[tuple[str, ...]] = ("l2",)

    def __init__(
        self,
        *,
        eps: float = 2.0,
        loss: str = "ce",
        norm: str = "l2",
        early_stop: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(eps=eps, loss=loss, norm=norm, early_stop=early_stop, seed=seed)


def kurakin_steps(eps: float) -> int:
    """Kurakin et al. 2017's iteration count ``min(eps·255 + 4, 1.25·eps·255)``, at least 1."""
    return max(1, math.ceil(min(eps * 255 + 4, 1.25 * eps * 255)))


@attacks.register("bim")
class BIM(PGD):
    """Basic iterative method / I-FGSM (Kurakin et al. 2017): FGSM steps of ``step_size``
    (default 1/255) clipped to the eps-ball, no random start; ``steps`` defaults to
    ``min(eps·255 + 4, 1.25·eps·255)``."""

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")

    def __init__(
        self,
        *,
        eps: float = 0.3,
        steps: int | None = None,
        step_size: float = 1 / 255,
        norm: str = "linf",
        loss: str = "ce",
        early_stop: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            norm=norm,
            eps=eps,
            steps=kurakin_steps(_nonneg("eps", eps)) if steps is None else steps,
            step_size=step_size,
            random_start=False,
            loss=loss,
            early_stop=early_stop,
            seed=seed,
        )


@attacks.register("illc")
class ILLC(BIM):
    """Iterative least-likely class method (Kurakin et al. 2017): BIM targeted at the class the
    model finds least likely on the clean input (``target="least-likely"`` by default)."""

    default_target = "least-likely"


@attacks.register("mi-fgsm")
class MIFGSM(PGD):
    """Momentum iterative FGSM (Dong et al. 2018), built for transfer: ``steps`` (10) steps of
    ``eps / steps`` along ``sign g`` with ``g ← decay·g + ∇ / ||∇||_1`` (decay μ = 1)."""

    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def __init__(
        self,
        *,
        eps: float = 0.3,
        steps: int = 10,
        decay: float = 1.0,
        step_size: float | None = None,
        loss: str = "ce",
        norm: str = "linf",
        early_stop: bool = False,
        seed: int | None = 0,
    ) -> None:
        steps = _positive_int("steps", steps)
        super().__init__(
            norm=norm,
            eps=eps,
            steps=steps,
            step_size=_nonneg("eps", eps) / steps if step_size is None else step_size,
            random_start=False,
            loss=loss,
            early_stop=early_stop,
            seed=seed,
        )
        self.decay = _nonneg("decay", decay)

    def direction(self, grad: Tensor, state: dict[str, Any]) -> Tensor:
        l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))
        g = grad / l1 + (self.decay * state["g"] if "g" in state else 0.0)
        state["g"] = g
        return g.sign()


@attacks.register("rand-fgsm")
class RandFGSM(BudgetAttack):
    """RAND+FGSM (Tramèr et al. 2018): a random step ``x' = x + alpha·sign(N(0, I))``, then an
    FGSM step of ``eps - alpha`` from ``x'``. Defaults: eps 0.3, alpha 0.05 (the paper's MNIST
    setting)."""

    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def __init__(
        self,
        *,
        eps: float = 0.3,
        alpha: float = 0.05,
        loss: str = "ce",
        norm: str = "linf",
        early_stop: bool = False,
        restarts: int = 1,
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, eps=eps, early_stop=early_stop, restarts=restarts, seed=seed)
        self.alpha = _nonneg("alpha", alpha)
        if self.alpha > self.eps:
            raise ValueError(f"alpha must be <= eps; got alpha {alpha}, eps {eps}")
        get_loss(loss)
        self.loss = loss

    def perturb(self, p: Problem, idx: Tensor) -> Tensor:
        x0 = p.x[idx]
        noise = torch.randn(x0.shape, generator=p.generator, device=x0.device, dtype=x0.dtype)
        xr = p.clip(x0 + self.alpha * noise.sign())
        _, grad, _ = p.loss_grad(xr, idx, get_loss(self.loss))
        return xr + (self.eps - self.alpha) * grad.sign()


@attacks.register("noise-fooling")
class NoiseFooling(BIM):
    """Fooling images from noise (Goodfellow et al. 2015; seed deck 003): targeted
    gradient-sign steps that make a Gaussian-noise image classified as a chosen class.

    Call it on noise images from :meth:`noise` with ``y`` = the model's labels for them and a
    ``target``; a missing target is an error. Defaults: eps 0.25, step 1/255, Kurakin steps.
    """

    def __init__(
        self,
        *,
        eps: float = 0.25,
        steps: int | None = None,
        step_size: float = 1 / 255,
        early_stop: bool = True,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            eps=eps, steps=steps, step_size=step_size, early_stop=early_stop, seed=seed
        )

    @staticmethod
    def noise(
        n: int,
        shape: tuple[int, ...],
        *,
        mean: float = 0.5,
        std: float = 0.25,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
    ) -> Tensor:
        """``n`` Gaussian-noise images ``(n, *shape)`` clipped to ``bounds`` (seeded)."""
        gen = torch.Generator().manual_seed(seed)
        x = mean + std * torch.randn((n, *shape), generator=gen)
        return x.clamp(*bounds)

    def _resolve_target(self, p: Problem, target: Any) -> Tensor | None:
        if target is None:
            raise ValueError(
                "noise-fooling is targeted: pass target= (labels, 'random' or 'least-likely')"
            )
        return super()._resolve_target(p, target)
