"""advlab: adversarial machine learning for PyTorch image classifiers.

Importing advlab has no side effects (no downloads, no global state changes).

    import advlab as al
    clf = al.models.build("lenet")
    atk = al.attacks.build("pgd", eps=0.3, steps=40, step_size=0.01)
    report = al.evaluate(clf, al.data.load("mnist", "test"), suite="standard", eps=[0.1, 0.3])
"""

from advlab import attacks, data, evaluation, models, reporting
from advlab._version import __version__
from advlab.evaluation import evaluate
from advlab.models import Classifier

__all__ = [
    "Classifier",
    "__version__",
    "attacks",
    "data",
    "evaluate",
    "evaluation",
    "models",
    "reporting",
]
