"""Adversarial-training recipes from Goodfellow et al. 2015 and Madry et al. 2018.

* ``fgsm-mix`` (:class:`FGSMMix`): α·J(x) + (1 − α)·J(x + eps·sign ∇x J), FGSM regenerated from
  the current weights every batch.
* ``noise`` (:class:`Noise`): the paper's controls, the same mix with random ±eps sign noise or
  U(−eps, eps) noise in place of the FGSM perturbation.
* ``pgd`` (:class:`PGDTraining`): Madry et al.'s k-step PGD adversarial training.

Also the helpers the other adversarial recipes (``fast``, ``trades``) share: hyperparameter
checks, per-batch attack seeds, the mixed clean/adversarial loss, and the robust validation
metrics.

Cost per batch. Each recipe runs exactly the passes of its loss, like a hand-written loop: the
attack's own steps (the training attacks are called with :meth:`advlab.attacks.Attack.craft`,
which skips the forward pass that only scores ``x_adv`` for an ``AttackResult``), then one
train-mode forward per loss term and one backward. Where the loss has no clean term
(``alpha = 0``, and ``fast``), the running training accuracy (``train_acc``) is measured on the
adversarial examples the loss trains on, as in the papers' reference code; clean accuracy is
``val_acc``.

Randomness. Every random draw of these recipes (noise, PGD random starts, attack seeds) comes
from torch's *global* RNG. :func:`~advlab.defenses.training.train` seeds it from
``TrainConfig.seed`` and the epoch number at the start of each epoch, inside
``torch.random.fork_rng``, so the draws are reproducible, a resumed run replays them exactly,
and the caller's RNG state is untouched; the recipes therefore take no ``seed`` of their own.
(Called outside ``train``, ``loss`` advances the caller's global RNG.) Validation attacks use
fixed private seeds, so validation metrics are comparable between epochs.

Crafting mode. ``craft_mode`` says how BatchNorm/dropout behave while adversarial examples are
crafted: ``"eval"`` (default: running BatchNorm statistics, no dropout; no RNG consumed),
``"train"`` (batch statistics and dropout, BatchNorm running statistics then also update from
the crafting passes), or ``"keep"`` (the mode the loop left the model in: train). Parameter
gradients from crafting never reach the update (the attacks freeze the parameters and the loop
zeroes gradients after ``loss``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.attacks import FGSM, PGD, attack_mode
from advlab.defenses.training.recipe import Recipe, recipes
from advlab.models.classifier import Classifier

CraftMode = Literal["eval", "train", "keep"]
NoiseKind = Literal["sign", "uniform"]
VAL_SEED = 0  # private seed of the validation attacks' random starts


# ----------------------------------------------------------------------------- shared helpers
def check_number(name: str, value: Any, low: float = 0.0, high: float | None = None) -> float:
    """``value`` as a float in ``[low, high]`` (``high=None``: no upper limit), else a
    ``ValueError``/``TypeError`` saying what was expected and what came."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number; got {type(value).__name__} {value!r}")
    ok = value >= low and (high is None or value <= high)
    if not ok:  # also catches NaN
        expected = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    return float(value)


def check_steps(name: str, value: Any) -> int:
    """``value`` as an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= 1; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)


def check_craft_mode(value: Any) -> CraftMode:
    mode = check_choice("craft_mode", value, ("eval", "train", "keep"))
    return "train" if mode == "train" else "keep" if mode == "keep" else "eval"


def craft_seed() -> int:
    """A fresh attack seed drawn from the global RNG (see the module docstring)."""
    return int(torch.randint(0, 2**62, (1,)))


def clean_logits(model: Classifier, x: Tensor) -> Tensor:
    """Logits ``(N, K)`` on clean ``x`` in eval mode without a graph, for the validation
    metrics (no BatchNorm statistics updated, no RNG consumed)."""
    with torch.no_grad(), attack_mode(model, "eval"):
        return model.logits(x, check=False)


def accuracy_under(
    model: Classifier, attack: PGD, x: Tensor, y: Tensor, clean: Tensor | None = None
) -> float:
    """Fraction of ``x (N, ...)`` classified as ``y`` both clean and after ``attack`` (eval
    mode): clean errors count as failures, as in the papers' tables. ``clean``: the ``(N,)``
    bool mask of clean hits when already known."""
    res = attack(model, x, y, model_mode="eval")
    if clean is None:
        clean = clean_logits(model, x).argmax(1) == y
    return float((clean & ~res.success).float().mean())


def fgsm_error(model: Classifier, eps: float, x: Tensor, y: Tensor) -> float:
    """FGSM error rate at ``eps`` on ``x (N, ...)`` (clean errors count as errors)."""
    return 1.0 - accuracy_under(model, FGSM(eps=eps), x, y)


def plain(model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The ``standard`` recipe's loss: cross-entropy on clean ``x`` and its logits."""
    logits = model.logits(x, check=False)
    return F.cross_entropy(logits, y), logits


