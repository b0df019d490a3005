"""Evaluating defended models (issue 7): naive and adaptive views side by side, detectors'
reject masks in the scoring, defended checkpoints that load like any other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from advlab import models
from advlab.attacks import attacks
from advlab.data import TensorData
from advlab.defenses import Defended, bpda, defenses, detection_aware
from advlab.evaluation import evaluate
from advlab.models import Classifier

EPS = 0.3


class _Quantize(nn.Module):
    """Round to ``levels`` gray levels: a zero gradient almost everywhere (naive), identity BPDA
    (adaptive)."""

    def __init__(self, base: Classifier, levels: int, straight_through: bool) -> None:
        super().__init__()
        self.base = base
        self.levels = levels
        self.straight_through = straight_through

    def forward(self, x: Tensor) -> Tensor:
        q = torch.round(x.detach() * (self.levels - 1)) / (self.levels - 1)
        xq = bpda(q, x) if self.straight_through else q + 0 * x
        return self.base.logits(xq, check=False)


class Quantized(Defended):
    name = "test-quantize"
    gradient = "bpda"

    def __init__(self, base: Classifier, *, levels: int = 2, bpda_view: bool = False) -> None:
        super().__init__(_Quantize(base, levels, bpda_view), [base])
        self.levels = levels
        self.register_buffer("fitted", torch.tensor(1.0))

    def adaptive(self) -> Classifier:
        return Quantized(self.base, levels=self.levels, bpda_view=True).eval()

    def defense_args(self) -> dict[str, Any]:
        return {"levels": self.levels}


class MeanDetector(Defended):
    """Rejects inputs whose mean intensity is above a threshold (a toy detector)."""

    name = "test-mean-detector"
    detects = True

    def __init__(self, base: Classifier, *, threshold: float = 0.5) -> None:
        super().__init__(_Pass(base), [base])
        self.threshold = threshold

    def score(self, x: Tensor) -> Tensor:
        return x.flatten(1).mean(1) - self.threshold

    def reject(self, x: Tensor) -> Tensor:
        return self.score(x) > 0

    def adaptive(self) -> Classifier:
        return detection_aware(self, self.score)


class _Pass(nn.Module):
    def __init__(self, base: Classifier) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: Tensor) -> Tensor:
        return self.base.logits(x, check=False)


@pytest.fixture
def registered() -> Iterator[None]:
    defenses.register("test-quantize", Quantized)
    try:
        yield
    finally:
        defenses._items.pop("test-quantize")


def _subset(data: TensorData, n: int) -> tuple[Tensor, Tensor]:
    return data.x[:n], data.y[:n]


def _acc(report: Any, title: str) -> float:
    return float(report.attack_accuracy(title, EPS))


def test_defended_model_is_attacked_naively_and_adaptively(digits_model: Any) -> None:
    clf, test = digits_model
    defended = Quantized(clf, levels=2).eval()
    x, y = _subset(test, 120)
    report = evaluate(defended, (x, y), eps=[EPS], suite="quick", audit_n=60, seed=1)
    titles = [a["attack"] for a in report.to_dict()["per_eps"][-1]["attacks"]]
    assert titles == ["fgsm", "pgd-20", "fgsm (adaptive)", "pgd-20 (adaptive)"]
    naive, adaptive = _acc(report, "pgd-20"), _acc(report, "pgd-20 (adaptive)")
    assert adaptive < naive - 0.3, (naive, adaptive)  # BPDA breaks what zero gradients hid
    worst = report.robust_accuracy(EPS)
    assert worst <= adaptive + 1e-9
    codes = {f.code for f in report.flags}
    assert "zero-gradients" in codes  # the naive run's masking is flagged
    block = report.to_dict()["defense"]
    assert block["name"] == "test-quantize" and block["gradient"] == "bpda"
    assert block["clean_false_positive_rate"] is None
    suite = report.to_dict()["suite"]["attacks"]
    assert [a.get("view") for a in suite] == ["naive", "naive", "adaptive", "adaptive"]


def test_detector_rejections_count_as_defended_and_clean_rejections_as_errors(
    digits_model: Any,
) -> None:
    clf, test = digits_model
    x, y = _subset(test, 150)
    means = x.flatten(1).mean(1)
    threshold = float(means.quantile(0.9))  # ~10% of clean inputs rejected
    detector = MeanDetector(clf, threshold=threshold).eval()
    report = evaluate(detector, (x, y), eps=[EPS], suite="quick", audit=False, seed=0)
    rejected = means > threshold
    plain_correct = clf.predict(x) == y
    expected_clean = float((plain_correct & ~rejected).float().mean())
    assert report.clean_accuracy == pytest.approx(expected_clean)
    block = report.to_dict()["defense"]
    assert block["clean_false_positive_rate"] == pytest.approx(float(rejected.float().mean()))
    assert report.to_dict()["samples"]["clean_rejected"] == rejected.tolist()
    # every sample counted broken must be misclassified and NOT rejected at its adversarial input
    pgd = attacks.build("pgd", eps=EPS, steps=20, step_size=2.5 * EPS / 20, seed=0)
    res = pgd(clf, x, y)
    broken_plain = (clf.predict(res.x_adv) != y) & plain_correct & ~rejected
    broken_detected = broken_plain & ~detector.reject(res.x_adv)
    assert int(broken_detected.sum()) < int(broken_plain.sum())  # the toy detector catches some
    # the adaptive (detection-aware) view keeps its examples under the threshold
    adaptive_acc, naive_acc = _acc(report, "pgd-20 (adaptive)"), _acc(report, "pgd-20")
    assert adaptive_acc <= naive_acc + 0.02


def test_detection_aware_view_never_counts_a_detected_input_as_success(digits_model: Any) -> None:
    clf, test = digits_model
    x, y = _subset(test, 60)
    detector = MeanDetector(clf, threshold=float(x.flatten(1).mean(1).max()) + 0.01).eval()
    view = detection_aware(detector, detector.score)
    res = attacks.build("pgd", eps=EPS, steps=30, seed=0)(view, x, y)
    ok = res.success
    assert ok.any()
    assert not detector.reject(res.x_adv[ok]).any()
    assert (clf.predict(res.x_adv[ok]) != y[ok]).all()
    with pytest.raises(ValueError, match=">= 0"):
        detection_aware(detector, detector.score, weight=-1.0)


def test_defended_checkpoint_round_trip(
    digits_model: Any, registered: None, tmp_path: Path
) -> None:
    clf, test = digits_model
    defended = Quantized(clf, levels=4).eval()
    folder = models.save(defended, tmp_path / "ckpt", dataset="digits")
    loaded = models.load(folder)
    assert isinstance(loaded, Quantized) and loaded.levels == 4
    assert loaded.base is not clf
    x = test.x[:32]
    assert torch.equal(loaded.predict(x), defended.predict(x))
    meta = models.read_meta(folder)
    assert meta["defense"]["name"] == "test-quantize"
    assert meta["defense"]["bases"][0]["preset"] == clf.preset


def test_eot_of_a_detection_aware_view_keeps_the_detector_term(digits_model: Any) -> None:
    clf, test = digits_model
    x, y = _subset(test, 60)
    detector = MeanDetector(clf, threshold=float(x.flatten(1).mean(1).max()) + 0.01).eval()
    view = detection_aware(detector, detector.score)
    smooth = models.eot(view, samples=3)
    # deterministic inside: the expectation of log-softmax is the log-softmax itself
    lifted = torch.log_softmax(view.conditioned_logits(x + 0.2, y).float(), 1)
    got = smooth.conditioned_logits(x + 0.2, y)  # type: ignore[attr-defined]
    assert torch.allclose(got, lifted, atol=1e-5)
    assert detector.reject(x + 0.2).any()  # the lift is really exercised
    res = attacks.build("pgd", eps=EPS, steps=30, seed=0)(smooth, x, y)
    ok = res.success
    assert ok.any()
    assert not detector.reject(res.x_adv[ok]).any()  # EOT view: still never a detected success
    plain = models.eot(clf, samples=2)
    assert not hasattr(plain, "conditioned_logits")
