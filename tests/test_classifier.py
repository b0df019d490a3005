"""Classifier wrapper: bounds, normalization, shape checks, probability-output refusal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.models import Classifier


def _net(k: int = 3, d: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k))


def test_forward_shapes_and_inference() -> None:
    clf = Classifier(_net())
    out = clf(torch.rand(5, 4))
    assert out.shape == (5, 3)
    assert clf.num_classes == 3 and clf.input_shape == (4,)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(N, 4\)"):
        clf(torch.rand(5, 5))


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.full((2, 4), 1.5), ValueError, "outside the model's bounds"),
        (torch.full((2, 4), -0.1), ValueError, "outside the model's bounds"),
        (torch.tensor([[0.1, float("nan"), 0.2, 0.3]]), ValueError, "NaN"),
        (torch.ones(2, 4, dtype=torch.long), TypeError, "float tensor"),
        (torch.rand(4), ValueError, "batch"),
    ],
)
def test_bad_inputs_are_refused(x: torch.Tensor, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Classifier(_net())(x)


def test_inputs_at_the_bounds_are_accepted() -> None:
    clf = Classifier(_net(), bounds=(-1.0, 1.0))
    assert clf(torch.tensor([[-1.0, 1.0, 0.0, 1.0]])).shape == (1, 3)


def test_normalization_is_inside_the_wrapper() -> None:
    net = nn.Identity()
    clf = Classifier(net, mean=(0.5, 0.25), std=(0.5, 0.25), num_classes=2)
    x = torch.tensor([[1.0, 0.5]]).view(1, 2)
    # (N, C) input: per-channel stats along dim 1
    assert torch.allclose(clf.logits(x, check=False), torch.tensor([[1.0, 1.0]]))
    img = torch.full((1, 2, 3, 3), 0.5)
    assert torch.allclose(clf.normalize(img)[0, 0], torch.zeros(3, 3))
    assert torch.allclose(clf.normalize(img)[0, 1], torch.ones(3, 3))


def test_probability_outputs_are_refused_unless_declared() -> None:
    probs_net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Softmax(dim=1))
    with pytest.raises(ValueError, match="probabilities"):
        Classifier(probs_net)(torch.rand(3, 4))
    clf = Classifier(probs_net, outputs="probs")
    x = torch.rand(3, 4)
    assert torch.allclose(torch.softmax(clf(x), 1), probs_net(x), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bounds": (1.0, 0.0)}, "low < high"),
        ({"mean": 0.5}, "both mean and std"),
        ({"mean": 0.5, "std": 0.0}, "std must be > 0"),
        ({"num_classes": 1}, "num_classes"),
        ({"outputs": "softmax"}, "outputs"),
    ],
)
def test_bad_construction(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Classifier(_net(), **kwargs)  # type: ignore[arg-type]


def test_wrong_num_classes_and_types() -> None:
    with pytest.raises(ValueError, match="num_classes is 5"):
        Classifier(_net(), num_classes=5)(torch.rand(2, 4))
    with pytest.raises(TypeError, match=r"nn\.Module"):
        Classifier("not a net")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="already a Classifier"):
        Classifier(Classifier(_net()))


def test_predict_restores_nothing_and_batches() -> None:
    clf = Classifier(_net())
    x = torch.rand(7, 4)
    assert torch.equal(clf.predict(x, batch_size=3), clf(x).argmax(1))


def test_per_feature_bounds() -> None:
    low, high = torch.tensor([0.0, -1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 5.0, 1.0])
    clf = Classifier(_net(), bounds=(low, high))
    assert clf.per_feature_bounds and clf.bounds == (-1.0, 5.0)
    clf(torch.tensor([[0.5, -1.0, 4.0, 1.0]]))
    with pytest.raises(ValueError, match="per-feature bounds"):
        clf(torch.tensor([[0.5, -1.0, 4.0, 1.5]]))
    with pytest.raises(ValueError, match="low < high"):
        Classifier(_net(), bounds=(high, low))
