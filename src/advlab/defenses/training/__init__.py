"""One training loop (``train``) that every training-time defense plugs into as a ``Recipe``."""

from advlab.defenses.training import adversarial as _adversarial  # noqa: F401  (fgsm-mix, noise, pgd)
from advlab.defenses.training import distill as _distill  # noqa: F401  (distill, softmax-t)
from advlab.defenses.training import ensemble as _ensemble  # noqa: F401  (ensemble)
from advlab.defenses.training import fast as _fast  # noqa: F401  (fast)
from advlab.defenses.training import trades as _trades  # noqa: F401  (trades)
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
