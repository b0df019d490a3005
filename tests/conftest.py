"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# the team's verified copy beside the checkout, used when ADVLAB_DATA is not set
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVLAB_PROGRESS", "0")


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Data root holding the real MNIST files (``<root>/mnist/*.gz``): ``$ADVLAB_DATA`` or the
    shared copy. Skips when absent locally; fails under CI (``CI=true``), where it must run."""
    candidates = [Path(p) for p in [os.environ.get("ADVLAB_DATA", "")] if p] + [SHARED_DATA]
    for root in candidates:
        if all((root / "mnist" / name).is_file() for name in MNIST_FILES):
            return root
    message = f"real MNIST not found under {', '.join(map(str, candidates))}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