def mixed_loss(
    model: Classifier, x: Tensor, y: Tensor, x_adv: Tensor, alpha: float
) -> tuple[Tensor, Tensor]:
    """``α·CE(f(x), y) + (1 − α)·CE(f(x_adv), y)`` for ``x, x_adv (N, ...)`` and the logits
    ``(N, K)`` of the running training accuracy: clean ``x``'s when ``α > 0``, else
    ``x_adv``'s. A term with weight 0 costs no forward pass; the clean pass runs first."""
    if alpha == 0.0:
        logits_adv = model.logits(x_adv, check=False)
        return F.cross_entropy(logits_adv, y), logits_adv
    logits = model.logits(x, check=False)
    clean = F.cross_entropy(logits, y)
    if alpha == 1.0:
        return clean, logits
    adv = F.cross_entropy(model.logits(x_adv, check=False), y)
    return alpha * clean + (1.0 - alpha) * adv, logits


class RobustValidation(Recipe):
    """Base for recipes validated by white-box accuracy at their own ``eps``: ``validate``
    reports ``pgd_acc`` (PGD with ``val_steps`` steps of ``2.5·eps/val_steps``, random start,
    fixed seed) and ``fgsm_acc`` on each validation batch. The loop prefixes them ``val_``, so
    ``TrainConfig(monitor="val_pgd_acc")`` keeps the most robust epoch."""

    eps: float
    val_steps: int

    def validate(self, model: Classifier, x: Tensor, y: Tensor) -> dict[str, float]:
        pgd = PGD(eps=self.eps, steps=self.val_steps, step_size=None, seed=VAL_SEED)
        clean = clean_logits(model, x).argmax(1) == y  # (N,)
        return {
            "pgd_acc": accuracy_under(model, pgd, x, y, clean),
            "fgsm_acc": accuracy_under(model, FGSM(eps=self.eps), x, y, clean),
        }


# ---------------------------------------------------------------------------------- recipes
@recipes.register("fgsm-mix")
class FGSMMix(Recipe):
    """FGSM adversarial training (Goodfellow et al. 2015): α·J(x) + (1 − α)·J(x + eps·sign ∇J).

    Goodfellow, Shlens & Szegedy 2015, "Explaining and harnessing adversarial examples", eq. 6:
    loss ``α·J(θ, x, y) + (1 − α)·J(θ, x + eps·sign ∇x J, y)``.

    The FGSM examples (advlab ``fgsm``, clipped to the model's bounds; the paper does not clip)
    are crafted every batch from the current weights; the clean and adversarial terms are two
    forward passes. ``α = 1`` is plain training exactly: nothing is crafted; ``α = 0`` trains
    on the FGSM examples alone (one forward pass; ``train_acc`` is then theirs).

    Args:
        eps: FGSM step in pixel units; default 0.25, the paper's MNIST value.
        alpha: weight of the clean term, in [0, 1]; default 0.5, the paper's.
        craft_mode: model mode while crafting (module docstring); default ``"eval"``. The paper's
            maxout nets used dropout during training; ``"train"`` crafts with dropout on.

    ``validate`` reports ``adv_err``, the FGSM error at ``eps`` on the validation set; the
    paper's tip of early stopping on the *adversarial* validation error is
    ``TrainConfig(monitor="val_adv_err", monitor_mode="min", patience=...)``.
    """

    name = "fgsm-mix"

    def __init__(
        self, *, eps: float = 0.25, alpha: float = 0.5, craft_mode: CraftMode = "eval"
    ) -> None:
        self.eps = check_number("eps", eps)
        self.alpha = check_number("alpha", alpha, 0.0, 1.0)
        self.craft_mode = check_craft_mode(craft_mode)

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.alpha == 1.0:  # craft nothing, so plain training is reproduced bit for bit
            return plain(model, x, y)
        x_adv = FGSM(eps=self.eps).craft(model, x, y, model_mode=self.craft_mode)
        return mixed_loss(model, x, y, x_adv, self.alpha)

    def validate(self, model: Classifier, x: Tensor, y: Tensor) -> dict[str, float]:
        return {"adv_err": fgsm_error(model, self.eps, x, y)}

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "eps": self.eps,
            "alpha": self.alpha,
            "craft_mode": self.craft_mode,
        }


