"""``advlab eval``: clean accuracy, per-class accuracy and confusion matrix of a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from advlab import data as aldata
from advlab import models as almodels
from advlab.cli.common import CLIError, add_common
from advlab.evaluation import evaluate_clean


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--dataset", help="default: the dataset the checkpoint was trained on")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--n", type=int, default=None, help="only the first N samples")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for eval.json (default: the checkpoint folder)",
    )
    add_common(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    meta = almodels.read_meta(args.checkpoint)
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise CLIError("the checkpoint does not record its dataset; pass --dataset")
    clf = almodels.load(args.checkpoint)
    data = aldata.load(dataset, args.split, data_dir=args.data_dir)
    if args.n is not None:
        if args.n < 1:
            raise CLIError(f"--n must be >= 1; got {args.n}")
        data = data.subset(slice(0, args.n))
    report = evaluate_clean(clf, data, device=args.device or "auto")
    out = args.out or args.checkpoint
    path = report.to_json(Path(out) / "eval.json")
    worst = min((a, i) for i, a in enumerate(report.per_class_accuracy) if a is not None)
    print(
        f"{meta.get('preset') or 'model'} on {dataset}/{args.split}: accuracy "
        f"{report.accuracy:.4f} on {report.n} images (worst class {worst[1]}: {worst[0]:.4f}); "
        f"wrote {path}"
    )
    return 0
