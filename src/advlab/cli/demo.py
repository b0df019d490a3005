"""``advlab demo``: the README's main job.

Trains (or reuses its cached checkpoint) a small CNN on MNIST, falling back to scikit-learn's
bundled 8×8 digits when MNIST is neither on disk nor downloadable, and reports its clean test
accuracy. Attack demonstrations join it when the attack engine lands.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from advlab import data as aldata
from advlab import models as almodels
from advlab.cli.common import add_common
from advlab.defenses.training import TrainConfig, train
from advlab.evaluation import evaluate_clean

logger = logging.getLogger("advlab")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo", help="train and evaluate a small MNIST model (offline fallback: bundled digits)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="default runs/demo")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--offline", action="store_true", help="never download; use digits if MNIST is not on disk"
    )
    add_common(p)
    p.set_defaults(run=run)


def _load(data_dir: str | None, offline: bool) -> tuple[aldata.TensorData, aldata.TensorData]:
    try:
        return (
            aldata.load("mnist", "train", data_dir=data_dir, download=not offline),
            aldata.load("mnist", "test", data_dir=data_dir, download=not offline),
        )
    except (aldata.DatasetNotFoundError, aldata.DataIntegrityError) as e:
        logger.warning(
            "MNIST unavailable (%s); using scikit-learn's bundled 8x8 digits",
            str(e).splitlines()[0],
        )
        return aldata.load("digits", "train"), aldata.load("digits", "test")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    seed = 0 if args.seed is None else args.seed
    train_full, test = _load(args.data_dir, args.offline)
    tr, va = aldata.train_val_split(train_full, 0.1, seed=seed)
    is_digits = train_full.name == "digits"
    cfg = TrainConfig(
        epochs=args.epochs * (15 if is_digits else 1),
        batch_size=64 if is_digits else 128,
        lr=3e-3 if is_digits else 1e-3,
        seed=seed,
        device=args.device or "auto",
    )
    torch.manual_seed(seed)
    clf = almodels.build(
        "lenet", input_shape=train_full.input_shape, num_classes=train_full.num_classes
    )
    out = args.out / f"lenet-{train_full.name}"
    logger.info("demo: lenet on %s (%d training images) -> %s", train_full.name, len(tr), out)
    train(clf, tr, va, cfg, out=out, resume=True, dataset=train_full.name)
    report = evaluate_clean(clf, test, device=cfg.device)
    report.to_json(out / "eval.json")
    print(
        f"lenet on {train_full.name}: clean test accuracy {100 * report.accuracy:.2f}% "
        f"({report.n} images), error {100 * (1 - report.accuracy):.2f}%; "
        f"{time.perf_counter() - t0:.0f} s; checkpoint {out}"
    )
    return 0
