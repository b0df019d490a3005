"""The ``advlab`` entry point: parse, dispatch, and turn bad input into a one-line error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from advlab._version import __version__
from advlab.cli import (
    attack,
    defend,
    demo,
    evaluate,
    listing,
    reproduce,
    serve,
    train,
    universal,
    visualize,
)
from advlab.cli import report as report_cmd
from advlab.cli.common import CLIError, setup_logging
from advlab.models import GradientAccessError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="advlab",
        description="Adversarial machine learning for PyTorch image classifiers.",
    )
    p.add_argument("--version", action="version", version=f"advlab {__version__}")
    p.add_argument(
        "-q",
        "--quiet",
        action="store_const",
        const=-1,
        dest="verbosity",
        default=0,
        help="only warnings and results",
    )
    p.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        listing,
        train,
        defend,
        evaluate,
        attack,
        universal,
        visualize,
        reproduce,
        serve,
        demo,
    ):
        module.add_parser(sub)
    report_cmd.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbosity)
    try:
        status: int = args.run(args)
    except (CLIError, ValueError, TypeError, FileNotFoundError, GradientAccessError) as e:
        if args.verbosity > 0:  # -v: show the traceback too
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"advlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"advlab {args.command}: interrupted; finished epochs/batches are saved",
            file=sys.stderr,
        )
        return 130
    return status


if __name__ == "__main__":
    raise SystemExit(main())
