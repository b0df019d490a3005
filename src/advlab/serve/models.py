"""The web demo's model zoo: small LeNets trained (or loaded from cache) at server start, and
defenses in front of the plain one.

Each entry of :data:`ZOO` is a :class:`Spec` whose ``train`` function turns a
:class:`TrainJob` (data, budget, output folder, and for a defense the trained base model) into
a trained :class:`Classifier`; :func:`load_zoo` trains or loads every requested entry and
returns :class:`DemoModel` objects, the unit the web app serves. Adding a model to the demo is
adding a :class:`Spec` to :data:`ZOO` (or passing your own ``DemoModel`` objects to
``create_app``); the page lists whatever the server reports at ``GET /api/models``.

Models in the zoo (LeNet-5, :mod:`advlab.models.nets`, and two defenses in front of one):

* ``plain``: cross-entropy training.
* ``fast-at``: fast adversarial training (Wong et al. 2020, recipe ``fast``), FGSM from a
  random start, cyclic learning rate.
* ``pgd-at``: PGD adversarial training (Madry et al. 2018, recipe ``pgd``) with a few PGD
  steps. Deviation: on MNIST at eps 0.2 instead of Madry's 0.3, because LeNet does not start
  learning at 0.3 within the demo's budget (it stays at chance for two epochs).
* ``distilled``: defensive distillation (Papernot et al. 2016) at T = 100, deployed at T = 1
  (gradient masking: FGSM fails, logit-margin attacks do not).
* ``magnet``: MagNet (Meng & Chen 2017, :func:`advlab.defenses.fit_magnet`) in front of the
  ``plain`` LeNet (its trained weights, not retrained): the paper's MNIST layout (reformer =
  autoencoder I, detectors ``I:l2`` and ``II:l1``), thresholds for a stated false-positive
  rate on clean validation images (:data:`DEFENSE_BUDGETS`: 0.001 on 5,000 MNIST images, as
  the paper; 0.01 on 300 digits). Deviation for the budget: the autoencoders see 10,000
  images for 3 epochs at lr 1e-2, batch 64 (the paper: the whole set, 100 epochs at 1e-3,
  batch 256).
* ``defense-gan`` (opt-in: not in :data:`DEFAULT_MODELS`; ``advlab serve --models
  ...,defense-gan``): Defense-GAN (Samangouei et al. 2018, :class:`advlab.defenses.DefenseGAN`)
  in front of the ``plain`` LeNet. *Demo quality*: its WGAN-GP generator trains at first start
  for 700 iterations on the CPU (about 2 minutes; width 32, latent 64, n_critic 2, lr 1e-3;
  the paper: 200,000 iterations, width 64, latent 128, n_critic 5, lr 1e-4), and the
  projection uses L = 25 steps from R = 4 starting points (the paper: 200 and 10) to bound
  the cost of a request. :func:`load_defense_gan_checkpoint` serves a Defense-GAN checkpoint
  of ``advlab train --defense defense-gan`` instead (same projection bound).

Defended models are :class:`advlab.defenses.Defended` classifiers: the app attacks their
``naive()`` view (the LeNet alone, the papers' threat model) or their ``adaptive()`` view
(detection-aware for MagNet, BPDA for Defense-GAN), scores the result on the defended model,
and reports MagNet's detector verdict (``reject``).

**Budgets.** The defaults keep the whole first start (MNIST, default models) near a minute
and a half of CPU time (measured: 99 s; the four LeNets and their curves ~70 s, MagNet's
autoencoders ~12 s and its curve 20 s; docs/serve.md, Timings): each model sees a subset of
the training set for one or two epochs (:data:`BUDGETS`, :data:`DEFENSE_BUDGETS`);
``quick=True`` is a tiny budget for tests and smoke runs. These models are demo quality
(MNIST: plain ~97%, fast-at ~96%, pgd-at ~93%, distilled ~96%, MagNet ~97% clean accuracy),
not reproductions of the papers' numbers. Changing a training function (not only its budget)
needs a :data:`FORMAT_VERSION` bump, so that old caches are not reused.

**Cache.** Each model lives in ``<models_dir>/<dataset>/<name>-<hash>/``, ``hash`` being a
digest of everything that determines its weights (spec name, budget, dataset, seed, format
version; for a defense also its :class:`DefenseBudget` and its base's digest); a finished
model has a ``serve.json`` beside its checkpoint and is loaded from there. A changed budget
trains into a new folder, so nothing is ever overwritten or deleted; an interrupted start
resumes its unfinished LeNet training run (the defenses' autoencoders and GAN start over).

The pieces live in three modules: :mod:`advlab.serve.specs` (budgets, :class:`TrainJob`,
:class:`Spec`), :mod:`advlab.serve.zoo` (the training function of each entry, :data:`ZOO`,
:data:`DEFAULT_MODELS`) and this one (:class:`DemoModel`, loading and caching); this module
re-exports ``ZOO`` and ``DEFAULT_MODELS``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from advlab import models as almodels
from advlab.data import TensorData
from advlab.data.paths import resolve_data_dir
from advlab.defenses import Defended, DefenseGAN
from advlab.evaluation import evaluate_clean
from advlab.models import Classifier
from advlab.models.checkpoint import WEIGHTS, CheckpointError
from advlab.serve.specs import (
    Budget,
    CurveLimits,
    DefenseBudget,
    Spec,
    TrainJob,
    budget_for,
    defense_budget_for,
)
from advlab.serve.zoo import DEFAULT_MODELS, ZOO
from advlab.utils.files import atomic_write_json

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ARCH = "lenet"
DONE = "serve.json"


def default_models_dir() -> Path:
    """``<advlab cache>/serve-models``: ``$ADVLAB_DATA/serve-models`` when that variable is
    set, else ``~/.cache/advlab/serve-models`` (the data root of :mod:`advlab.data.paths`)."""
    return resolve_data_dir(None) / "serve-models"


#: How each defense's two attack views are built, for the page (``GET /api/models``).
VIEWS: dict[str, tuple[str, str]] = {
    "magnet": (
        "Naive: the attack is crafted on the LeNet alone, unaware of MagNet (the paper's threat "
        "model), then fed to MagNet.",
        "Adaptive: the attack differentiates through the reformer and has the detectors in its "
        "loss (Carlini & Wagner 2017): it looks for inputs that are misclassified and pass "
        "both detectors, and keeps each image's first such iterate (early stop). Use a "
        "margin-loss attack (PGD margin loss, APGD-DLR): with cross-entropy the detector term "
        "saturates the softmax and the gradient vanishes.",
    ),
    "defense-gan": (
        "Naive: the attack is crafted on the LeNet alone (the paper's white-box threat model), "
        "then projected by Defense-GAN.",
        "Adaptive: BPDA (Athalye, Carlini & Wagner 2018): the real projection forward, the "
        "identity backward. Each step costs a projection, so steps are capped.",
    ),
}


@dataclass
class DemoModel:
    """A model the web app serves: the classifier plus what the page shows about it.

    ``input_shape`` is ``(1, H, W)``; ``eps_max``/``eps_default`` set the eps slider;
    ``clean_accuracy`` is on the test split (``None`` if unknown; for a detector: correct *and*
    accepted), measured on ``clean_n`` images (``None``: all), of which ``clean_rejected``
    (a fraction) were rejected by the detector; ``folder`` is the cache folder (curves are
    cached there; ``None`` = in memory only). For a defended ``clf``
    (:class:`advlab.defenses.Defended`), ``adaptive_max_steps`` caps the steps of attacks on
    its adaptive view (``None``: the attack menu's own range) and ``curve_limits`` caps its
    curve. ``extra`` entries are listed with the defense's settings.
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
    clean_n: int | None = None
    clean_rejected: float | None = None
    adaptive_max_steps: int | None = None
    curve_limits: CurveLimits | None = None
    _views: dict[bool, Classifier] = field(default_factory=dict, init=False, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        shape = self.clf.input_shape
        if shape is None:
            raise ValueError(f"model {self.name!r} has no input_shape")
        return tuple(shape)

    @property
    def defense(self) -> Defended | None:
        """The defended classifier, or ``None`` for an undefended model."""
        return self.clf if isinstance(self.clf, Defended) else None

    @property
    def detects(self) -> bool:
        d = self.defense
        return d is not None and d.detects

    def view(self, adaptive: bool) -> Classifier:
        """The model an attack is crafted on: ``clf`` itself when undefended, else the
        defense's ``adaptive()`` or ``naive()`` view (built once)."""
        d = self.defense
        if d is None:
            return self.clf
        if adaptive not in self._views:
            v = d.adaptive() if adaptive else d.naive()
            self._views[adaptive] = v.eval()
        return self._views[adaptive]

    def defense_info(self) -> dict[str, Any] | None:
        """What ``GET /api/models`` says about the defense (``None`` when undefended)."""
        d = self.defense
        if d is None:
            return None
        naive, adaptive = VIEWS.get(
            d.name,
            (
                "Naive: the attack is crafted on the defense's naive() view.",
                f"Adaptive: the attack is crafted on the defense's adaptive() view (gradient "
                f"story {d.gradient!r}).",
            ),
        )
        settings = {k: v for k, v in d.defense_args().items() if _is_json(v)}
        return {
            "name": d.name,
            "detects": d.detects,
            "gradient": d.gradient,
            "naive": naive,
            "adaptive": adaptive,
            "adaptive_max_steps": self.adaptive_max_steps,
            "settings": settings | {k: v for k, v in self.extra.items() if _is_json(v)},
        }

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
            "clean_n": self.clean_n,
            "clean_rejected": self.clean_rejected,
            "detects": self.detects,
            "defense": self.defense_info(),
        }


def _is_json(v: Any) -> bool:
    if isinstance(v, list | tuple):
        return all(_is_json(x) for x in v)
    return v is None or isinstance(v, bool | int | float | str)


# --------------------------------------------------------------------------------- loading
def _digest(
    spec: Spec,
    budget: Budget,
    dataset: str,
    n_train: int,
    seed: int,
    more: dict[str, Any] | None = None,
) -> str:
    key = {
        "format": FORMAT_VERSION,
        "spec": spec.name,
        "arch": ARCH,
        "budget": budget.to_dict(),
        "dataset": dataset,
        "n_train": n_train,
        "seed": seed,
    }
    key.update(more or {})  # defenses only: the LeNets' keys are what they always were
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def _weights_folder(spec: Spec, folder: Path) -> Path:
    return folder / "student" if spec.name == "distilled" else folder


def clean_stats(clf: Classifier, test: TensorData, n: int | None = None) -> dict[str, Any]:
    """``{"clean_accuracy", "clean_n", "clean_rejected"}`` on the first ``n`` test images
    (all with ``None``). For a detector, accuracy counts an image only when it is classified
    correctly *and* accepted (a rejected clean image is an error, as in the evaluation layer),
    and ``clean_rejected`` is the rejected fraction; ``None`` for models without a detector."""
    data = test if n is None or n >= len(test) else test.subset(slice(0, n))
    if not isinstance(clf, Defended):
        acc = evaluate_clean(clf, data, device=clf.device).accuracy
        return {"clean_accuracy": acc, "clean_n": len(data), "clean_rejected": None}
    correct = rejected = 0
    with torch.no_grad():
        for i in range(0, len(data), 512):
            x = data.x[i : i + 512].to(clf.device)
            y = data.y[i : i + 512].to(clf.device)
            rej = clf.reject(x) if clf.detects else torch.zeros_like(y, dtype=torch.bool)
            correct += int(((clf.predict(x) == y) & ~rej).sum())
            rejected += int(rej.sum())
    n_data = max(len(data), 1)
    return {
        "clean_accuracy": correct / n_data,
        "clean_n": len(data),
        "clean_rejected": rejected / n_data if clf.detects else None,
    }


def _limits(spec: Spec, d: DefenseBudget) -> tuple[int | None, CurveLimits | None]:
    """Per-request and curve caps of an expensive model (Defense-GAN)."""
    if spec.name != "defense-gan":
        return None, None
    return d.dgan_adaptive_max_steps, CurveLimits(*d.dgan_curve)


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
    """Train (first start) or load (later starts) the zoo entries ``names`` (default:
    :data:`DEFAULT_MODELS`, in order) for ``train_data``; returns ``{name: DemoModel}``.

    A defense's base entry (``magnet`` and ``defense-gan`` wrap ``plain``) is trained or loaded
    first and reused, also when it is not among ``names`` (then it is not served). Progress is
    logged (``logging`` at INFO; the ``advlab serve`` command shows it). Clean accuracy is
    measured on ``test_data`` once and cached with the model. Unknown names raise
    ``ValueError`` listing the known ones.
    """
    wanted = list(DEFAULT_MODELS) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in ZOO]
    if unknown:
        raise ValueError(f"unknown demo model(s) {unknown}; known: {', '.join(ZOO)}")
    plan: list[str] = []
    for name in wanted:  # bases first
        base = ZOO[name].base
        if base is not None and base not in plan:
            plan.append(base)
        if name not in plan:
            plan.append(name)
    budget = budget_for(train_data.name, quick)
    dbudget = defense_budget_for(train_data.name, quick)
    root = Path(models_dir).expanduser() / train_data.name
    loaded: dict[str, DemoModel] = {}
    digests: dict[str, str] = {}
    for i, name in enumerate(plan, 1):
        spec = ZOO[name]
        more = None
        if spec.base is not None:
            own = {k: v for k, v in dbudget.to_dict().items() if k.startswith(spec.budget_keys)}
            more = {"defense_budget": own, "base": digests[spec.base]}
        digests[name] = _digest(spec, budget, train_data.name, len(train_data), seed, more)
        folder = root / f"{name}-{digests[name]}"
        done = folder / DONE
        t0 = time.perf_counter()
        if done.is_file():
            meta = json.loads(done.read_text())
            clf = almodels.load(_weights_folder(spec, folder), device=device)
            logger.info("[%d/%d] %s: loaded from %s", i, len(plan), name, folder)
        else:
            logger.info(
                "[%d/%d] %s: training on %s (first start; cached in %s)",
                i,
                len(plan),
                name,
                train_data.name,
                folder,
            )
            base_clf = None if spec.base is None else loaded[spec.base].clf
            job = TrainJob(train_data, budget, folder, seed, device, dbudget, base_clf)
            clf = spec.train(job).eval()
            n_test = None
            if spec.name == "magnet":
                n_test = dbudget.magnet_test
            elif spec.name == "defense-gan":
                n_test = dbudget.dgan_test
            stats = clean_stats(clf, test_data, n_test)
            meta = {
                "format": FORMAT_VERSION,
                "name": name,
                "budget": budget.to_dict(),
                **({} if spec.base is None else {"defense_budget": dbudget.to_dict()}),
                **stats,
                "train_seconds": round(time.perf_counter() - t0, 1),
            }
            atomic_write_json(done, meta)
            rejected = meta.get("clean_rejected")
            logger.info(
                "[%d/%d] %s: clean test accuracy %.1f%%%s (%.0f s)",
                i,
                len(plan),
                name,
                100 * meta["clean_accuracy"],
                "" if rejected is None else f", {100 * rejected:.2f}% of clean images rejected",
                time.perf_counter() - t0,
            )
        clf.requires_grad_(False)
        max_steps, limits = _limits(spec, dbudget)
        loaded[name] = DemoModel(
            name=name,
            label=spec.label,
            description=spec.description + (spec.details(dbudget) if spec.base else ""),
            clf=clf,
            dataset=train_data.name,
            eps_max=budget.eps_max,
            eps_default=budget.eps_default,
            train_eps=spec.train_eps(budget),
            clean_accuracy=meta.get("clean_accuracy"),
            folder=folder,
            extra=spec.extra(dbudget) if spec.base else {},
            clean_n=meta.get("clean_n"),
            clean_rejected=meta.get("clean_rejected"),
            adaptive_max_steps=max_steps,
            curve_limits=limits,
        )
    return {name: loaded[name] for name in wanted}


