"""``advlab defend NAME --checkpoint DIR --out DIR``: put a defense in front of a checkpoint.

The result is a checkpoint folder like any other (``advlab eval``/``attack``/``report`` take
it); its ``model.json`` records the defense and its bases. Defenses with learned parts are
trained by ``advlab train --defense magnet|defense-gan --base DIR`` (:mod:`advlab.cli.generative`);
this command builds the rest (input transformations, model ensembles) and calibrates detectors
that only need a threshold (feature squeezing).
"""

from __future__ import annotations

import argparse
import inspect
import logging
from pathlib import Path
from typing import Any

from advlab import data as aldata
from advlab import models as almodels
from advlab.cli.common import CLIError, add_common, add_set, parse_overrides
from advlab.defenses import Defended, defenses
from advlab.utils.device import resolve_device

logger = logging.getLogger("advlab")
TRAINED = ("magnet", "defense-gan")  # need `advlab train --defense NAME --base DIR`


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "defend",
        help="wrap a checkpoint with a defense (advlab list defenses); writes a new checkpoint",
    )
    p.add_argument("name", help="defense name (advlab list defenses)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        required=True,
        help="base checkpoint folder (repeat for the members of an ensemble)",
    )
    add_set(p, "quality=75")
    p.add_argument(
        "--fpr",
        type=float,
        default=0.05,
        help="detectors: target false-positive rate on clean validation data (default 0.05)",
    )
    p.add_argument(
        "--fit-n",
        type=int,
        default=2000,
        help="detectors: clean validation images used to set the threshold (default 2000)",
    )
    p.add_argument("--dataset", help="default: the first checkpoint's dataset")
    p.add_argument("--out", type=Path, required=True, help="output checkpoint folder")
    add_common(p)
    p.set_defaults(run=run)


def _validation(dataset: str, n: int, data_dir: str | None) -> aldata.TensorData:
    """The last ``n`` training images: held out from neither training nor testing exactly, so
    the command says which images calibrate the threshold."""
    full = aldata.load(dataset, "train", data_dir=data_dir)
    n = min(n, len(full))
    return full.subset(slice(len(full) - n, len(full)))


def run(args: argparse.Namespace) -> int:
    if args.name in TRAINED:
        raise CLIError(
            f"{args.name} has trained parts: use advlab train --defense {args.name} "
            "--base CHECKPOINT --out DIR"
        )
    factory = defenses.get(args.name)  # unknown names list the known ones
    options = parse_overrides(args.overrides)
    if args.fit_n < 1:
        raise CLIError(f"--fit-n must be >= 1; got {args.fit_n}")
    device = resolve_device(args.device)
    bases = [almodels.load(c, device=device) for c in args.checkpoint]
    meta = almodels.read_meta(args.checkpoint[0])
    dataset = args.dataset or meta.get("dataset")
    try:
        defended = factory(*bases, **options)
    except TypeError as err:
        known = [k for k in inspect.signature(factory).parameters if k not in ("base", "members")]
        raise CLIError(f"{args.name}: {err}; its options: {', '.join(known)}") from None
    if not isinstance(defended, Defended):
        raise CLIError(f"{args.name} did not build a defense")
    fitted: dict[str, Any] = {}
    fit = getattr(defended, "fit", None)
    if callable(fit):
        if not dataset:
            raise CLIError("the checkpoint does not record its dataset; pass --dataset")
        val = _validation(dataset, args.fit_n, args.data_dir)
        threshold = fit(val.x.to(device), fpr=args.fpr)
        fitted = {"fpr": args.fpr, "fit_n": len(val), "threshold": float(threshold)}
        logger.info(
            "calibrated %s on %d clean images: threshold %.4g",
            args.name,
            len(val),
            fitted["threshold"],
        )
    folder = almodels.save(
        defended.eval(),
        args.out,
        dataset=dataset,
        extra={"bases": [str(c) for c in args.checkpoint], "options": options, **fitted},
    )
    print(f"{args.name} ({defended.gradient} gradients) around {len(bases)} model(s) -> {folder}")
    return 0
