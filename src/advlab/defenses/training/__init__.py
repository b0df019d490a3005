"""One training loop (``train``) that every training-time defense plugs into as a ``Recipe``."""

from advlab.defenses.training.config import TrainConfig
from advlab.defenses.training.loop import TrainResult, train
from advlab.defenses.training.recipe import Recipe, Standard, build_recipe, recipes

__all__ = [
    "Recipe",
    "Standard",
    "TrainConfig",
    "TrainResult",
    "build_recipe",
    "recipes",
    "train",
]
