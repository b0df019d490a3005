"""advlab: adversarial machine learning for PyTorch image classifiers.

Importing advlab has no side effects (no downloads, no global state changes).
"""

from advlab import data, models
from advlab._version import __version__
from advlab.models import Classifier

__all__ = ["Classifier", "__version__", "data", "models"]
