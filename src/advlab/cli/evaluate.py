"""``advlab eval``: robustness of a checkpoint under an attack suite (report.json, report.md,
report.html, figures, per-sample CSV), or clean accuracy only with ``--suite none``."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from advlab import data as aldata
from advlab import models as almodels
from advlab.cli.common import CLIError, add_common
from advlab.evaluation import evaluate, evaluate_clean, suites
from advlab.reporting import render
from advlab.utils import dist

#: default eps per dataset family and norm, in pixel units (the literature's usual budgets)
DEFAULT_EPS = {
    ("cifar10", "linf"): [8 / 255],
    ("cifar10", "l2"): [0.5],
    ("*", "linf"): [0.1, 0.2, 0.3],
    ("*", "l2"): [1.0, 2.0],
}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint: robustness under an attack suite, or clean accuracy",
        description="Robustness of a checkpoint under an attack suite, with the gradient-masking "
        "audit; writes report.json, report.md, report.html, figures/ and samples.csv to --out. "
        "Running it again with the same --out resumes an interrupted run.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--dataset", help="default: the dataset the checkpoint was trained on")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--n", type=int, default=None, help="only the first N samples")
    p.add_argument(
        "--suite",
        default="quick",
        help=f"{', '.join(suites.names())}, a TOML file with a custom suite, or 'none' for "
        "clean accuracy only (default quick)",
    )
    p.add_argument("--eps", default=None, help="comma-separated budgets (default by dataset)")
    p.add_argument("--norm", default="linf", choices=["linf", "l2"])
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--no-audit", action="store_true", help="skip the gradient-masking audit")
    p.add_argument("--audit-n", type=int, default=200, help="samples the audit probes (200)")
    p.add_argument(
        "--transfer-from",
        default=None,
        help="comma-separated checkpoint folders of source models for transfer attacks",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: <checkpoint>/eval-<suite>; eval.json in the checkpoint "
        "folder for --suite none)",
    )
    add_common(p)
    p.set_defaults(run=run)


def _eps(text: str | None, dataset: str, norm: str) -> list[float]:
    if text is None:
        return DEFAULT_EPS.get((dataset, norm), DEFAULT_EPS[("*", norm)])
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"--eps must be comma-separated numbers; got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise CLIError(f"--eps needs numbers > 0; got {text!r}")
    return values


def _suite(text: str) -> str | dict[str, Any]:
    if text in suites.names():
        return text
    path = Path(text)
    if path.suffix == ".toml" or path.is_file():
        try:
            table = tomllib.loads(path.read_text())
        except OSError as e:
            raise CLIError(f"cannot read suite file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise CLIError(f"suite file {path} is not valid TOML: {e}") from None
        return dict(table.get("suite", table))
    raise CLIError(f"unknown suite {text!r}; known: {', '.join(suites.names())}, or a .toml file")


def run(args: argparse.Namespace) -> int:
    meta = almodels.read_meta(args.checkpoint)
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise CLIError("the checkpoint does not record its dataset; pass --dataset")
    if args.n is not None and args.n < 1:
        raise CLIError(f"--n must be >= 1; got {args.n}")
    clf = almodels.load(args.checkpoint)
    data = aldata.load(dataset, args.split, data_dir=args.data_dir)
    if args.n is not None:
        data = data.subset(slice(0, args.n))
    if args.suite == "none":
        clean = evaluate_clean(clf, data, device=args.device or "auto")
        path = clean.to_json(Path(args.out or args.checkpoint) / "eval.json")
        print(
            f"clean accuracy {clean.accuracy:.4f} on {clean.n} {dataset}/{args.split}; wrote {path}"
        )
        return 0
    suite = _suite(args.suite)
    name = suite if isinstance(suite, str) else str(suite.get("name", "custom"))
    out = args.out or args.checkpoint / f"eval-{name}"
    sources = {}
    for folder in (args.transfer_from or "").split(","):
        if folder.strip():
            sources[Path(folder.strip()).name] = almodels.load(folder.strip())
    with dist.process_group(args.device or "auto"):
        report = evaluate(
            clf,
            data,
            eps=_eps(args.eps, dataset, args.norm),
            suite=suite,
            norm=args.norm,
            batch_size=args.batch_size,
            seed=0 if args.seed is None else args.seed,
            device=args.device or "auto",
            state_dir=Path(out) / "state",
            audit=not args.no_audit,
            audit_n=args.audit_n,
            transfer_from=sources or None,
            model_name=meta.get("preset") or args.checkpoint.name,
            data_name=dataset,
            split=args.split,
            extra_config={"checkpoint": str(args.checkpoint)},
        )
        if dist.is_main():
            report.to_json(Path(out) / "report.json")
            render(report, out)
            print(report.summary())
            print(f"wrote {out}/report.json, report.md, report.html")
    return 0
