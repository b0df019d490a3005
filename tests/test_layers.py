"""Imports point one way (DESIGN §2): a lower layer never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "advlab"
# types, registry, utils -> data, models -> attacks -> defenses -> evaluation -> reporting -> cli
RANK = {
    "types": 0,
    "registry": 0,
    "utils": 0,
    "_version": 0,
    "data": 1,
    "models": 1,
    "attacks": 2,
    "defenses": 3,
    "evaluation": 4,
    "reporting": 5,
    "reproduce": 6,
    "demo": 6,
    "serve": 6,
    "cli": 7,
}


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("advlab."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("advlab."))
    return found


FILES = [p for p in SRC.rglob("*.py") if _layer(p) in RANK]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_imports(path: Path) -> None:
    own = RANK[_layer(path)]
    bad = [m for m in _imports(path) if m in RANK and RANK[m] > own]
    assert not bad, f"{path.relative_to(SRC)} imports higher layer(s) {bad}"


def test_nothing_imports_cli() -> None:
    users = [
        p for p in FILES if _layer(p) != "cli" and "cli" in _imports(p) and p.name != "__main__.py"
    ]
    assert not users
