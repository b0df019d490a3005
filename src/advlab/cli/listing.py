"""``advlab list {models,datasets,recipes,defenses,attacks,suites}``."""

from __future__ import annotations

import argparse
import inspect

from advlab.attacks import attacks
from advlab.data import datasets
from advlab.defenses import defenses, recipes
from advlab.evaluation import suites
from advlab.models import describe, models

KINDS = ("models", "datasets", "recipes", "defenses", "attacks", "suites")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "list", help="list registered models, datasets, recipes, defenses, attacks or suites"
    )
    p.add_argument("kind", choices=KINDS)
    p.set_defaults(run=run)


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def run(args: argparse.Namespace) -> int:
    if args.kind == "models":
        rows = [(name, describe(name)) for name in models.names()]
    elif args.kind == "datasets":
        rows = [(name, _first_line(datasets.get(name))) for name in datasets.names()]
    elif args.kind == "recipes":
        rows = [(name, _first_line(recipes.get(name))) for name in recipes.names()]
    elif args.kind == "defenses":
        rows = [(name, _first_line(defenses.get(name))) for name in defenses.names()]
        rows = rows or [("(none)", "")]
    elif args.kind == "suites":
        rows = []
        for name in suites.names():
            suite = suites.build(name)
            mode = "cascade" if suite.cascade else "each on every sample"
            rows.append((name, f"{', '.join(a.title for a in suite.attacks)} ({mode})"))
    else:
        rows = [(name, _first_line(attacks.get(name))) for name in attacks.names()]
    width = max(len(name) for name, _ in rows)
    for name, doc in rows:
        print(f"{name:<{width}}  {doc}")
    return 0
