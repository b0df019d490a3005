"""Defenses: the training loop and its recipes, and defenses in front of a classifier
(input transformations, detectors, generative projections), each a ``Classifier``."""

from advlab.defenses.base import (
    GRADIENT_STORIES,
    Defended,
    DetectionAware,
    bpda,
    defenses,
    detection_aware,
)
from advlab.defenses.model_ensemble import ModelEnsemble
from advlab.defenses.preprocess import (
    JPEG,
    BitDepth,
    CropRescale,
    GaussianBlur,
    InputTransformDefense,
    MedianFilter,
    RandomResizePad,
)
from advlab.defenses.squeeze import FeatureSqueezing, NotFittedError
from advlab.defenses.training import Recipe, Standard, TrainConfig, TrainResult, recipes, train

__all__ = [
    "GRADIENT_STORIES",
    "JPEG",
    "BitDepth",
    "CropRescale",
    "Defended",
    "DetectionAware",
    "FeatureSqueezing",
    "GaussianBlur",
    "InputTransformDefense",
    "MedianFilter",
    "ModelEnsemble",
    "NotFittedError",
    "RandomResizePad",
    "Recipe",
    "Standard",
    "TrainConfig",
    "TrainResult",
    "bpda",
    "defenses",
    "detection_aware",
    "recipes",
    "train",
]
