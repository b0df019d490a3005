"""Training recipes: what loss one batch contributes. Later defenses subclass ``Recipe``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from advlab.models.classifier import Classifier
from advlab.registry import Registry


class Recipe(ABC):
    """How a batch becomes a loss. Subclasses override :meth:`loss` (and optionally
    :meth:`validate`, for extra validation metrics such as adversarial error).

    ``loss`` gets the model in train mode, a batch ``x`` ``(N, ...)`` in pixel units and labels
    ``y`` ``(N,)``; it returns the scalar loss to minimize and logits ``(N, K)`` for the
    running training accuracy: those of clean ``x`` when the loss has a clean term, else those
    of the inputs the loss trains on (the adversarial examples of ``pgd`` and ``fast``), so the
    metric costs no extra forward pass. It must leave no gradients in parameters other than
    those of the returned loss.
    """

    name = "recipe"

    @abstractmethod
    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Scalar loss and the logits ``(N, K)`` of the running accuracy for one batch."""

    def validate(self, model: Classifier, x: Tensor, y: Tensor) -> dict[str, float]:
        """Extra metrics on one validation batch (model in eval mode); summed over batches
        weighted by batch size and averaged by the loop. Default: none."""
        return {}

    def start_epoch(self, epoch: int) -> None:  # noqa: B027  (an optional hook)
        """Called by the loop before the first batch of every epoch (0-based). Default: nothing."""

    def stop_reason(self, history: list[dict[str, float]]) -> str | None:
        """Called after each epoch with the metrics so far; a returned reason stops training
        (e.g. catastrophic overfitting). Default: never."""
        return None

    def config(self) -> dict[str, Any]:
        """The recipe's hyperparameters, saved in checkpoints and run configs."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


recipes: Registry[Recipe] = Registry("training recipe")


@recipes.register("standard")
class Standard(Recipe):
    """Plain empirical risk minimization: cross-entropy on clean inputs."""

    name = "standard"

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = model.logits(x, check=False)
        return F.cross_entropy(logits, y), logits


def build_recipe(name: str, kwargs: dict[str, Any] | None = None) -> Recipe:
    """Build a registered recipe; unknown names or hyperparameters raise ``ValueError`` listing
    the known ones."""
    return recipes.build(name, **(kwargs or {}))