def load_defense_gan_checkpoint(
    path: str | Path,
    train_data: TensorData,
    test_data: TensorData,
    models_dir: str | Path,
    *,
    quick: bool = False,
    device: str = "cpu",
) -> DemoModel:
    """Serve the Defense-GAN checkpoint at ``path`` (a folder written by ``advlab train
    --defense defense-gan``, for ``train_data``'s dataset) as the ``defense-gan`` model.

    Its generator and classifier are used as trained; the projection is bounded to the
    demo's :class:`DefenseBudget` (``L``, ``R`` at most ``dgan_iterations``,
    ``dgan_restarts``), so that a request stays fast; the description states both settings.
    Clean accuracy and the curve are cached under ``models_dir``, keyed by a digest of the
    checkpoint's weights (the checkpoint folder is only read). Raises ``ValueError`` with the
    reason when the folder is not a Defense-GAN checkpoint or is for another dataset."""
    folder = Path(path).expanduser()
    try:
        meta = almodels.read_meta(folder)
        loaded = almodels.load(folder, device=device)
    except CheckpointError as e:
        raise ValueError(f"cannot load the Defense-GAN checkpoint: {e}") from None
    if not isinstance(loaded, DefenseGAN):
        kind = (meta.get("defense") or {}).get("name") or meta.get("preset") or "a plain model"
        raise ValueError(
            f"{folder} holds {kind}, not a Defense-GAN (make one with advlab train --defense "
            "defense-gan --base CHECKPOINT)"
        )
    dataset = meta.get("dataset")
    if dataset not in (None, train_data.name) or loaded.input_shape != train_data.input_shape:
        raise ValueError(
            f"{folder} is a Defense-GAN for {dataset} images of shape {loaded.input_shape}; "
            f"the demo serves {train_data.name} {tuple(train_data.input_shape)}"
        )
    budget = budget_for(train_data.name, quick)
    d = defense_budget_for(train_data.name, quick)
    own = loaded.projector.settings()
    steps = min(own["iterations"], d.dgan_iterations)
    restarts = min(own["restarts"], d.dgan_restarts)
    model = DefenseGAN(
        loaded.base,
        loaded.generator,
        iterations=steps,
        restarts=restarts,
        lr=own["lr"],
        momentum=own["momentum"],
        decay_at=own["decay_at"],
        init_std=own["init_std"],
        seed=own["seed"],
        variant=loaded.variant,
    ).eval()
    model.requires_grad_(False)
    weights = hashlib.sha256()
    with (folder / WEIGHTS).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            weights.update(chunk)
    key = json.dumps(
        [FORMAT_VERSION, weights.hexdigest(), steps, restarts, len(test_data), d.dgan_test]
    )
    cache = (
        Path(models_dir).expanduser()
        / train_data.name
        / f"defense-gan-checkpoint-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    )
    done = cache / DONE
    if done.is_file():
        stats = json.loads(done.read_text())
    else:
        logger.info("Defense-GAN checkpoint %s: measuring clean accuracy", folder)
        stats = {"format": FORMAT_VERSION, "checkpoint": str(folder)}
        stats |= clean_stats(model, test_data, d.dgan_test)
        atomic_write_json(done, stats)
    description = (
        f"Defense-GAN (Samangouei, Kabkab & Chellappa 2018, variant {loaded.variant!r}) loaded "
        f"from the checkpoint {folder.name}: every input is replaced by its projection onto the "
        "range of the checkpoint's GAN generator, then classified by its classifier. No "
        f"detector. The projection runs L = {steps} steps from R = {restarts} starting points (the "
        f"checkpoint's setting: L = {own['iterations']}, R = {own['restarts']}; the paper: 200 "
        f"and 10) to keep a request fast. Adaptive attacks are capped at "
        f"{d.dgan_adaptive_max_steps} steps (each costs a projection)."
    )
    return DemoModel(
        name="defense-gan",
        label="Defense-GAN (checkpoint)",
        description=description,
        clf=model,
        dataset=train_data.name,
        eps_max=budget.eps_max,
        eps_default=budget.eps_default,
        clean_accuracy=stats.get("clean_accuracy"),
        folder=cache,
        extra={"checkpoint": folder.name, "checkpoint_iterations": own["iterations"]},
        clean_n=stats.get("clean_n"),
        adaptive_max_steps=d.dgan_adaptive_max_steps,
        curve_limits=CurveLimits(*d.dgan_curve),
    )


__all__ = [
    "DEFAULT_MODELS",
    "ZOO",
    "DemoModel",
    "clean_stats",
    "default_models_dir",
    "load_defense_gan_checkpoint",
    "load_zoo",
]
