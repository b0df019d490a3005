"""Clean (no attack) accuracy, per-class accuracy and confusion matrix of a Classifier."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from advlab._version import __version__
from advlab.data import TensorData
from advlab.models.classifier import Classifier
from advlab.utils.device import resolve_device
from advlab.utils.files import atomic_write_json
from advlab.utils.metrics import confusion_matrix, per_class_accuracy
from advlab.utils.progress import progress

SCHEMA_VERSION = 1


@dataclass
class CleanReport:
    """Accuracy of a model on clean data; ``confusion[i][j]`` counts true ``i`` predicted ``j``."""

    dataset: str
    n: int
    accuracy: float
    per_class_accuracy: list[float | None]
    confusion: list[list[int]]
    class_names: list[str]
    device: str
    torch_version: str = torch.__version__
    advlab_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_json(path, self.to_dict())


@torch.no_grad()
def evaluate_clean(
    clf: Classifier,
    data: TensorData,
    *,
    batch_size: int = 1024,
    device: str | torch.device = "auto",
) -> CleanReport:
    """Predict every sample of ``data`` and tally accuracy; the model's mode is restored."""
    if not isinstance(clf, Classifier):
        raise TypeError(f"clf must be an advlab Classifier; got {type(clf).__name__}")
    if clf.num_classes is not None and data.num_classes > clf.num_classes:
        raise ValueError(
            f"the data has {data.num_classes} classes; the model has {clf.num_classes}"
        )
    dev = resolve_device(device)
    clf.check_input(data.x[:1024])
    was_training = clf.training
    clf.to(dev).eval()
    try:
        preds = []
        for i in progress(range(0, len(data), batch_size), desc="evaluate"):
            x = data.x[i : i + batch_size].to(dev)
            preds.append(clf.logits(x, check=False).argmax(1).cpu())
    finally:
        clf.train(was_training)
    pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
    k = clf.num_classes or data.num_classes
    cm = confusion_matrix(pred, data.y.cpu(), k)
    n = len(data)
    return CleanReport(
        dataset=data.name,
        n=n,
        accuracy=float(cm.diagonal().sum()) / n if n else 0.0,
        per_class_accuracy=per_class_accuracy(cm),
        confusion=cm.tolist(),
        class_names=list(data.class_names),
        device=str(dev),
    )
