"""The 8x8 handwritten digits bundled with scikit-learn (UCI "Optical Recognition of
Handwritten Digits", Alpaydin & Kaynak 1998): offline, always available.

1,797 images, 10 classes. Output: ``x`` float32 ``(N, 1, 8, 8)`` = pixel counts (0..16) / 16,
``y`` int64 ``(N,)``. scikit-learn ships no split, so advlab fixes one: a stratified 80/20
train/test split drawn with ``numpy.random.default_rng(DIGITS_SPLIT_SEED)`` (seed 0); within each
class a random 20% (rounded) goes to test. Train and test never overlap and keep the original
sample order. ``mean``/``std`` are the statistics of all 1,797 images.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch

from advlab.data.catalog import check_split, datasets
from advlab.data.tensor_data import TensorData

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3760,)


@lru_cache(maxsize=1)
def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images float32 (N, 8, 8) in [0, 1], labels int64 (N,), train index, test index)."""
    from sklearn.datasets import load_digits  # heavy import, only when asked for

    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0).astype(np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    is_test = np.zeros(labels.shape[0], dtype=bool)
    for cls in range(10):
        members = np.flatnonzero(labels == cls)
        n_test = round(DIGITS_TEST_FRACTION * members.size)
        is_test[rng.permutation(members)[:n_test]] = True
    return images, labels, np.flatnonzero(~is_test), np.flatnonzero(is_test)


@datasets.register("digits")
def digits(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> TensorData:
    """scikit-learn digits, 10 classes, (N, 1, 8, 8): 1,438 train / 359 test samples.
    ``data_dir`` and ``download`` are accepted for the common signature and ignored."""
    check_split(split)
    images, labels, train_idx, test_idx = _digits_split()
    index = train_idx if split == "train" else test_idx
    x = torch.from_numpy(images[index]).unsqueeze(1)  # (N, 1, 8, 8), a copy
    y = torch.from_numpy(labels[index])
    return TensorData(x=x, y=y, num_classes=10, name="digits", mean=DIGITS_MEAN, std=DIGITS_STD)
