"""``advlab report DIR [--out OUT]``: re-render a saved report.json without recomputing."""

from __future__ import annotations

import argparse
from pathlib import Path

from advlab.cli.common import CLIError
from advlab.reporting import load_report, render


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "report", help="render report.json into Markdown, HTML, figures and samples.csv"
    )
    p.add_argument("dir", type=Path, help="folder holding report.json (or the file itself)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: DIR)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = load_report(args.dir)
    except ValueError as e:
        raise CLIError(str(e)) from None
    out = args.out or (args.dir if args.dir.is_dir() else args.dir.parent)
    for path in render(report, out).values():
        print(path)
    return 0
