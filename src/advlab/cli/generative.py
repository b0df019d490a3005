"""``advlab train --defense magnet|defense-gan --base DIR --out DIR``: train a defense's
generative parts around a trained classifier and save the defended checkpoint.

- ``magnet``: the paper's autoencoders (reformer + detectors) trained on clean images,
  thresholds calibrated on the validation split (:func:`advlab.defenses.magnet_fit.fit_magnet`);
  ``--epochs`` trains the autoencoders; ``--set recipe_args={fpr=0.001, pool=8}`` etc. pass
  through. A checkpoint is written after every epoch in ``--out/magnet.partial``: a killed run
  continues with the same command plus ``--resume``.
- ``defense-gan`` (options in ``--set recipe_args={...}``): a WGAN-GP generator
  (:func:`advlab.defenses.gan.train_gan`: ``--epochs``, or ``gan_iterations`` / ``time_limit``
  and its other options), then the projection (``iterations`` = L, ``restarts`` = R, ``lr_z``,
  ``momentum``, ``decay_at``, ``init_std``); ``variant="rec"`` also trains a fresh copy of the
  base architecture on reconstructions (Defense-GAN-Rec) for ``classifier_epochs`` (2) epochs,
  on the first ``rec_train_n`` training images (default all; at L = 200, R = 10 a CPU projects
  ~1,000 images in minutes).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from advlab import data as aldata
from advlab import models as almodels
from advlab.cli.common import CLIError
from advlab.defenses.defense_gan import DefenseGAN, reconstruct
from advlab.defenses.gan import train_gan
from advlab.defenses.magnet_fit import MagNetCheckpointError, fit_magnet
from advlab.defenses.training import TrainConfig, train
from advlab.utils.device import resolve_device
from advlab.utils.files import atomic_write_json

logger = logging.getLogger("advlab")
GENERATIVE = ("magnet", "defense-gan")
PARTIAL = "magnet.partial"  # MagNet's per-epoch training checkpoint inside --out
_PROJECTION = ("iterations", "restarts", "lr_z", "momentum", "decay_at", "init_std", "variant")


def _split(options: dict[str, Any], func: Callable[..., Any], what: str) -> dict[str, Any]:
    """The entries of ``options`` that ``func`` takes; raise on the rest."""
    known = set(inspect.signature(func).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        raise CLIError(
            f"{what}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return options


def train_generative(args: argparse.Namespace, cfg: dict[str, Any]) -> int:
    """Entry from ``advlab train`` when ``--defense`` names a generative defense."""
    name = str(cfg["recipe"])
    if args.base is None:
        raise CLIError(f"--defense {name} needs --base CHECKPOINT (the classifier to defend)")
    partial = args.out / PARTIAL
    if args.out.exists() and any(args.out.iterdir()):
        resumable = name == "magnet" and [p.name for p in args.out.iterdir()] == [PARTIAL]
        if not resumable:
            raise CLIError(f"{args.out} is not empty; choose a new --out folder")
        if not getattr(args, "resume", False):
            raise CLIError(
                f"{args.out} holds an interrupted MagNet training ({PARTIAL}); add --resume to "
                "continue it, or choose a new --out folder"
            )
    device = resolve_device(cfg["device"])
    base = almodels.load(args.base, device=device)
    meta = almodels.read_meta(args.base)
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise CLIError("the base checkpoint does not record its dataset; pass --dataset")
    full = aldata.load(dataset, "train", data_dir=cfg["data_dir"])
    if cfg["limit"] is not None:
        full = full.subset(slice(0, int(cfg["limit"])))
    tr, va = aldata.train_val_split(full, float(cfg["val_fraction"]), seed=int(cfg["seed"]))
    options = dict(cfg["recipe_args"])
    explicit = {k: cfg[k] for k in ("epochs", "batch_size", "lr") if getattr(args, k) is not None}
    t0 = time.perf_counter()
    if name == "magnet":
        kw = _split({**explicit, **options}, fit_magnet, "magnet")
        try:  # a checkpoint per epoch in --out/magnet.partial; --resume continues it
            defended: Any = fit_magnet(
                base, tr, va, seed=int(cfg["seed"]), device=device, checkpoint_dir=partial, **kw
            )
        except MagNetCheckpointError as err:
            raise CLIError(f"cannot resume: {err}") from err
    else:
        fresh = almodels.load(args.base, device=device)  # the architecture, re-initialized
        defended = _defense_gan(base, fresh, tr, cfg, explicit, options, device)
    seconds = time.perf_counter() - t0
    folder = almodels.save(
        defended.eval(),
        args.out,
        dataset=dataset,
        recipe={"name": name, **options, **explicit},
        metrics={"train_seconds": seconds},
        extra={"base": str(args.base)},
    )
    atomic_write_json(folder / "config.json", {**cfg, "base": str(args.base), "out": str(folder)})
    shutil.rmtree(partial, ignore_errors=True)  # the model is saved: the checkpoint can go
    print(f"{name} around {args.base}: trained in {seconds:.0f} s -> {folder}")
    return 0


def _defense_gan(
    base: almodels.Classifier,
    fresh: almodels.Classifier,
    tr: aldata.TensorData,
    cfg: dict[str, Any],
    explicit: dict[str, Any],
    options: dict[str, Any],
    device: torch.device,
) -> DefenseGAN:
    projection = {k: options.pop(k) for k in _PROJECTION if k in options}
    if "lr_z" in projection:
        projection["lr"] = projection.pop("lr_z")
    classifier_epochs = int(options.pop("classifier_epochs", 2))
    rec_train_n = options.pop("rec_train_n", None)
    if "gan_iterations" in options:
        options["iterations"] = options.pop("gan_iterations")
    gan_kw = _split({**explicit, **options}, train_gan, "defense-gan (GAN training)")
    logger.info("training the WGAN-GP generator on %d images", len(tr))
    generator = train_gan(tr, seed=int(cfg["seed"]), device=device, **gan_kw)
    defended = DefenseGAN(base, generator, **projection)
    if defended.variant != "rec":
        return defended
    logger.info(
        "Defense-GAN-Rec: projecting %d training images, then training a classifier", len(tr)
    )
    source = tr if rec_train_n is None else tr.subset(slice(0, int(rec_train_n)))
    rec = reconstruct(defended, source)
    if not isinstance(rec, aldata.TensorData):
        raise CLIError("reconstruct() returned tensors for a dataset")  # not expected
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg["seed"]))
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    config = TrainConfig(epochs=classifier_epochs, seed=int(cfg["seed"]), device=str(device))
    train(fresh, rec, None, config)
    return DefenseGAN(fresh.to(device).eval(), generator, **projection)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--base",
        type=Path,
        help="--defense magnet|defense-gan: the trained classifier checkpoint to defend",
    )
