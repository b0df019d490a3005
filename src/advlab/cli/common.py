"""Pieces shared by the subcommands: common options, config files, --set overrides, errors."""

from __future__ import annotations

import argparse
import logging
import tomllib
from pathlib import Path
from typing import Any


class CLIError(Exception):
    """A bad command line; ``main`` prints the message on one line and exits with status 2."""


def add_common(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    p.add_argument("--device", default=None, help="auto (default: cuda if available), cpu, cuda")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    if data:
        p.add_argument(
            "--data-dir",
            default=None,
            help="dataset root (default: $ADVLAB_DATA, else ~/.cache/advlab)",
        )


def add_set(p: argparse.ArgumentParser, example: str = "lr=0.01") -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one option (repeatable), e.g. --set {example}",
    )


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="TOML file of options")
    add_set(p)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b-c=[2]"]`` -> ``{"a": 1, "b_c": [2]}``; values are parsed as TOML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--set expects KEY=VALUE; got {item!r}")
        out[key.strip().replace("-", "_")] = parse_value(value.strip())
    return out


def parse_value(text: str) -> Any:
    """A TOML scalar/array/table (``3``, ``0.1``, ``true``, ``[1, 2]``) or else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def resolve(defaults: dict[str, Any], args: argparse.Namespace, keys: list[str]) -> dict[str, Any]:
    """Merge, later winning: ``defaults`` < ``--config`` file < explicit flags < ``--set``."""
    cfg = dict(defaults)
    if getattr(args, "config", None) is not None:
        try:
            cfg.update(tomllib.loads(args.config.read_text()))
        except OSError as e:
            raise CLIError(f"cannot read config file {args.config}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise CLIError(f"config file {args.config} is not valid TOML: {e}") from None
    for key in keys:
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    cfg.update(parse_overrides(getattr(args, "overrides", [])))
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise CLIError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}"
        )
    return cfg


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(message)s")
    logging.getLogger("advlab").setLevel(level)
