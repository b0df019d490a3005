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
from advlab.defenses.defense_gan import DefenseGAN, latent_attack, reconstruct
from advlab.defenses.gan import Generator, train_gan
from advlab.defenses.magnet import GrayBoxMagNet, MagNet, magnet
from advlab.defenses.magnet_ae import AutoEncoder
from advlab.defenses.magnet_fit import fit_autoencoder, fit_magnet
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
    "AutoEncoder",
    "BitDepth",
    "CropRescale",
    "Defended",
    "DefenseGAN",
    "DetectionAware",
    "FeatureSqueezing",
    "GaussianBlur",
    "Generator",
    "GrayBoxMagNet",
    "InputTransformDefense",
    "MagNet",
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
    "fit_autoencoder",
    "fit_magnet",
    "latent_attack",
    "magnet",
    "recipes",
    "reconstruct",
    "train",
    "train_gan",
]
