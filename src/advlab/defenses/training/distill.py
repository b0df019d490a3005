"""Defensive distillation (Papernot, McDaniel, Wu, Jha, Swami, "Distillation as a Defense to
Adversarial Perturbations against Deep Neural Networks", IEEE S&P 2016).

Two phases with the same architecture and training loop:

1. [``softmax-t``] the *teacher* is trained with its softmax at temperature ``T``: the loss is
   ``CE(softmax(z / T), y)`` on the logits ``z``.
2. [``distill``] the *student* is trained on the teacher's soft labels at the same ``T``:
   ``−Σ_k softmax(z_teacher / T)_k · log_softmax(z_student / T)_k`` (soft cross-entropy; the
   paper uses the soft labels alone, without Hinton et al.'s hard-label term or ``T²`` factor).

**Deployment at T = 1: the student's logits are NOT rescaled** — exactly as in the paper. The
distilled model is an ordinary :class:`Classifier` returning its raw logits ``z``, which were
trained to be meaningful after division by ``T``, so they are about ``T`` times larger than a
normally trained model's. At ``T = 1`` the softmax saturates and the gradient of the
cross-entropy with respect to the input shrinks by orders of magnitude (in float32 it is often
exactly zero). That is why FGSM and the softmax-based JSMA stop working, and also why this is
gradient masking rather than robustness: attacks on the logits (Carlini & Wagner 2017, e.g.
``cw-l2``) still succeed on ~100% of inputs. Evaluate distilled models with logit-margin
attacks.

Defaults: ``T = 100``, the paper's MNIST temperature. Also
:func:`defensive_distillation`, which runs both phases.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.attacks.base import attack_mode
from advlab.data import TensorData
from advlab.defenses.training.config import TrainConfig
from advlab.defenses.training.ensemble import SourceSpec, StaticModel
from advlab.defenses.training.loop import train
from advlab.defenses.training.recipe import Recipe, recipes
from advlab.models import Classifier

PAPER_TEMPERATURE = 100.0


def _temperature(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"temperature must be a finite number > 0; got {value!r}")
    if value <= 0:
        raise ValueError(f"temperature must be > 0; got {value!r}")
    return float(value)


@recipes.register("softmax-t")
class SoftmaxT(Recipe):
    """Cross-entropy at softmax temperature T, ``CE(z / T, y)``: distillation's teacher phase.

    The teacher phase of defensive distillation (Papernot et al. 2016; see :mod:`.distill`).

    Args:
        temperature: ``T > 0`` (default 100, the paper's MNIST value); ``T = 1`` is plain
            training. The model keeps returning raw logits ``z`` (no rescaling).
    """

    name = "softmax-t"

    def __init__(self, *, temperature: float = PAPER_TEMPERATURE) -> None:
        self.temperature = _temperature(temperature)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "temperature": self.temperature}

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = model.logits(x, check=False)  # (N, K)
        return F.cross_entropy(logits.float() / self.temperature, y), logits


@recipes.register("distill")
class Distill(Recipe):
    """Defensive distillation (Papernot et al. 2016), student: teacher's soft labels at T.

    Soft cross-entropy between ``softmax(teacher(x) / T)`` and ``log_softmax(student(x) / T)``.

    The trained student is deployed at ``T = 1``: its logits are *not* rescaled (as in the
    paper), which masks gradients; evaluate it with logit-space attacks such as ``cw-l2``.

    Args:
        teacher: the teacher, trained at the same temperature (recipe ``softmax-t``): a
            checkpoint folder (loaded now with :func:`advlab.models.load`, frozen) or a
            :class:`Classifier` (used in eval mode, its mode and flags restored). It is moved
            to the training device at the first batch and checked against the student (input
            shape, classes, bounds). ``config()`` records the folder, or
            ``"<in-memory Classifier>"``.
        temperature: ``T > 0`` (default 100, the paper's MNIST value).
    """

    name = "distill"

    def __init__(
        self, *, teacher: SourceSpec | None = None, temperature: float = PAPER_TEMPERATURE
    ) -> None:
        self.temperature = _temperature(temperature)
        if teacher is None:
            raise ValueError(
                "distill needs teacher= (a checkpoint folder or Classifier trained with the "
                "softmax-t recipe at the same temperature)"
            )
        self.teacher = StaticModel(teacher, "distillation teacher")

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "teacher": self.teacher.label, "temperature": self.temperature}

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = model.logits(x, check=False)  # (N, K)
        teacher = self.teacher.ready(model, x, int(logits.shape[1]))
        with attack_mode(teacher, "eval"), torch.no_grad():
            soft = (teacher.logits(x, check=False).float() / self.temperature).softmax(1)
        log_p = (logits.float() / self.temperature).log_softmax(1)  # (N, K)
        return -(soft * log_p).sum(1).mean(), logits


def defensive_distillation(
    model_factory: Callable[[], Classifier],
    train_data: TensorData | tuple[Tensor, Tensor],
    val_data: TensorData | tuple[Tensor, Tensor] | None,
    config: TrainConfig | None,
    temperature: float = PAPER_TEMPERATURE,
    out: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    dataset: str | None = None,
) -> tuple[Classifier, Classifier]:
    """Run both phases of defensive distillation with :func:`train`; returns
    ``(teacher, student)``, both in eval mode. Deploy the student as is (T = 1, no rescaling).

    ``model_factory()`` builds a fresh, untrained model (called twice, with the global RNG
    seeded to ``config.seed`` for the teacher and ``config.seed + 1`` for the student, inside
    ``torch.random.fork_rng``, so initial weights are reproducible and the caller's RNG is left
    alone). The teacher trains with ``softmax-t``, the student with ``distill``, both with
    ``config``. With ``out``, the runs are checkpointed in ``out/teacher`` and ``out/student``
    (``resume=True`` continues them), and the student's recipe records the teacher's folder
    when the teacher is a zoo preset.
    """
    cfg = config or TrainConfig()
    t = _temperature(temperature)
    root = Path(out) if out is not None else None
    common: dict[str, Any] = {"resume": resume and root is not None, "dataset": dataset}

    def fresh(seed: int, what: str) -> Classifier:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_factory()
        if not isinstance(model, Classifier):
            raise TypeError(
                f"model_factory must return an advlab Classifier ({what}); "
                f"got {type(model).__name__}"
            )
        return model

    teacher = fresh(cfg.seed, "teacher")
    t_out = root / "teacher" if root is not None else None
    train(teacher, train_data, val_data, cfg, recipe=SoftmaxT(temperature=t), out=t_out, **common)
    student = fresh(cfg.seed + 1, "student")
    source: SourceSpec = t_out if t_out is not None and teacher.preset else teacher
    s_out = root / "student" if root is not None else None
    recipe = Distill(teacher=source, temperature=t)
    train(student, train_data, val_data, cfg, recipe=recipe, out=s_out, **common)
    return teacher, student
