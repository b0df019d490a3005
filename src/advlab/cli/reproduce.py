"""``advlab reproduce NAME|all [--quick] --out DIR`` and ``advlab reproduce --list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from advlab.cli.common import CLIError, add_common
from advlab.reproduce import reproductions
from advlab.reproduce import run as run_reproduction


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "reproduce",
        help="reproduce a seed deck's table: our numbers beside the paper's",
    )
    p.add_argument("name", nargs="?", help="a reproduction (see --list) or 'all'")
    p.add_argument("--list", action="store_true", help="list the reproductions and exit")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smaller models, fewer epochs and images, the same protocol (minutes on a CPU)",
    )
    p.add_argument("--out", type=Path, help="output folder (default runs/reproduce/NAME)")
    p.add_argument(
        "--cache",
        type=Path,
        help="folder of trained models and finished attack batches, reused between runs: a "
        "killed run started again with the same --cache resumes (default OUT/models); "
        "OUT/partial.md shows the cells finished so far",
    )
    add_common(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in reproductions.names():
            lines = (reproductions.get(name).__doc__ or "").strip().splitlines()
            print(f"{name:<16}  {lines[0] if lines else ''}")
        return 0
    if not args.name:
        raise CLIError("name a reproduction (advlab reproduce --list) or 'all'")
    names = reproductions.names() if args.name == "all" else [args.name]
    if args.name != "all":
        reproductions.get(args.name)  # unknown names list the known ones
    failed = []
    for name in names:
        out = args.out / name if (args.out and len(names) > 1) else args.out
        out = out or Path("runs") / "reproduce" / name
        try:
            doc = run_reproduction(
                name,
                out,
                quick=args.quick,
                device=args.device or "auto",
                seed=args.seed or 0,
                cache=args.cache,
                data_dir=args.data_dir,
                log=lambda m: print(m, file=sys.stderr),
            )
        except FileNotFoundError as err:
            if len(names) == 1:
                raise
            print(f"advlab reproduce {name}: skipped: {err}", file=sys.stderr)
            failed.append(name)
            continue
        misses = sum(1 for c in doc["cells"] if c["status"] == "miss")
        compared = sum(1 for c in doc["cells"] if c["status"])
        print(
            f"{name}: {compared - misses}/{compared} cells within tolerance, "
            f"{doc['seconds']:.0f} s -> {out / 'table.md'}"
        )
    return 1 if failed else 0
