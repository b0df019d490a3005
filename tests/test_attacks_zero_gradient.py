"""APGD and FAB leave early on inputs whose gradients are exactly zero (a masked model): same
result, far fewer gradients (issue 5's standard suite on gradient-masked models)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advlab import attacks
from advlab.data import TensorData
from advlab.models import Classifier


class _Rounded(nn.Module):
    def __init__(self, inner: Classifier) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner.logits(torch.round(x), check=False)  # input gradient exactly zero


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("apgd-ce", {"eps": 0.2, "steps": 50}),
        ("apgd-t", {"eps": 0.2, "steps": 20, "n_target_classes": 3}),
    ],
)
def test_apgd_stops_on_zero_gradients(
    name: str, kw: dict[str, object], digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, test = digits_model
    masked = Classifier(_Rounded(clf), num_classes=10, input_shape=(1, 8, 8))
    x, y = test.x[:60], test.y[:60]
    with torch.no_grad():
        ok = masked(x).argmax(1) == y  # (already-wrong inputs are skipped only with early_stop)
    x, y = x[ok], y[ok]
    fast = attacks.build(name, early_stop=True, **kw)(masked, x, y)
    full = attacks.build(name, **kw)(masked, x, y)
    assert torch.equal(fast.success, full.success)
    assert int(fast.gradients.sum()) < int(full.gradients.sum()) // 4


def test_fab_stops_at_a_fixed_point(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    masked = Classifier(_Rounded(clf), num_classes=10, input_shape=(1, 8, 8))
    x, y = test.x[:30], test.y[:30]
    res = attacks.build("fab", steps=50)(masked, x, y)
    assert int(res.gradients.max()) < 50
