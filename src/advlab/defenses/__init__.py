"""Defenses: the training loop and its recipes (adversarial training etc. build on it)."""

from advlab.defenses.training import Recipe, Standard, TrainConfig, TrainResult, recipes, train

__all__ = ["Recipe", "Standard", "TrainConfig", "TrainResult", "recipes", "train"]
