"""Restore every submodule's train/eval flag exactly, not just the top module's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def restored_modes(module: nn.Module) -> Iterator[None]:
    """Run the body, then give each submodule of ``module`` back its own ``training`` flag.

    ``module.train(was_training)`` would set every submodule to the top module's mode; a wrapper
    in train mode around a network in eval mode (or a net with a frozen, eval-mode part) would
    come back changed."""
    saved = [(m, m.training) for m in module.modules()]
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag
