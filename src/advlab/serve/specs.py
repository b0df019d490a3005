"""Budgets and specs of the web demo's zoo: how much each model trains (:class:`Budget`,
:class:`DefenseBudget`), how its curve is limited (:class:`CurveLimits`), what a training
function receives (:class:`TrainJob`) and what a zoo entry is (:class:`Spec`). See
:mod:`advlab.serve.models` for the zoo itself."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from advlab import models as almodels
from advlab.data import TensorData, train_val_split
from advlab.defenses.training import TrainConfig
from advlab.models import Classifier

ARCH = "lenet"


@dataclass(frozen=True)
class Budget:
    """Training budget of the zoo for one dataset (images are taken from the front of the
    training split; ``None`` = all).

    Attributes:
        images, epochs: plain training.
        fast_images, fast_epochs, fast_eps: fast adversarial training.
        pgd_images, pgd_epochs, pgd_eps, pgd_steps: PGD adversarial training
            (step 2.5·eps/steps, random start).
        distill_images, distill_epochs, temperature: defensive distillation (both phases).
        val_images: validation images for the adversarially trained models (their recipes
            validate PGD/FGSM accuracy; fast-at uses it for its catastrophic-overfitting check).
        eps_max, eps_default: the eps slider's range and default (Linf, pixel units).
    """

    images: int | None
    epochs: int
    fast_images: int | None
    fast_epochs: int
    fast_eps: float
    pgd_images: int | None
    pgd_epochs: int
    pgd_eps: float
    pgd_steps: int
    distill_images: int | None
    distill_epochs: int
    temperature: float
    val_images: int
    eps_max: float = 0.5
    eps_default: float = 0.25

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BUDGETS: dict[tuple[str, bool], Budget] = {
    # MNIST: ~70 s of CPU time in all, curves included (measured; docs/serve.md, Timings)
    ("mnist", False): Budget(
        images=30_000,
        epochs=1,
        fast_images=20_000,
        fast_epochs=2,
        fast_eps=0.3,
        pgd_images=12_000,
        pgd_epochs=2,
        pgd_eps=0.2,
        pgd_steps=5,
        distill_images=30_000,
        distill_epochs=1,
        temperature=100.0,
        val_images=500,
    ),
    # sklearn digits (1,438 training images of 8x8): ~15 s in all. Their grey levels are
    # multiples of 1/16 and the digits are 8 pixels tall: eps 0.1 is already a large budget.
    ("digits", False): Budget(
        images=None,
        epochs=20,
        fast_images=None,
        fast_epochs=20,
        fast_eps=0.1,
        pgd_images=None,
        pgd_epochs=15,
        pgd_eps=0.1,
        pgd_steps=5,
        distill_images=None,
        distill_epochs=25,
        temperature=100.0,
        val_images=100,
        eps_default=0.15,
    ),
    # tests and smoke runs
    ("mnist", True): Budget(
        images=2_000,
        epochs=1,
        fast_images=1_000,
        fast_epochs=1,
        fast_eps=0.3,
        pgd_images=500,
        pgd_epochs=1,
        pgd_eps=0.2,
        pgd_steps=2,
        distill_images=1_000,
        distill_epochs=1,
        temperature=100.0,
        val_images=100,
    ),
    ("digits", True): Budget(
        images=None,
        epochs=6,
        fast_images=None,
        fast_epochs=3,
        fast_eps=0.1,
        pgd_images=600,
        pgd_epochs=2,
        pgd_eps=0.1,
        pgd_steps=2,
        distill_images=None,
        distill_epochs=3,
        temperature=100.0,
        val_images=50,
        eps_default=0.15,
    ),
}


def budget_for(dataset: str, quick: bool) -> Budget:
    """The :data:`BUDGETS` entry for ``dataset`` (``"mnist"``/``"digits"``; other datasets
    use MNIST's)."""
    return BUDGETS.get((dataset, quick), BUDGETS[("mnist", quick)])


@dataclass(frozen=True)
class DefenseBudget:
    """Budget of the defended zoo entries for one dataset. Kept apart from :class:`Budget` so
    that the LeNets' cache keys did not change when the defenses were added.

    Attributes:
        magnet_images, magnet_epochs, magnet_lr, magnet_batch: MagNet's autoencoders, trained
            on clean images from the front of the training split (``None`` = all but the
            calibration images).
        magnet_val, magnet_fpr: calibration images (far end of the training split, disjoint
            from the autoencoders' images) and the whole defense's false-positive rate there.
        magnet_test: test images MagNet's clean accuracy and false-positive rate are measured
            on at first start (``None`` = all).
        gan_images, gan_iterations, gan_latent, gan_width: Defense-GAN's WGAN-GP generator
            (:func:`advlab.defenses.train_gan` with ``n_critic=2, lr=1e-3``, the CPU setting of
            ``docs/defenses/defense-gan.md``).
        dgan_iterations, dgan_restarts: the projection's ``L`` and ``R`` per input (the paper:
            200 and 10): every forward pass of the defended model costs ``L`` generator steps on
            ``R`` latents.
        dgan_test: test images Defense-GAN's clean accuracy is measured on (a projection each).
        dgan_adaptive_max_steps: the most steps (iterations, queries) an adaptive (BPDA) attack
            on Defense-GAN may ask for: each one costs a projection.
        dgan_curve: ``(n, eps_step, pgd_steps, adaptive_steps)`` caps of Defense-GAN's
            accuracy-vs-eps curve.
    """

    magnet_images: int | None
    magnet_epochs: int
    magnet_lr: float
    magnet_batch: int
    magnet_val: int
    magnet_fpr: float
    magnet_test: int | None
    gan_images: int | None
    gan_iterations: int
    gan_latent: int
    gan_width: int
    dgan_iterations: int
    dgan_restarts: int
    dgan_test: int | None
    dgan_adaptive_max_steps: int
    dgan_curve: tuple[int, float, int, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFENSE_BUDGETS: dict[tuple[str, bool], DefenseBudget] = {
    # MNIST, CPU time: MagNet ~12 s, its curve 20 s; Defense-GAN (opt-in) ~2 min of GAN
    # training, ~12 s of clean accuracy, ~1 min of curve (measured; docs/serve.md, Timings)
    ("mnist", False): DefenseBudget(
        magnet_images=10_000,
        magnet_epochs=3,
        magnet_lr=1e-2,
        magnet_batch=64,
        magnet_val=5_000,
        magnet_fpr=0.001,
        magnet_test=None,
        gan_images=30_000,
        gan_iterations=700,
        gan_latent=64,
        gan_width=32,
        dgan_iterations=25,
        dgan_restarts=4,
        dgan_test=500,
        dgan_adaptive_max_steps=20,
        dgan_curve=(50, 0.1, 5, 5),
    ),
    # sklearn digits: 1,438 training images; 300 calibrate, so the rate is 1% (at 0.1% the
    # threshold would be the largest validation mark)
    ("digits", False): DefenseBudget(
        magnet_images=None,
        magnet_epochs=30,
        magnet_lr=1e-2,
        magnet_batch=64,
        magnet_val=300,
        magnet_fpr=0.01,
        magnet_test=None,
        gan_images=None,
        gan_iterations=1_000,
        gan_latent=16,
        gan_width=16,
        dgan_iterations=25,
        dgan_restarts=4,
        dgan_test=None,
        dgan_adaptive_max_steps=20,
        dgan_curve=(100, 0.05, 5, 5),
    ),
    # tests and smoke runs
    ("mnist", True): DefenseBudget(
        magnet_images=5_000,  # fewer images or epochs: the sigmoid autoencoders do not learn
        magnet_epochs=2,
        magnet_lr=1e-2,
        magnet_batch=64,
        magnet_val=200,
        magnet_fpr=0.02,
        magnet_test=500,
        gan_images=1_000,
        gan_iterations=20,
        gan_latent=16,
        gan_width=8,
        dgan_iterations=5,
        dgan_restarts=2,
        dgan_test=100,
        dgan_adaptive_max_steps=20,
        dgan_curve=(20, 0.25, 2, 2),
    ),
    ("digits", True): DefenseBudget(
        magnet_images=None,
        magnet_epochs=15,
        magnet_lr=1e-2,
        magnet_batch=64,
        magnet_val=200,
        magnet_fpr=0.02,
        magnet_test=None,
        gan_images=None,
        gan_iterations=40,
        gan_latent=16,
        gan_width=8,
        dgan_iterations=5,
        dgan_restarts=2,
        dgan_test=None,
        dgan_adaptive_max_steps=20,
        dgan_curve=(20, 0.25, 2, 2),
    ),
}


def defense_budget_for(dataset: str, quick: bool) -> DefenseBudget:
    """The :data:`DEFENSE_BUDGETS` entry for ``dataset`` (other datasets use MNIST's)."""
    return DEFENSE_BUDGETS.get((dataset, quick), DEFENSE_BUDGETS[("mnist", quick)])


@dataclass(frozen=True)
class CurveLimits:
    """Caps on a model's accuracy-vs-eps curve (for models whose forward pass is expensive):
    at most ``n`` images, an eps grid no finer than ``eps_step``, at most ``pgd_steps`` (naive
    PGD) and ``adaptive_steps`` (adaptive PGD)."""

    n: int
    eps_step: float
    pgd_steps: int
    adaptive_steps: int


@dataclass
class TrainJob:
    """What a :class:`Spec` trains from: the training split, the budget, the run folder."""

    train: TensorData
    budget: Budget
    folder: Path
    seed: int
    device: str
    defense: DefenseBudget | None = None
    base: Classifier | None = None

    def first(self, n: int | None) -> TensorData:
        """The first ``n`` training images (all with ``None``)."""
        return self.train if n is None or n >= len(self.train) else self.train.subset(slice(0, n))

    def split(self, n: int | None, val: int | None = None) -> tuple[TensorData, TensorData | None]:
        """``(train, val)``: the first ``n`` images, and ``val`` (default
        ``budget.val_images``) images taken from the far end of the training split (disjoint
        from those ``n``: when the split is too small, they are split off the ``n``)."""
        tr = self.first(n)
        k = self.budget.val_images if val is None else val
        if k <= 0:
            return tr, None
        if len(self.train) - len(tr) >= k:
            return tr, self.train.subset(slice(len(self.train) - k, len(self.train)))
        tr, va = train_val_split(tr, min(0.5, k / len(tr)), seed=self.seed)
        return tr, va

    def fresh(self, seed_offset: int = 0) -> Classifier:
        """An untrained LeNet for this data (initial weights seeded, global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + seed_offset)
            return almodels.build(
                ARCH, input_shape=self.train.input_shape, num_classes=self.train.num_classes
            )

    def config(self, epochs: int, **kw: Any) -> TrainConfig:
        return TrainConfig(epochs=epochs, seed=self.seed, device=self.device, **kw)

    def require(self) -> tuple[DefenseBudget, Classifier]:
        """The defense budget and a private copy of the trained base (for defense specs)."""
        if self.defense is None or self.base is None:
            raise ValueError("a defense spec needs the job's defense budget and base model")
        return self.defense, copy.deepcopy(self.base)


@dataclass(frozen=True)
class Spec:
    """One zoo entry: ``name`` (URL-safe id), ``label`` and ``description`` for the page,
    ``train(job) -> Classifier``, and ``train_eps(budget)``, the eps it was trained against
    (``None`` for non-adversarial training).

    A defense names its ``base`` (another zoo entry, trained or loaded first and handed to
    ``train`` as ``job.base``; its digest is part of the defense's cache key) and may add
    budget-dependent ``details(defense_budget)`` to its description and ``extra(...)`` to its
    settings; the :class:`DefenseBudget` fields whose names start with one of its
    ``budget_keys`` are part of its cache key. ``opt_in`` entries are not in
    :data:`DEFAULT_MODELS` (asked for by name only)."""

    name: str
    label: str
    description: str
    train: Callable[[TrainJob], Classifier]
    train_eps: Callable[[Budget], float | None] = lambda b: None
    base: str | None = None
    details: Callable[[DefenseBudget], str] = lambda d: ""
    opt_in: bool = False
    extra: Callable[[DefenseBudget], dict[str, Any]] = lambda d: {}
    budget_keys: tuple[str, ...] = ()
