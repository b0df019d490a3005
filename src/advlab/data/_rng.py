"""Seed derivation for local generators (the global RNG is never touched)."""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of ``keys`` (non-negative ints), well mixed so that
    e.g. ``(seed=0, epoch=1)`` and ``(seed=1, epoch=0)`` give unrelated streams."""
    for key in keys:
        if isinstance(key, bool) or not isinstance(key, int) or key < 0:
            raise ValueError(f"seeds and epochs must be non-negative ints; got {key!r}")
    state = np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


def generator(*keys: int) -> torch.Generator:
    """A new CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``keys``."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(*keys))
