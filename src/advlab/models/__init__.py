"""Models: the ``Classifier`` wrapper, the zoo of named presets, and checkpoints."""

from advlab.models.checkpoint import CheckpointError, load, read_meta, save
from advlab.models.classifier import Classifier
from advlab.models.eot import eot
from advlab.models.zoo import build, describe, models

__all__ = [
    "CheckpointError",
    "Classifier",
    "build",
    "describe",
    "eot",
    "load",
    "models",
    "read_meta",
    "save",
]
