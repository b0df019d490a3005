"""Each flag of docs/flags.md fires on a model built to trigger it (issue 5)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from advlab.data import TensorData
from advlab.evaluation import CODES, evaluate
from advlab.models import Classifier, eot

DOCS = Path(__file__).resolve().parents[1] / "docs" / "flags.md"


class _Wrap(nn.Module):
    """A network computing ``fn(inner, x)`` from a trained Classifier ``inner``."""

    def __init__(self, inner: Classifier, fn: Callable[[Classifier, Tensor], Tensor]) -> None:
        super().__init__()
        self.inner, self.fn = inner, fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.inner, x)


def _model(
    inner: Classifier, fn: Callable[[Classifier, Tensor], Tensor], **kw: object
) -> Classifier:
    # eval mode: restoring a train-mode wrapper after the evaluation would put ``inner`` (the
    # shared session model) in train mode too
    clf = Classifier(_Wrap(inner, fn), num_classes=10, input_shape=(1, 8, 8), **kw)  # type: ignore[arg-type]
    return clf.eval()


def _codes(clf: Classifier, test: TensorData, **kw: object) -> set[str]:
    args: dict[str, object] = {"eps": 0.15, "n": 60, "audit_n": 60, "batch_size": 60, **kw}
    report = evaluate(clf, test, **args)  # type: ignore[arg-type]
    return {f.code for f in report.flags}


def _quantized(inner: Classifier, x: Tensor) -> Tensor:
    return inner.logits(torch.round(x * 2) / 2, check=False)  # gradient exactly zero


def _on_grid_only(inner: Classifier, x: Tensor) -> Tensor:
    """Exact gradients on the digits' 1/16 grid (clean inputs), none anywhere else."""
    flat = (x * 16 - torch.round(x * 16)).abs().flatten(1).amax(1) < 1e-5
    masked = inner.logits(torch.round(x * 64) / 64, check=False)
    return torch.where(flat[:, None], inner.logits(x, check=False), masked)


def test_every_flag_is_documented() -> None:
    headings = re.findall(r"^## (\S+)$", DOCS.read_text(), flags=re.M)
    assert headings == list(CODES)


def test_quantized_input_is_flagged(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    codes = _codes(_model(clf, _quantized), test, transfer_from={"plain": clf})
    assert {"zero-gradients", "loss-not-increasing", "blackbox-beats-whitebox"} <= codes
    assert "transfer-beats-whitebox" in codes and "noise-beats-attack" in codes


def test_gradients_only_at_clean_points(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    assert "single-step-beats-iterative" in _codes(_model(clf, _on_grid_only), test)


def test_saturated_softmax_is_flagged(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    hot = _model(clf, lambda inner, x: inner.logits(x, check=False) * 1000.0)  # like T=1000
    codes = _codes(hot, test)
    assert {"saturated-softmax", "zero-gradients"} <= codes


def test_probability_outputs_are_flagged(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    probs = _model(
        clf, lambda inner, x: torch.softmax(inner.logits(x, check=False), 1), outputs="probs"
    )
    assert "probability-outputs" in _codes(probs, test, audit=False)


def test_randomized_model_is_flagged_and_attacked_with_eot(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    clf, test = digits_model
    noisy = _model(
        clf, lambda inner, x: inner.logits((x + 0.3 * torch.randn_like(x)).clamp(0, 1), check=False)
    )
    report = evaluate(noisy, test, eps=0.15, n=40, audit=False, eot_samples=4)
    assert "randomized-model" in {f.code for f in report.flags}
    assert report.to_dict()["model"]["eot_samples"] == 4


def test_train_mode_is_restored_and_reported(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    clf.train()
    try:
        assert "model-in-train-mode" in _codes(clf, test, audit=False)
        assert clf.training
    finally:
        clf.eval()


def test_eot_of_a_deterministic_model_keeps_its_predictions(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    clf, test = digits_model
    wrapped = eot(clf, 3)
    with torch.no_grad():
        want = torch.log_softmax(clf(test.x[:20]), 1)
        assert torch.allclose(wrapped(test.x[:20]), want, atol=1e-5)
    with pytest.raises(ValueError):
        eot(clf, 0)


def test_every_submodule_gets_its_own_mode_back(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    clf, test = digits_model
    clf.eval()
    wrapper = _model(clf, lambda inner, x: inner.logits(x, check=False)).train()
    clf.eval()  # a train-mode wrapper around an eval-mode network
    evaluate(wrapper, test, eps=0.1, n=20, audit=False)
    assert wrapper.training and not clf.training and not clf.net.training
