"""Deterministic train/validation split of a ``TensorData``."""

from __future__ import annotations

import torch

from advlab.data._rng import generator
from advlab.data.tensor_data import TensorData


def train_val_split(
    data: TensorData, val_fraction: float = 0.1, seed: int = 0
) -> tuple[TensorData, TensorData]:
    """Split ``data`` into disjoint ``(train, val)`` parts.

    ``round(val_fraction * len(data))`` samples, chosen by a permutation that is a pure function
    of ``seed`` (local generator), go to ``val``; both parts keep the original sample order.
    ``val_fraction`` must be in (0, 1) and leave at least one sample on each side.
    """
    if not isinstance(data, TensorData):
        raise TypeError(f"data must be a TensorData; got {type(data).__name__}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise TypeError(f"val_fraction must be a float in (0, 1); got {val_fraction!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
    n = len(data)
    n_val = round(val_fraction * n)
    if not 0 < n_val < n:
        raise ValueError(
            f"val_fraction={val_fraction} of {n} samples gives {n_val} validation samples; "
            "need at least one sample in each part"
        )
    perm = torch.randperm(n, generator=generator(seed))
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[perm[:n_val]] = True
    return data.subset(~is_val), data.subset(is_val)