@recipes.register("noise")
class Noise(Recipe):
    """Goodfellow et al. 2015's control: the fgsm-mix loss with random ±eps or U(−eps, eps) noise.

    The control experiment of Goodfellow, Shlens & Szegedy 2015 (§6): the ``fgsm-mix`` loss with
    the FGSM perturbation replaced by random noise, ``α·J(θ, x, y) + (1 − α)·J(θ, clip(x + δ), y)``.

    ``kind="sign"``: ``δ = eps·sign(N(0, I))`` (±eps per pixel); ``kind="uniform"``:
    ``δ ~ U(−eps, eps)`` per pixel. ``x + δ`` is clipped to the model's bounds. The paper reports
    these controls barely help: 86.2% / 90.4% FGSM error vs 17.9% for adversarial training.

    Args:
        eps: noise size, pixel units; default 0.25 (the paper's MNIST value).
        alpha: weight of the clean term in [0, 1]; default 0.5 (as in ``fgsm-mix``).
        kind: ``"sign"`` (default) or ``"uniform"``.

    Noise comes from the global RNG, which the training loop seeds per epoch (module
    docstring), so runs are reproducible and resume exactly. ``validate`` reports ``adv_err``
    (FGSM error at ``eps``) like ``fgsm-mix``.
    """

    name = "noise"

    def __init__(self, *, eps: float = 0.25, alpha: float = 0.5, kind: NoiseKind = "sign") -> None:
        self.eps = check_number("eps", eps)
        self.alpha = check_number("alpha", alpha, 0.0, 1.0)
        k = check_choice("kind", kind, ("sign", "uniform"))
        self.kind: NoiseKind = "sign" if k == "sign" else "uniform"

    def perturb(self, model: Classifier, x: Tensor) -> Tensor:
        """``clip(x + δ)`` ``(N, ...)`` with fresh noise ``δ`` of the configured kind."""
        if self.kind == "sign":
            delta = torch.randn(x.shape, device=x.device, dtype=x.dtype).sign_()
        else:
            delta = torch.rand(x.shape, device=x.device, dtype=x.dtype).mul_(2).sub_(1)
        noisy = x + self.eps * delta
        low, high = model.low.to(x), model.high.to(x)
        return torch.maximum(torch.minimum(noisy, high), low)

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.alpha == 1.0:  # no noise drawn: plain training exactly
            return plain(model, x, y)
        return mixed_loss(model, x, y, self.perturb(model, x), self.alpha)

    def validate(self, model: Classifier, x: Tensor, y: Tensor) -> dict[str, float]:
        return {"adv_err": fgsm_error(model, self.eps, x, y)}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "eps": self.eps, "alpha": self.alpha, "kind": self.kind}


