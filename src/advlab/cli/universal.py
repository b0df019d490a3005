"""``advlab universal``: fit a universal adversarial perturbation to a checkpoint and measure it
on held-out test images against random noise of the same norm."""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path
from typing import Any

import torch

from advlab import data as aldata
from advlab import models as almodels
from advlab._version import __version__
from advlab.attacks.universal import UniversalPerturbation
from advlab.cli.common import CLIError, add_common, add_set, parse_overrides
from advlab.reporting.universal import plot_perturbation
from advlab.utils.device import resolve_device
from advlab.utils.files import atomic_write_json

SCHEMA_VERSION = 1


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "universal",
        help="fit a universal perturbation; saves it, a summary vs random noise, and a figure",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--eps", type=float, required=True, help="radius in pixel units")
    p.add_argument("--norm", choices=["linf", "l2"], default="linf")
    p.add_argument("--method", choices=["deepfool", "sgd"], default="deepfool")
    p.add_argument("--n", type=int, default=1000, help="first N train images to fit on")
    p.add_argument("--n-test", type=int, default=1000, help="first N test images to measure on")
    p.add_argument("--target-fooling-rate", type=float, help="stop at this rate (default 0.8)")
    p.add_argument("--max-epochs", type=int, help="passes over the fitting images (default 10)")
    p.add_argument("--batch-size", type=int, help="images per update (default 32)")
    p.add_argument("--lr", type=float, help="SGD step length (default eps/10)")
    p.add_argument("--dataset", help="default: the checkpoint's dataset")
    add_set(p, "overshoot=0.05")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_common(p)
    p.set_defaults(run=run)


def _build(args: argparse.Namespace) -> UniversalPerturbation:
    kw: dict[str, Any] = {
        "eps": args.eps,
        "norm": args.norm,
        "method": args.method,
        "seed": args.seed if args.seed is not None else 0,
    }
    for key in ("target_fooling_rate", "max_epochs", "batch_size", "lr"):
        if (value := getattr(args, key)) is not None:
            kw[key] = value
    kw.update(parse_overrides(args.overrides))
    known = list(inspect.signature(UniversalPerturbation).parameters)
    unknown = sorted(set(kw) - set(known))
    if unknown:
        raise CLIError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return UniversalPerturbation(**kw)


def run(args: argparse.Namespace) -> int:
    uap = _build(args)
    for flag, value in (("--n", args.n), ("--n-test", args.n_test)):
        if value < 1:
            raise CLIError(f"{flag} must be >= 1; got {value}")
    meta = almodels.read_meta(args.checkpoint)
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise CLIError("the checkpoint does not record its dataset; pass --dataset")
    device = resolve_device(args.device)
    clf = almodels.load(args.checkpoint, device=device)
    fit_set = aldata.load(dataset, "train", data_dir=args.data_dir).subset(slice(0, args.n))
    test = aldata.load(dataset, "test", data_dir=args.data_dir).subset(slice(0, args.n_test))
    x_fit, x_test, y_test = fit_set.x.to(device), test.x.to(device), test.y.to(device)

    t0 = time.perf_counter()
    uap.fit(clf, x_fit, progress=True)
    seconds = time.perf_counter() - t0
    fool_test = uap.fooling_rate(clf, x_test)
    noise_test = uap.noise_fooling_rate(clf, x_test)
    with torch.no_grad():
        acc_clean = float((clf.predict(x_test) == y_test).float().mean())
        acc_pert = float((clf.predict(uap.apply(x_test)) == y_test).float().mean())
    v = uap.perturbation.flatten().float()

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    uap.save(out)
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "command": "universal",
        "config": uap.config(),
        "checkpoint": str(args.checkpoint),
        "dataset": dataset,
        "n_fit": int(x_fit.shape[0]),
        "n_test": int(x_test.shape[0]),
        "epochs": len(uap.history),
        "history": uap.history,
        "fooling_rate_fit": uap.fooling_rate(clf, x_fit),
        "fooling_rate_test": fool_test,
        "noise_fooling_rate_test": noise_test,
        "clean_accuracy_test": acc_clean,
        "accuracy_perturbed_test": acc_pert,
        "perturbation_norms": {"linf": float(v.abs().max()), "l2": float(v.norm())},
        "seconds": seconds,
        "device": str(device),
        "advlab_version": __version__,
        "torch_version": torch.__version__,
    }
    atomic_write_json(out / "universal.json", summary)
    title = f"universal ({uap.method}), {uap.norm} eps={uap.eps:g}: fools {100 * fool_test:.1f}%"
    plot_perturbation(uap.perturbation, out / "perturbation.png", title)
    print(
        f"universal perturbation ({uap.method}, {uap.norm} eps={uap.eps:g}) on {dataset}: "
        f"fooling rate {100 * fool_test:.1f}% on {summary['n_test']} test images vs "
        f"{100 * noise_test:.1f}% for random noise of the same norm (fit on "
        f"{summary['n_fit']} images, {summary['epochs']} passes, {seconds:.1f} s); "
        f"accuracy {100 * acc_clean:.1f}% -> {100 * acc_pert:.1f}%; wrote {out}"
    )
    return 0
