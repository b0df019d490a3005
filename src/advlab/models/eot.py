"""Expectation over Transformation (Athalye et al. 2018, "Synthesizing robust adversarial
examples"; Athalye, Carlini & Wagner 2018): attack a randomized model through its expected
log-probabilities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from advlab.models.classifier import Classifier, wrap_like


def _mean_log_softmax(draw: Callable[[], Tensor], samples: int) -> Tensor:
    """The mean of ``log_softmax`` over ``samples`` calls of ``draw`` (float32)."""
    total = torch.log_softmax(draw().float(), 1)
    for _ in range(samples - 1):
        total = total + torch.log_softmax(draw().float(), 1)
    return total / samples


class _Expectation(nn.Module):
    def __init__(self, model: Classifier, samples: int) -> None:
        super().__init__()
        self.model = model
        self.samples = samples

    def forward(self, x: Tensor) -> Tensor:
        return _mean_log_softmax(lambda: self.model.logits(x, check=False), self.samples)


class _ConditionedExpectation(Classifier):
    """The EOT view of a label-conditioned model (one with ``conditioned_logits(x, y)``, e.g. a
    detection-aware view of a randomized detector): its conditioned logits are averaged the same
    way, so the detector term survives the expectation."""

    def conditioned_logits(self, x: Tensor, y: Tensor) -> Tensor:
        inner = self.net
        if not isinstance(inner, _Expectation):
            raise TypeError("a conditioned EOT view must wrap an expectation module")
        model: Any = inner.model
        return _mean_log_softmax(lambda: model.conditioned_logits(x, y), inner.samples)


def eot(model: Classifier, samples: int = 10) -> Classifier:
    """A deterministic-in-expectation view of a randomized ``model``.

    Its logits are the mean of ``log_softmax`` over ``samples`` forward passes of ``model``. The
    cross-entropy of that mean is the mean cross-entropy over the model's randomness, so its
    input gradient is exactly the EOT gradient (the average of the per-draw gradients) for
    cross-entropy attacks; its prediction is the class of highest mean log-probability. Every
    forward costs ``samples`` forwards of ``model`` (attacks count it as one query). Bounds,
    classes and input shape are the model's; the model's own normalization is applied inside it.
    A label-conditioned ``model`` (a detection-aware view, see
    :func:`advlab.defenses.detection_aware`) keeps its conditioning: the view's
    ``conditioned_logits(x, y)`` is the same mean over the model's conditioned logits.
    """
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be an advlab Classifier; got {type(model).__name__}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1; got {samples!r}")
    cls = _ConditionedExpectation if hasattr(model, "conditioned_logits") else Classifier
    return wrap_like(model, _Expectation(model, samples), cls)