@recipes.register("pgd")
class PGDTraining(RobustValidation):
    """PGD adversarial training (Madry et al. 2018): cross-entropy on k-step Linf PGD examples.

    Madry, Makelov, Schmidt, Tsipras & Vladu 2018, "Towards deep learning models resistant to
    adversarial attacks": minimize the cross-entropy on Linf-PGD examples (random start) crafted
    every batch from the current weights (advlab ``pgd``).

    Args:
        eps: Linf budget in pixel units; default 0.3 (Madry MNIST).
        steps: PGD iterations; default 40 (Madry MNIST).
        step_size: per-step size; default 0.01 (Madry MNIST).
        random_start: start from a uniform point of the eps-ball; default True (Madry).
        alpha: weight of an extra clean term, ``α·J(x) + (1 − α)·J(x_adv)`` in [0, 1];
            default 0, Madry's loss on adversarial examples only (α = 1: plain training,
            nothing crafted).
        craft_mode: model mode while crafting (module docstring); default ``"eval"``.
        val_steps: steps of the validation PGD (``pgd_acc``); default 10.
        eps_warmup: epochs over which the training budget ramps up (default 0: ``eps`` from
            the first batch, as Madry et al.): epoch ``e < eps_warmup`` (0-based) crafts at
            ``eps·(e + 1)/(eps_warmup + 1)``, later epochs at ``eps``; the step size stays
            ``step_size``; validation is always at ``eps``. Not in the paper: a small network
            trained at MNIST eps 0.3 from the first batch can stay at chance (measured:
            ``wong-mnist``, PGD-40, Adam with a cyclic lr, 11% after an epoch); a ramp is the
            usual remedy (e.g. Gowal et al. 2018's interval bound propagation schedule).

    Madry et al. trained their MNIST net with Adam, lr 1e-4, batch 50, 100k iterations
    (about 83 epochs); the loop's ``TrainConfig`` sets those. A batch costs ``steps`` forward
    and backward passes to craft plus the update's (one forward with ``alpha = 0``, when
    ``train_acc`` is the accuracy on the PGD examples, as Madry et al. report it; two with a
    clean term). Random starts are seeded per batch from the global RNG (module docstring).
    ``validate`` reports ``pgd_acc`` and ``fgsm_acc`` at ``eps``.
    """

    name = "pgd"

    def __init__(
        self,
        *,
        eps: float = 0.3,
        steps: int = 40,
        step_size: float = 0.01,
        random_start: bool = True,
        alpha: float = 0.0,
        craft_mode: CraftMode = "eval",
        val_steps: int = 10,
        eps_warmup: int = 0,
    ) -> None:
        self.eps = check_number("eps", eps)
        self.steps = check_steps("steps", steps)
        self.step_size = check_number("step_size", step_size)
        if isinstance(eps_warmup, bool) or not isinstance(eps_warmup, int) or eps_warmup < 0:
            raise ValueError(f"eps_warmup must be an integer >= 0 (epochs); got {eps_warmup!r}")
        self.eps_warmup = eps_warmup
        self.train_eps = self.eps if eps_warmup == 0 else self.eps / (eps_warmup + 1)
        if not isinstance(random_start, bool):
            raise TypeError(f"random_start must be True or False; got {random_start!r}")
        self.random_start = random_start
        self.alpha = check_number("alpha", alpha, 0.0, 1.0)
        self.craft_mode = check_craft_mode(craft_mode)
        self.val_steps = check_steps("val_steps", val_steps)

    def start_epoch(self, epoch: int) -> None:
        """Set this epoch's training budget (``eps_warmup``)."""
        self.train_eps = self.eps * min(1.0, (epoch + 1) / (self.eps_warmup + 1))

    def attack(self) -> PGD:
        """The training attack for one batch, with a fresh seed for its random start."""
        return PGD(
            eps=self.train_eps,
            steps=self.steps,
            step_size=self.step_size,
            random_start=self.random_start,
            seed=craft_seed(),
        )

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.alpha == 1.0:  # plain training, nothing crafted
            return plain(model, x, y)
        x_adv = self.attack().craft(model, x, y, model_mode=self.craft_mode)
        return mixed_loss(model, x, y, x_adv, self.alpha)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "eps": self.eps,
            "steps": self.steps,
            "step_size": self.step_size,
            "random_start": self.random_start,
            "alpha": self.alpha,
            "craft_mode": self.craft_mode,
            "val_steps": self.val_steps,
            "eps_warmup": self.eps_warmup,
        }
