"""``advlab demo``: the README's main job.

Trains (or reuses its cached checkpoint) a small CNN on MNIST, falling back to scikit-learn's
bundled 8×8 digits when MNIST is neither on disk nor downloadable; reports its clean test
accuracy; attacks it with FGSM at the seeds' eps = 0.25 (all test images) and with PGD-40 (the
first 1,000); prints seed-style lines ("FGSM eps=0.25: error 89.4%, mean confidence 97.6%" in
Goodfellow et al. 2015, with our numbers) and saves the "x + eps·sign(∇) = wrong label" figure.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from torch import Tensor

from advlab import attacks
from advlab import data as aldata
from advlab import models as almodels
from advlab.attacks import AttackResult
from advlab.cli.common import add_common
from advlab.defenses.training import TrainConfig, train
from advlab.evaluation import attack_dataset, attack_summary, evaluate_clean
from advlab.reporting import plot_adversarial_grid
from advlab.utils.files import atomic_write_json

logger = logging.getLogger("advlab")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo", help="train a small MNIST CNN and attack it (offline fallback: bundled digits)"
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
        epochs=args.epochs * (15 if is_digits else 1), seed=seed, device=args.device or "auto"
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
        f"lenet on {train_full.name}: clean test error {100 * (1 - report.accuracy):.2f}% "
        f"({report.n} test images)"
    )
    device = clf.device
    with torch.no_grad():
        clean_pred = clf.predict(test.x.to(device)).cpu()
    runs = [
        (attacks.build("fgsm", eps=0.25), len(test)),
        (
            attacks.build("pgd", eps=0.25, steps=40, step_size=0.01, early_stop=True),
            min(1000, len(test)),
        ),
    ]
    for atk, n in runs:
        res, seconds = attack_dataset(clf, atk, test.x[:n], test.y[:n], device=device)
        summary = attack_summary(res, test.x[:n], clean_pred[:n], seconds, atk)
        atomic_write_json(out / f"{atk.name}.json", summary)
        conf = summary["mean_confidence_on_errors"]
        print(
            f"{atk.name.upper()} eps=0.25 ({n} images): error "
            f"{100 * summary['error_under_attack']:.1f}%, mean confidence on its errors "
            f"{100 * (conf or 0):.1f}%, mean confidence {100 * summary['mean_confidence_adv']:.1f}%"
            f" [{seconds:.1f} s]"
        )
        if atk.name == "fgsm":
            _figure(out / "fgsm.png", test, res, clean_pred)
    print(f"done in {time.perf_counter() - t0:.0f} s; outputs in {out}")
    return 0


def _figure(path: Path, test: aldata.TensorData, res: AttackResult, clean_pred: Tensor) -> None:
    """The seed decks' picture: a correctly classified digit + eps·sign(∇) = a wrong label."""
    fooled = ((clean_pred == test.y[: len(res)]) & res.success).nonzero().squeeze(1)
    i = int(fooled[0]) if fooled.numel() else 0
    p_adv = torch.softmax(res.logits_adv[i : i + 1].float(), 1)[0]
    names = test.class_names
    plot_adversarial_grid(
        test.x[i : i + 1],
        res.x_adv[i : i + 1],
        [f"{names[int(clean_pred[i])]}"],
        [f"{names[int(p_adv.argmax())]} ({100 * float(p_adv.max()):.1f}%)"],
        path,
        title="x + 0.25·sign(∇x J(x, y)) = wrong label (FGSM)",
    )
    logger.info("figure: %s", path)
