"""The web demo's model zoo: small LeNets trained (or loaded from cache) at server start.

Each entry of :data:`ZOO` is a :class:`Spec` whose ``train`` function turns a
:class:`TrainJob` (data, budget, output folder) into a trained :class:`Classifier`;
:func:`load_zoo` trains or loads every requested entry and returns :class:`DemoModel` objects,
the unit the web app serves. Adding a model to the demo is adding a :class:`Spec` to
:data:`ZOO` (or passing your own ``DemoModel`` objects to ``create_app``); the page lists
whatever the server reports at ``GET /api/models``.

Models in the zoo (all LeNet-5, :mod:`advlab.models.nets`):

* ``plain``: cross-entropy training.
* ``fast-at``: fast adversarial training (Wong et al. 2020, recipe ``fast``), FGSM from a
  random start, cyclic learning rate.
* ``pgd-at``: PGD adversarial training (Madry et al. 2018, recipe ``pgd``) with a few PGD
  steps. Deviation: on MNIST at eps 0.2 instead of Madry's 0.3, because LeNet does not start
  learning at 0.3 within the demo's budget (it stays at chance for two epochs).
* ``distilled``: defensive distillation (Papernot et al. 2016) at T = 100, deployed at T = 1
  (gradient masking: FGSM fails, logit-margin attacks do not).

MagNet and Defense-GAN are not in the zoo yet: advlab has no such defenses to build them from;
when they exist they are one :class:`Spec` each.

**Budgets.** The defaults keep the whole first start (MNIST) near a minute on 2 CPU cores
(measured: 72 s of CPU time, curves included): each model sees a subset of the training set
for one or two epochs (:data:`BUDGETS`); ``quick=True`` is a tiny budget for tests and smoke
runs. These models are demo quality (MNIST: plain ~97%, fast-at ~96%, pgd-at ~93%,
distilled ~96% clean accuracy), not reproductions of the papers' numbers. Changing a training
function (not only its budget) needs a :data:`FORMAT_VERSION` bump, so that old caches are
not reused.

**Cache.** Each model lives in ``<models_dir>/<dataset>/<name>-<hash>/``, ``hash`` being a
digest of everything that determines its weights (spec name, budget, dataset, seed, format
version); a finished model has a ``serve.json`` beside its checkpoint and is loaded from
there. A changed budget trains into a new folder, so nothing is ever overwritten or deleted;
an interrupted start resumes its unfinished training run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from advlab import models as almodels
from advlab.data import TensorData, train_val_split
from advlab.data.paths import resolve_data_dir
from advlab.defenses.training import TrainConfig, train
from advlab.defenses.training.adversarial import PGDTraining
from advlab.defenses.training.distill import defensive_distillation
from advlab.defenses.training.fast import Fast
from advlab.evaluation import evaluate_clean
from advlab.models import Classifier
from advlab.utils.files import atomic_write_json

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ARCH = "lenet"
DONE = "serve.json"


def default_models_dir() -> Path:
    """``<advlab cache>/serve-models``: ``$ADVLAB_DATA/serve-models`` when that variable is
    set, else ``~/.cache/advlab/serve-models`` (the data root of :mod:`advlab.data.paths`)."""
    return resolve_data_dir(None) / "serve-models"


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


@dataclass
class TrainJob:
    """What a :class:`Spec` trains from: the training split, the budget, the run folder."""

    train: TensorData
    budget: Budget
    folder: Path
    seed: int
    device: str

    def first(self, n: int | None) -> TensorData:
        """The first ``n`` training images (all with ``None``)."""
        return self.train if n is None or n >= len(self.train) else self.train.subset(slice(0, n))

    def split(self, n: int | None) -> tuple[TensorData, TensorData | None]:
        """``(train, val)``: the first ``n`` images, and ``budget.val_images`` taken from the
        far end of the training split (disjoint from those ``n`` when the split is larger)."""
        tr = self.first(n)
        k = self.budget.val_images
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


@dataclass(frozen=True)
class Spec:
    """One zoo entry: ``name`` (URL-safe id), ``label`` and ``description`` for the page,
    ``train(job) -> Classifier``, and ``train_eps(budget)``, the eps it was trained against
    (``None`` for non-adversarial training)."""

    name: str
    label: str
    description: str
    train: Callable[[TrainJob], Classifier]
    train_eps: Callable[[Budget], float | None] = lambda b: None


@dataclass
class DemoModel:
    """A model the web app serves: the classifier plus what the page shows about it.

    ``input_shape`` is ``(1, H, W)``; ``eps_max``/``eps_default`` set the eps slider;
    ``clean_accuracy`` is on the test split (``None`` if unknown); ``folder`` is the cache
    folder (curves are cached there; ``None`` = in memory only).
    """

    name: str
    label: str
    description: str
    clf: Classifier
    dataset: str
    eps_max: float = 0.5
    eps_default: float = 0.25
    train_eps: float | None = None
    clean_accuracy: float | None = None
    folder: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        shape = self.clf.input_shape
        if shape is None:
            raise ValueError(f"model {self.name!r} has no input_shape")
        return tuple(shape)

    def info(self) -> dict[str, Any]:
        """The JSON object ``GET /api/models`` lists for this model."""
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "dataset": self.dataset,
            "input_shape": list(self.input_shape),
            "num_classes": self.clf.num_classes,
            "eps": {"min": 0.0, "max": self.eps_max, "default": self.eps_default, "step": 0.01},
            "train_eps": self.train_eps,
            "clean_accuracy": self.clean_accuracy,
        }


# ------------------------------------------------------------------------------ the recipes
def _plain(job: TrainJob) -> Classifier:
    clf = job.fresh()
    train(
        clf,
        job.first(job.budget.images),
        None,
        job.config(job.budget.epochs),
        out=job.folder,
        resume=True,
        dataset=job.train.name,
    )
    return clf


def _fast(job: TrainJob) -> Classifier:
    b = job.budget
    clf = job.fresh()
    tr, va = job.split(b.fast_images)
    # Wong et al.'s schedule: cyclic learning rate, Adam here (as their MNIST code)
    cfg = job.config(b.fast_epochs, lr=5e-3, schedule="cyclic", batch_size=100)
    train(
        clf,
        tr,
        va,
        cfg,
        recipe=Fast(eps=b.fast_eps, val_steps=5),
        out=job.folder,
        resume=True,
        dataset=job.train.name,
    )
    return clf


def _pgd(job: TrainJob) -> Classifier:
    b = job.budget
    clf = job.fresh()
    tr, va = job.split(b.pgd_images)
    recipe = PGDTraining(
        eps=b.pgd_eps, steps=b.pgd_steps, step_size=2.5 * b.pgd_eps / b.pgd_steps, val_steps=5
    )
    train(
        clf,
        tr,
        va,
        job.config(b.pgd_epochs),
        recipe=recipe,
        out=job.folder,
        resume=True,
        dataset=job.train.name,
    )
    return clf


def _distilled(job: TrainJob) -> Classifier:
    b = job.budget
    _, student = defensive_distillation(
        lambda: job.fresh(1),
        job.first(b.distill_images),
        None,
        job.config(b.distill_epochs, lr=1e-2),  # T = 100 shrinks gradients; a larger lr helps
        b.temperature,
        out=job.folder,
        resume=True,
        dataset=job.train.name,
    )
    return student


ZOO: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec(
            "plain",
            "Plain LeNet",
            "LeNet-5 trained with cross-entropy on clean images: accurate, and fooled by "
            "tiny perturbations.",
            _plain,
        ),
        Spec(
            "fast-at",
            "Fast adversarial training",
            "LeNet-5 trained on FGSM-from-random-start examples (Wong, Rice & Kolter 2020): "
            "robust to FGSM and, less so, to PGD at its training eps.",
            _fast,
            lambda b: b.fast_eps,
        ),
        Spec(
            "pgd-at",
            "PGD adversarial training",
            "LeNet-5 trained on PGD examples (Madry et al. 2018), a few steps per batch: "
            "the robust baseline.",
            _pgd,
            lambda b: b.pgd_eps,
        ),
        Spec(
            "distilled",
            "Defensive distillation (T=100)",
            "LeNet-5 distilled at temperature 100 and deployed at T=1 (Papernot et al. 2016). "
            "Its softmax saturates, so FGSM/PGD with cross-entropy see zero gradients "
            "(gradient masking, not robustness): try PGD with the margin loss or APGD-DLR.",
            _distilled,
        ),
    )
}


# --------------------------------------------------------------------------------- loading
def _digest(spec: Spec, budget: Budget, dataset: str, n_train: int, seed: int) -> str:
    key = {
        "format": FORMAT_VERSION,
        "spec": spec.name,
        "arch": ARCH,
        "budget": budget.to_dict(),
        "dataset": dataset,
        "n_train": n_train,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def _weights_folder(spec: Spec, folder: Path) -> Path:
    return folder / "student" if spec.name == "distilled" else folder


def load_zoo(
    train_data: TensorData,
    test_data: TensorData,
    models_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, DemoModel]:
    """Train (first start) or load (later starts) the zoo entries ``names`` (default: all of
    :data:`ZOO`, in order) for ``train_data``; returns ``{name: DemoModel}``.

    Progress is logged (``logging`` at INFO; the ``advlab serve`` command shows it). Clean
    accuracy is measured on ``test_data`` once and cached with the model. Unknown names raise
    ``ValueError`` listing the known ones.
    """
    wanted = list(ZOO) if names is None else list(names)
    unknown = [n for n in wanted if n not in ZOO]
    if unknown:
        raise ValueError(f"unknown demo model(s) {unknown}; known: {', '.join(ZOO)}")
    budget = budget_for(train_data.name, quick)
    root = Path(models_dir).expanduser() / train_data.name
    out: dict[str, DemoModel] = {}
    for i, name in enumerate(wanted, 1):
        spec = ZOO[name]
        folder = root / f"{name}-{_digest(spec, budget, train_data.name, len(train_data), seed)}"
        done = folder / DONE
        t0 = time.perf_counter()
        if done.is_file():
            meta = json.loads(done.read_text())
            clf = almodels.load(_weights_folder(spec, folder), device=device)
            logger.info("[%d/%d] %s: loaded from %s", i, len(wanted), name, folder)
        else:
            logger.info(
                "[%d/%d] %s: training on %s (first start; cached in %s)",
                i,
                len(wanted),
                name,
                train_data.name,
                folder,
            )
            job = TrainJob(train_data, budget, folder, seed, device)
            clf = spec.train(job).eval()
            acc = evaluate_clean(clf, test_data, device=clf.device).accuracy
            meta = {
                "format": FORMAT_VERSION,
                "name": name,
                "budget": budget.to_dict(),
                "clean_accuracy": acc,
                "train_seconds": round(time.perf_counter() - t0, 1),
            }
            atomic_write_json(done, meta)
            logger.info(
                "[%d/%d] %s: clean test accuracy %.1f%% (%.0f s)",
                i,
                len(wanted),
                name,
                100 * acc,
                time.perf_counter() - t0,
            )
        clf.requires_grad_(False)
        out[name] = DemoModel(
            name=name,
            label=spec.label,
            description=spec.description,
            clf=clf,
            dataset=train_data.name,
            eps_max=budget.eps_max,
            eps_default=budget.eps_default,
            train_eps=spec.train_eps(budget),
            clean_accuracy=meta.get("clean_accuracy"),
            folder=folder,
        )
    return out
