"""Ensemble adversarial training [``ensemble``] (Tramèr et al., "Ensemble Adversarial Training:
Attacks and Defenses", ICLR 2018).

Each batch's loss is ``alpha·CE(f(x), y) + (1 − alpha)·CE(f(x_adv), y)``, where ``x_adv`` is
crafted on *one* model of ``[current, source_1, ..., source_k]``: the model being trained, or
one of a set of static, pre-trained source models. Decoupling the adversarial examples from the
trained weights is what keeps the model from learning to mask its own gradients (the
"degenerate minimum" of single-step adversarial training); the paper's ``A_adv-ens`` models
trade a little white-box FGSM robustness for much better robustness to transferred attacks.

Defaults are the paper's MNIST setting: ``alpha = 0.5`` (half clean, half adversarial loss),
FGSM with ``eps = 0.3``. ``attack`` may also be ``"rand-fgsm"`` (the paper's RAND+FGSM,
random step ``alpha = 0.05`` passed in ``attack_args``) or ``"pgd"`` (``steps`` and
``attack_args`` such as ``step_size``); whatever the attack, the model is trained on it.

**Rotation, deterministic and resume-exact.** Batch ``b`` of an epoch (counting from 0) uses
model ``b mod (k + 1)`` of ``[current, source_1, ..., source_k]``, so every epoch starts on the
current model and each source gets every (k + 1)-th batch. The count restarts in
:meth:`start_epoch`, which the training loop calls before each epoch's first batch, so a resumed
run replays the same rotation, and under DDP every process uses the same model at each step.
Each batch draws its attack's seed from the global RNG, which the loop seeds per epoch (and per
rank), so random starts differ per batch and still replay exactly on resume.
(The paper's rotation order is not specified beyond "alternating"; this is our choice.)

**Sources** are checkpoint folders (loaded with :func:`advlab.models.load`, frozen, in eval
mode) or in-memory :class:`Classifier` objects (used in eval mode while crafting, their mode and
flags restored afterwards); at the first batch all of them are moved to the training device (in
place, also for in-memory objects) and their input shape, number of classes and bounds are
checked against the trained model.
``config()`` records the folders (``"<in-memory Classifier>"`` for objects).

``craft_mode`` sets how the *current* model's BatchNorm/dropout behave while crafting on it:
``"eval"`` (default), ``"train"`` or ``"keep"`` (see :meth:`advlab.attacks.Attack.__call__`);
sources are always used in eval mode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab import attacks
from advlab.attacks.base import ModelMode, attack_mode
from advlab.defenses.training.recipe import Recipe, recipes
from advlab.models import Classifier, load

IN_MEMORY = "<in-memory Classifier>"
ATTACKS = ("fgsm", "rand-fgsm", "pgd")
CRAFT_MODES = ("eval", "train", "keep")
SourceSpec = str | os.PathLike[str] | Classifier


class StaticModel:
    """A pre-trained, read-only model a recipe queries: an ensemble source or a teacher.

    ``spec`` is a checkpoint folder (loaded now, frozen, eval mode, so a missing or broken
    checkpoint fails at construction) or a :class:`Classifier`. ``what`` names it in errors.
    """

    def __init__(self, spec: SourceSpec, what: str) -> None:
        self.what = what
        if isinstance(spec, Classifier):
            self.model, self.label = spec, IN_MEMORY
        elif isinstance(spec, str | os.PathLike):
            self.label = os.fspath(spec)
            try:
                self.model = load(spec)
            except ValueError as e:  # CheckpointError is a ValueError
                raise ValueError(f"{what} {self.label!r} is not a loadable checkpoint: {e}") from e
            self.model.requires_grad_(False)
        else:
            raise TypeError(
                f"{what} must be a checkpoint folder (str or path) or an advlab Classifier; "
                f"got {type(spec).__name__}"
            )
        self._checked = False

    def ready(self, trained: Classifier, x: Tensor, num_classes: int) -> Classifier:
        """The model on ``x``'s device, checked once against the trained model: one input's
        shape ``x.shape[1:]``, ``num_classes`` and the bounds must match."""
        device = x.device
        if self.model.low.device != device:
            self.model.to(device)
        if self._checked:
            return self.model
        name = f"{self.what} {self.label!r}"
        shape = tuple(x.shape[1:])
        if self.model.input_shape is not None and tuple(self.model.input_shape) != shape:
            raise ValueError(
                f"{name} takes inputs of shape {tuple(self.model.input_shape)}; the trained "
                f"model gets {shape}"
            )
        if self.model.num_classes is None:
            with attack_mode(self.model, "eval"), torch.no_grad():
                self.model.logits(x[:1])
        if self.model.num_classes != num_classes:
            raise ValueError(
                f"{name} has {self.model.num_classes} classes; the trained model has {num_classes}"
            )
        same = self.model.low.shape == trained.low.shape and self.model.high.shape == (
            trained.high.shape
        )
        if not (
            same
            and torch.equal(self.model.low, trained.low.to(device))
            and torch.equal(self.model.high, trained.high.to(device))
        ):
            raise ValueError(
                f"{name} has bounds {self.model.bounds}; the trained model has {trained.bounds} "
                "(adversarial examples must live in the trained model's input space)"
            )
        self._checked = True
        return self.model


def _weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    return float(value)


@recipes.register("ensemble")
class Ensemble(Recipe):
    """Ensemble adversarial training (Tramèr et al. 2018): attacks from current + static models.

    See the module docstring for the rotation and the sources.

    Args:
        sources: static pre-trained models, one or more checkpoint folders or
            :class:`Classifier` objects (required; the paper uses 2-3 on MNIST/ImageNet).
        eps: the attack's Linf budget in pixel units (default 0.3, the paper's MNIST setting).
        alpha: weight of the clean loss, the adversarial loss gets ``1 - alpha`` (default 0.5,
            the paper's equal mix). ``alpha = 1`` skips crafting: plain training.
        attack: ``"fgsm"`` (default, the paper's), ``"rand-fgsm"`` or ``"pgd"``.
        steps: PGD iterations (only with ``attack="pgd"``; default: the attack's, 40).
        attack_args: further keyword arguments of the attack (e.g. ``{"alpha": 0.05}`` for
            rand-fgsm, ``{"step_size": 0.01}`` for pgd); ``eps`` and ``seed`` are set here.
        craft_mode: the current model's mode while crafting on it: ``"eval"`` (default),
            ``"train"`` or ``"keep"``.

    ``validate`` reports ``adv_acc`` (``val_adv_acc`` in the history): accuracy on the
    validation batch under the same attack crafted white-box on the current model.
    """

    name = "ensemble"

    def __init__(
        self,
        *,
        sources: Sequence[SourceSpec] | SourceSpec | None = None,
        eps: float = 0.3,
        alpha: float = 0.5,
        attack: str = "fgsm",
        steps: int | None = None,
        attack_args: dict[str, Any] | None = None,
        craft_mode: str = "eval",
    ) -> None:
        if sources is None or (isinstance(sources, Sequence) and len(sources) == 0):
            raise ValueError(
                "ensemble needs static source models: sources=[checkpoint folders or "
                'Classifiers] (e.g. --set \'recipe_args={sources=["runs/a", "runs/b"]}\'); '
                f"got {sources!r}"
            )
        if isinstance(sources, str | os.PathLike | Classifier):
            sources = [sources]
        self.sources = [StaticModel(s, f"ensemble source {i + 1}") for i, s in enumerate(sources)]
        self.alpha = _weight("alpha", alpha)
        if attack not in ATTACKS:
            raise ValueError(f"attack must be one of {', '.join(ATTACKS)}; got {attack!r}")
        if craft_mode not in CRAFT_MODES:
            raise ValueError(
                f"craft_mode must be one of {', '.join(CRAFT_MODES)}; got {craft_mode!r}"
            )
        if not isinstance(attack_args, dict | None):
            raise TypeError(f"attack_args must be a dict; got {type(attack_args).__name__}")
        extra = dict(attack_args or {})
        clash = sorted({"eps", "seed"} & set(extra))
        if clash:
            raise ValueError(
                f"attack_args may not set {', '.join(clash)}: eps is the recipe's own "
                "hyperparameter and the seed is drawn per batch"
            )
        if steps is not None:
            if attack != "pgd":
                raise ValueError(f"steps applies to attack='pgd' only; attack is {attack!r}")
            extra["steps"] = steps
        self.attack, self.steps = attack, steps
        self.craft_mode = cast(ModelMode, craft_mode)
        self.eps = eps
        self.attack_args = extra
        self._build(0)  # validates eps and attack_args now, with the attack's own messages
        self.eps = float(eps)
        self._batch = 0  # index of the next batch in the current epoch

    def _build(self, seed: int) -> attacks.Attack:
        return attacks.build(self.attack, eps=self.eps, seed=seed, **self.attack_args)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sources": [s.label for s in self.sources],
            "eps": self.eps,
            "alpha": self.alpha,
            "attack": self.attack,
            "steps": self.steps,
            "attack_args": dict(self.attack_args),
            "craft_mode": self.craft_mode,
        }

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.alpha == 1:
            logits = model.logits(x, check=False)
            return F.cross_entropy(logits, y), logits
        batch, self._batch = self._batch, self._batch + 1
        seed = int(torch.randint(0, 2**62, (1,)).item())
        if self.alpha > 0:
            logits = model.logits(x, check=False)  # (N, K)
            clean = F.cross_entropy(logits, y)
        else:
            with torch.no_grad():
                logits = model.logits(x, check=False)  # for the running accuracy only
            clean = logits.new_zeros(())
        # every source is placed and checked at the first batch (cheap afterwards)
        sources = [s.ready(model, x, int(logits.shape[1])) for s in self.sources]
        which = batch % (len(sources) + 1)  # 0: the current model
        atk = self._build(seed)
        if which == 0:
            x_adv = atk.craft(model, x, y, model_mode=self.craft_mode)
        else:
            x_adv = atk.craft(sources[which - 1], x, y, model_mode="eval")
        adv = F.cross_entropy(model.logits(x_adv, check=False), y)
        return self.alpha * clean + (1 - self.alpha) * adv, logits

    def start_epoch(self, epoch: int) -> None:
        self._batch = 0

    def validate(self, model: Classifier, x: Tensor, y: Tensor) -> dict[str, float]:
        res = self._build(0)(model, x, y, model_mode="eval")
        return {"adv_acc": float((~res.success).float().mean())}
