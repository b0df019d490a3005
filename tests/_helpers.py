"""Test helpers shared by several test files (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from advlab.defenses.training import Recipe
from advlab.models import Classifier


class InterruptAt(Recipe):
    """Wraps a recipe and raises KeyboardInterrupt at global batch ``at`` (like Ctrl-C)."""

    def __init__(self, inner: Recipe, at: int) -> None:
        self.inner, self.at, self.seen = inner, at, 0

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt
        return self.inner.loss(model, x, y)

    def validate(self, model: Classifier, x: Tensor, y: Tensor) -> dict[str, float]:
        return self.inner.validate(model, x, y)

    def start_epoch(self, epoch: int) -> None:
        self.inner.start_epoch(epoch)

    def stop_reason(self, history: list[dict[str, float]]) -> str | None:
        return self.inner.stop_reason(history)

    def config(self) -> dict[str, Any]:
        return self.inner.config()
