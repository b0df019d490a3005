"""Models: the ``Classifier`` wrapper, the zoo of named presets, and checkpoints."""

from advlab.models.checkpoint import CheckpointError, load, read_meta, save
from advlab.models.classifier import Classifier
from advlab.models.eot import eot
from advlab.models.query import GradientAccessError, QueryModel, query_access
from advlab.models.zoo import build, describe, models

__all__ = [
    "CheckpointError",
    "Classifier",
    "GradientAccessError",
    "QueryModel",
    "build",
    "describe",
    "eot",
    "load",
    "models",
    "query_access",
    "read_meta",
    "save",
]
