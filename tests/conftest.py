"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from advlab import data, models
from advlab.data import TensorData
from advlab.defenses.training import TrainConfig, train
from advlab.models import Classifier

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# the team's verified copy beside the checkout, used when ADVLAB_DATA is not set
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("ADVLAB_PROGRESS", "0")  # no progress bars in test logs


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


@pytest.fixture(scope="session")
def digits_model() -> tuple[Classifier, TensorData]:
    """LeNet trained on scikit-learn's 8x8 digits (a few seconds) and the digits test split."""
    torch.manual_seed(0)
    train_set = data.load("digits", "train")
    clf = models.build("lenet", input_shape=(1, 8, 8), num_classes=10)
    cfg = TrainConfig(epochs=12, batch_size=64, lr=3e-3, schedule="cosine", device="cpu")
    train(clf, train_set, None, cfg)
    return clf, data.load("digits", "test")
