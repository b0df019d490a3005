"""Benchmark helpers: the data and the (cached) trained model that the attack benchmark uses.

* :func:`load_split` finds MNIST (``--data-dir`` > ``$ADVLAB_DATA`` > ``~/.cache/advlab`` > the
  team's verified copy in ``../shared/data``) without downloading; when it is nowhere, the
  scikit-learn digits bundled with advlab stand in (8x8 images, so the numbers differ).
* :func:`trained_model` trains a zoo preset with ``advlab.defenses.training.train`` and caches
  it in ``runs/bench/<model>[-adv]/`` (``advlab.models.save``/``load``); a cache whose recorded
  settings differ from the requested ones is retrained.
* :class:`BenchPGDTraining` is a minimal Madry-style PGD adversarial-training recipe with a
  per-batch eps ramp; it trains the ``adv`` model that the quoted benchmark numbers use.
* :func:`recipe_trained_model` fine-tunes the cached normally trained model with advlab's own
  ``pgd`` recipe over an eps curriculum and caches it in ``runs/bench/<model>-pgd/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab import data, models
from advlab.attacks import PGD
from advlab.defenses.training import Recipe, TrainConfig, build_recipe, train

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CACHE_ROOT = Path(__file__).resolve().parents[1] / "runs" / "bench"  # <repo>/runs/bench


def load_split(split: str, data_dir: str | None) -> data.TensorData:
    """MNIST ``split`` from the first data root that holds it, else the bundled digits."""
    roots: list[str | None] = [data_dir] if data_dir else [None, str(SHARED_DATA)]
    for root in roots:
        try:
            return data.load("mnist", split, data_dir=root, download=False)
        except (data.DatasetNotFoundError, data.DataIntegrityError, FileNotFoundError):
            continue
    return data.load("digits", split)


class BenchPGDTraining(Recipe):
    """PGD adversarial training (Madry et al. 2018): the loss is cross-entropy on PGD examples
    crafted against the current model (in eval mode; Linf ``eps``, ``steps`` steps of
    ``step_size`` from a random start). It predates advlab's ``pgd`` recipe and stays so
    that the cached ``adv`` model, and the numbers quoted in benchmarks/README.md, do not
    change: it ramps eps per batch, where the recipe's ``eps_warmup`` ramps per epoch.

    ``ramp``: batches over which eps (and the step) grow linearly from 0 to their values. A
    small net such as LeNet trained at eps 0.3 from the first batch collapses to a constant
    prediction (about 11% accuracy after 2 epochs); the ramp, usual in later work, avoids it.
    """

    name = "bench-pgd"

    def __init__(
        self, eps: float = 0.3, steps: int = 10, step_size: float = 0.04, ramp: int = 0
    ) -> None:
        self.eps, self.steps, self.step_size, self.ramp = eps, steps, step_size, ramp
        self._batches = 0  # seeds each batch's random start differently but reproducibly

    def loss(self, model: models.Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        scale = min(1.0, (self._batches + 1) / self.ramp) if self.ramp else 1.0
        atk = PGD(
            eps=self.eps * scale,
            steps=self.steps,
            step_size=self.step_size * scale,
            seed=self._batches,
        )
        self._batches += 1
        x_adv = atk(model, x, y, model_mode="eval").x_adv  # (N, C, H, W); train mode restored
        with torch.no_grad():
            clean_logits = model.logits(x, check=False)  # (N, K): the running train accuracy
        return F.cross_entropy(model.logits(x_adv, check=False), y), clean_logits

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "eps": self.eps,
            "steps": self.steps,
            "step": self.step_size,
            "ramp_batches": self.ramp,
        }


def _settings(name: str, robust: bool, train_limit: int, d: data.TensorData) -> dict[str, Any]:
    """What the cached model was trained with (a cache with other settings is retrained)."""
    return {
        "model": name,
        "robust": robust,
        "dataset": d.name,
        "train_images": len(d),
        "train_limit": train_limit,
        "epochs": 2,
        "lr": 1e-3 if name == "madry-mnist" else 3e-3,
        "eps_ramp_epochs": 1 if robust else 0,
    }


def trained_model(
    name: str,
    *,
    robust: bool,
    train_limit: int,
    device: torch.device,
    data_dir: str | None,
    cache_root: Path = CACHE_ROOT,
) -> tuple[models.Classifier, str]:
    """A trained ``name`` (PGD-adversarially trained when ``robust``) on ``device`` and one
    line saying where it came from."""
    train_set = load_split("train", data_dir)
    if train_limit:
        train_set = train_set.subset(slice(0, train_limit))
    want = _settings(name, robust, train_limit, train_set)
    folder = cache_root / f"{name}{'-adv' if robust else ''}"
    try:
        if models.read_meta(folder).get("extra") == want:
            return models.load(folder, device=device), f"loaded from {folder}"
    except models.CheckpointError:
        pass
    torch.manual_seed(0)
    clf = models.build(name, input_shape=train_set.input_shape, num_classes=train_set.num_classes)
    cfg = TrainConfig(
        epochs=want["epochs"],
        batch_size=64,
        lr=want["lr"],
        schedule="cosine",
        device=str(device),
        amp=False,
    )
    batches_per_epoch = -(-len(train_set) // cfg.batch_size)
    recipe = BenchPGDTraining(ramp=batches_per_epoch * want["eps_ramp_epochs"]) if robust else None
    t0 = time.perf_counter()
    result = train(clf, train_set, None, cfg, recipe=recipe)
    took = time.perf_counter() - t0
    models.save(
        clf,
        folder,
        dataset=train_set.name,
        recipe=(recipe.config() if recipe else {"name": "standard"}),
        metrics=result.last,
        extra=want,
    )
    return clf, (
        f"trained {'adversarially ' if robust else ''}on {train_set.name} x{len(train_set)} in "
        f"{took:.0f}s (train acc {result.last.get('train_acc', float('nan')):.3f}), "
        f"cached in {folder}"
    )


# ------------------------------------------------------------------- advlab-recipe models
AT_SCHEDULE = (0.1, 0.2, 0.3, 0.3, 0.3)  # eps of each one-epoch stage (final eps 0.3)


def recipe_trained_model(
    name: str,
    *,
    train_limit: int,
    device: torch.device,
    data_dir: str | None,
    schedule: tuple[float, ...] = AT_SCHEDULE,
    steps: int = 10,
    cache_root: Path = CACHE_ROOT,
) -> tuple[models.Classifier, str]:
    """``name`` adversarially trained with advlab's own ``pgd`` recipe (Madry et al. 2018),
    fine-tuned from the normally trained :func:`trained_model`; one line saying where it came
    from. Cached in ``runs/bench/<name>-pgd/``.

    One ``train`` call (one epoch, Adam lr 1e-3, batch 64, cosine) per eps of ``schedule``,
    PGD-``steps`` with step eps/7.5 (0.04 at eps 0.3), random start, crafted in eval mode, on the
    first ``train_limit`` training images. The eps curriculum is the only thing the recipe
    cannot do by itself: LeNet trained at eps 0.3 from the start stays near chance (see
    :class:`BenchPGDTraining`).
    """
    train_set = load_split("train", data_dir)
    if train_limit:
        train_set = train_set.subset(slice(0, train_limit))
    want = {
        "model": name,
        "recipe": "pgd",
        "init": "trained_model(robust=False, train_limit=0)",
        "dataset": train_set.name,
        "train_images": len(train_set),
        "eps_schedule": list(schedule),
        "steps": steps,
        "lr": 1e-3,
    }
    folder = cache_root / f"{name}-pgd"
    try:
        if models.read_meta(folder).get("extra") == want:
            return models.load(folder, device=device), f"loaded from {folder}"
    except models.CheckpointError:
        pass
    clf, _ = trained_model(name, robust=False, train_limit=0, device=device, data_dir=data_dir)
    cfg = TrainConfig(
        epochs=1, batch_size=64, lr=1e-3, schedule="cosine", device=str(device), amp=False
    )
    t0 = time.perf_counter()
    result = None
    for eps in schedule:
        recipe = build_recipe("pgd", {"eps": eps, "steps": steps, "step_size": eps / 7.5})
        result = train(clf, train_set, None, cfg, recipe=recipe)
    took = time.perf_counter() - t0
    last = result.last if result is not None else {}
    models.save(
        clf,
        folder,
        dataset=train_set.name,
        recipe={"name": "pgd", "eps_schedule": list(schedule), "steps": steps},
        metrics=last,
        extra=want,
    )
    return clf, (
        f"PGD-trained (advlab 'pgd' recipe, eps {'/'.join(f'{e:g}' for e in schedule)}, one "
        f"epoch each) on {train_set.name} x{len(train_set)} in {took:.0f}s (train acc on PGD "
        f"examples {last.get('train_acc', float('nan')):.3f}), cached in {folder}"
    )
