"""Attack base classes (DESIGN §3): validation, mode handling, targets, projection, restarts,
success and counting live here; an algorithm writes one method.

* :class:`BudgetAttack` (fixed ``eps``): subclasses implement ``perturb(p, idx) -> x_adv``.
* :class:`MinNormAttack` (smallest perturbation): subclasses implement
  ``minimize(p, idx) -> x_adv``; the result's ``accuracy_at(eps)`` gives the whole curve.

Invariants enforced here for every attack: ``x_adv`` inside the bounds (and the eps-ball for
budget attacks); inputs never mutated; the model's train/eval mode and parameters'
``requires_grad`` flags restored even when the attack raises; no gradients left in parameters;
randomness only from a private generator seeded by ``seed`` (same seed → same result).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from advlab.attacks.losses import margin
from advlab.attacks.norms import LpNorm, get_norm
from advlab.attacks.problem import Problem
from advlab.attacks.result import AttackResult
from advlab.models.classifier import Classifier
from advlab.utils.modes import restored_modes

TargetSpec = Tensor | Literal["least-likely", "random"] | None
ModelMode = Literal["eval", "train", "keep"]


@contextmanager
def attack_mode(model: Classifier, mode: ModelMode = "eval") -> Iterator[None]:
    """Run the body with the model in ``mode`` and its parameters frozen; restore both after."""
    if mode not in ("eval", "train", "keep"):
        raise ValueError(f"model_mode must be 'eval', 'train' or 'keep'; got {mode!r}")
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    with restored_modes(model):
        try:
            if mode != "keep":
                model.train(mode == "train")
            for p in params:
                p.requires_grad_(False)
            yield
        finally:
            for p, f in zip(params, flags, strict=True):
                p.requires_grad_(f)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def _nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0; got {value!r}")
    return float(value)


class Attack(ABC):
    """Common call protocol: ``attack(model, x, y, target=None) -> AttackResult``.

    Class attributes a subclass sets: ``name`` (registry name), ``norms`` (supported norms),
    ``supports_targeted``, ``default_target`` (e.g. ``"least-likely"`` for ILLC),
    ``min_classes``.
    """

    name: ClassVar[str] = "attack"
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1", "l0")
    supports_targeted: ClassVar[bool] = True
    default_target: ClassVar[str | None] = None
    min_classes: ClassVar[int] = 2

    def __init__(self, *, norm: str = "linf", seed: int | None = 0) -> None:
        if norm not in self.norms:
            raise ValueError(f"{self.name} supports norm {', '.join(self.norms)}; got {norm!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None; got {seed!r}")
        self.norm = norm
        self.seed = seed

    def budget(self) -> float | None:
        """The fixed perturbation budget (budget attacks), else ``None``."""
        return None

    @property
    def lp(self) -> LpNorm:
        return get_norm(self.norm)

    def config(self) -> dict[str, Any]:
        """Hyperparameters (public attributes), as shown by ``repr`` and saved in reports."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        target: TargetSpec = None,
        model_mode: ModelMode = "eval",
    ) -> AttackResult:
        """Attack ``model`` on ``x (N, ...)`` (pixel units, inside bounds) with labels ``y (N,)``.

        ``target``: ``None`` (untargeted, unless the attack has a default target), a label
        tensor ``(N,)``, ``"least-likely"`` or ``"random"``. ``model_mode``: run the model in
        ``"eval"`` (default), ``"train"`` (e.g. adversarial training that wants dropout while
        crafting; BatchNorm statistics then update) or ``"keep"`` its current mode.
        """
        with self._problem(model, x, y, target, model_mode) as p:
            x_adv, logits = self._attack(p)
        return self._result(p, x_adv, logits)

    def craft(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        target: TargetSpec = None,
        model_mode: ModelMode = "eval",
    ) -> Tensor:
        """Only ``x_adv (N, ...)``, detached: the tensor ``self(model, x, y, ...).x_adv`` holds,
        same validation, mode handling and randomness. For callers that need nothing else, such
        as adversarial training; :class:`BudgetAttack` then skips the forward pass that only
        scores ``x_adv`` for the result."""
        return self(model, x, y, target=target, model_mode=model_mode).x_adv

    @contextmanager
    def _problem(
        self, model: Classifier, x: Tensor, y: Tensor, target: TargetSpec, model_mode: ModelMode
    ) -> Iterator[Problem]:
        """Validate a call and yield its :class:`Problem`, with the model in ``model_mode``, its
        parameters frozen and autograd off inside the block (all restored after)."""
        y = self._check(model, x, y)
        seed = self.seed if self.seed is not None else secrets.randbits(62)
        gen = torch.Generator(device=x.device).manual_seed(seed)
        with attack_mode(model, model_mode):
            p = Problem(model, x, y, None, gen)
            p.target = self._resolve_target(p, target)
            with torch.no_grad():
                yield p

    def _check(self, model: Classifier, x: Tensor, y: Tensor) -> Tensor:
        if not isinstance(model, Classifier):
            raise TypeError(
                f"model must be an advlab Classifier; got {type(model).__name__} "
                "(wrap it: advlab.models.Classifier(net, bounds=..., mean=..., std=...))"
            )
        model.check_input(x)
        if x.shape[0] == 0:
            raise ValueError("x is an empty batch")
        if model.num_classes is None:
            with torch.no_grad():
                model.logits(x[:1])
        k = int(model.num_classes or 0)
        if k < self.min_classes:
            raise ValueError(
                f"{self.name} needs a model with >= {self.min_classes} classes; this one has {k}"
            )
        return self._check_labels(y, x, k, "y")

    def _check_labels(self, y: Any, x: Tensor, k: int, what: str) -> Tensor:
        if not isinstance(y, Tensor):
            raise TypeError(f"{what} must be a tensor of class indices; got {type(y).__name__}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"{what} must hold integer class indices; got dtype {y.dtype}")
        if y.shape != (x.shape[0],):
            raise ValueError(
                f"{what} must have shape ({x.shape[0]},) to match x; got {tuple(y.shape)}"
            )
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise ValueError(
                f"{what} must be in [0, {k}); got values in [{int(y.min())}, {int(y.max())}]"
            )
        return y.to(device=x.device, dtype=torch.long)

    def _resolve_target(self, p: Problem, target: TargetSpec) -> Tensor | None:
        spec = target if target is not None else self.default_target
        if spec is None:
            return None
        if not self.supports_targeted:
            raise ValueError(f"{self.name} is untargeted; do not pass target=")
        if isinstance(spec, str):
            if spec == "least-likely":
                logits = p.logits(p.x, p.all).float()  # least likely among classes != y
                t = logits.scatter(1, p.y.view(-1, 1), float("inf")).argmin(1)
            elif spec == "random":
                t = p.random_label(p.y)
            else:
                raise ValueError(
                    f"target must be a label tensor, 'least-likely' or 'random'; got {spec!r}"
                )
        else:
            t = self._check_labels(spec, p.x, p.num_classes, "target")
        same = t == p.y
        if bool(same.any()):
            raise ValueError(
                f"target equals the true label for {int(same.sum())} sample(s) (first at index "
                f"{int(same.nonzero()[0])}); a targeted attack needs a different class"
            )
        return t

    @abstractmethod
    def _attack(self, p: Problem) -> tuple[Tensor, Tensor | None]:
        """Return ``x_adv (N, ...)`` for all samples of ``p``, inside the bounds, and its logits
        ``(N, K)`` when they are already known (else ``None``: one more forward pass)."""

    def _result(self, p: Problem, x_adv: Tensor, logits: Tensor | None) -> AttackResult:
        x_adv = x_adv.to(p.x.dtype)
        if logits is None:
            logits = p.logits(x_adv, p.all)
        return AttackResult(
            x_adv=x_adv.detach(),
            success=p.is_adv(logits, p.all),
            norms=self.lp.size(x_adv - p.x),
            logits_adv=logits,
            queries=p.queries,
            gradients=p.gradients,
            y=p.y,
            target=p.target,
            norm=self.norm,
            eps=self.budget(),
            attack=self.name,
        )


class BudgetAttack(Attack):
    """A fixed-budget attack: find ``x_adv`` with ``||x_adv - x|| <= eps`` inside the bounds.

    Args:
        norm: threat norm; eps: budget in pixel units (L0: number of features).
        early_stop: skip inputs that are already adversarial and stop spending steps on an input
            as soon as it is adversarial, keeping that first adversarial point. Off: the textbook
            algorithm on every input.
        restarts: independent runs (for attacks with a random start); the per-sample worst case
            (a success, else the highest CW margin) is kept, and later runs only attack inputs
            that are not yet adversarial.
        seed: seeds the attack's private generator.
    """

    def __init__(
        self,
        *,
        norm: str = "linf",
        eps: float = 0.3,
        early_stop: bool = False,
        restarts: int = 1,
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, seed=seed)
        self.eps = _nonneg("eps", eps)
        self.early_stop = bool(early_stop)
        self.restarts = _positive_int("restarts", restarts)

    @abstractmethod
    def perturb(self, p: Problem, idx: Tensor) -> Tensor:
        """``x_adv`` for the samples ``idx`` (``(len(idx), ...)``); the base class projects it."""

    def project(self, p: Problem, xa: Tensor, idx: Tensor) -> Tensor:
        """Closest point of the eps-ball around ``x[idx]``, then clamped into the bounds."""
        x0 = p.rows(p.x, idx)
        return p.clip(x0 + self.lp.project(xa - x0, self.eps))

    def budget(self) -> float | None:
        return self.eps

    def linf_box(self, p: Problem, idx: Tensor) -> tuple[Tensor, Tensor]:
        """``(lo, hi)``, each ``(len(idx), ...)``: the Linf ball intersected with the bounds, a
        box, so that projecting onto both is one ``torch.clamp``."""
        x0 = p.rows(p.x, idx)
        return torch.maximum(x0 - self.eps, p.low), torch.minimum(x0 + self.eps, p.high)

    def craft(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        target: TargetSpec = None,
        model_mode: ModelMode = "eval",
    ) -> Tensor:
        """``x_adv (N, ...)`` only (see :meth:`Attack.craft`). With one run and no early stop,
        the run's projected end point is returned without the forward pass that scores it
        (success, margin, logits) for the result: one forward pass fewer per call. The points
        equal ``self(...).x_adv``, except where the scoring forward would give NaN logits
        (``__call__`` may then keep the clean input)."""
        if self.early_stop or self.restarts > 1:  # these runs need the scores themselves
            return super().craft(model, x, y, target=target, model_mode=model_mode)
        with self._problem(model, x, y, target, model_mode) as p:
            x_adv = p.x.clone() if self.eps == 0 else self._run(p, p.all)
        return x_adv.to(p.x.dtype).detach()

    def _run(self, p: Problem, idx: Tensor) -> Tensor:
        """One run on the samples ``idx``: ``perturb``, then projected into the eps-ball and
        the bounds ``(len(idx), ...)``."""
        return self.project(p, self.perturb(p, idx), idx)

    def _attack(self, p: Problem) -> tuple[Tensor, Tensor | None]:
        best = p.x.clone()
        done = torch.zeros(p.n, dtype=torch.bool, device=p.x.device)
        score = torch.full((p.n,), float("-inf"), device=p.x.device)
        best_logits: Tensor | None = None
        filled = torch.zeros_like(done)
        if self.early_stop:
            best_logits = p.logits(p.x, p.all)
            done = p.is_adv(best_logits, p.all)
            filled = done.clone()  # its own tensor: filling a row must not mark it done
        if self.eps == 0:
            return best, None
        for run in range(self.restarts):
            idx = (~done).nonzero().squeeze(1) if (self.early_stop or run > 0) else p.all
            if idx.numel() == 0:
                break
            xa = self._run(p, idx)
            logits = p.logits(xa, idx)
            succ = p.is_adv(logits, idx)
            y, t = p.labels(idx)
            s = margin(logits.float(), y, t)
            better = succ | (s > score[idx])
            keep = idx[better]
            best[keep] = xa[better]
            if best_logits is None:
                best_logits = torch.empty(
                    (p.n, logits.shape[1]), dtype=logits.dtype, device=logits.device
                )
            best_logits[keep] = logits[better]
            filled[keep] = True
            score[keep] = s[better]
            done[idx] = done[idx] | succ
        # the scoring forward already gave the logits of every returned point
        return best, (best_logits if bool(filled.all()) else None)


class MinNormAttack(Attack):
    """A minimum-norm attack: find the smallest ``x_adv - x`` (in ``norm``) that is adversarial.

    Inputs that are already adversarial are returned unchanged (norm 0, success). The result's
    ``accuracy_at(eps)`` / ``curve(eps_list)`` give accuracy against perturbations up to eps.
    """

    @abstractmethod
    def minimize(self, p: Problem, idx: Tensor) -> Tensor:
        """``x_adv`` for the samples ``idx`` (``(len(idx), ...)``), inside the bounds."""

    def _attack(self, p: Problem) -> tuple[Tensor, Tensor | None]:
        best = p.x.clone()
        adv0 = p.is_adv(p.logits(p.x, p.all), p.all)
        idx = (~adv0).nonzero().squeeze(1)
        if idx.numel():
            best[idx] = p.clip(self.minimize(p, idx))
        return best, None
