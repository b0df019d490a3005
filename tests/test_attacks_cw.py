"""Carlini-Wagner attacks: closed form on a linear model, behaviour on digits, bounds, args."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from advlab.attacks.cw import CWL0, CWL2, CWLinf
from advlab.attacks.pgd import FGM
from advlab.data import TensorData
from advlab.models import Classifier

Digits = tuple[Classifier, TensorData]

# small budgets: the paper's defaults take minutes
L2_FAST: dict[str, Any] = {"steps": 100, "binary_search_steps": 5, "initial_const": 1.0, "lr": 0.05}
LINF_FAST: dict[str, Any] = {"steps": 50, "lr": 0.01, "largest_const": 1.0}
L0_FAST: dict[str, Any] = {"steps": 40, "lr": 0.05, "initial_const": 1.0, "largest_const": 1e4}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(digits_model: Digits) -> Iterator[None]:
    """CW runs thousands of tiny forward/backward passes: intra-op threads only add overhead
    there, and stall badly on a busy machine (10x measured). The session model is trained
    first, with the default threads, so other modules see the same model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _linear(d: int = 10, seed: int = 0) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    """A 2-class linear model and 6 inputs near the middle of [0, 1]^d, each at L2 distance
    0.1-0.4 from the decision boundary (the box is far: no bound is active at the optimum)."""
    gen = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, d, generator=gen))
        lin.bias.zero_()
    w = lin.weight[1] - lin.weight[0]  # (d,)
    u = w / w.norm()
    x = 0.5 + 0.02 * torch.randn(6, d, generator=gen)
    x = x - torch.outer(x @ u - 0.5 * u.sum(), u)  # project onto the plane through the centre
    side = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    x = x + torch.outer(side * torch.linspace(0.1, 0.4, 6), u)
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([0.0, -float(w @ torch.full((d,), 0.5))]))
    clf = Classifier(lin, num_classes=2)
    with torch.no_grad():
        y = clf(x).argmax(1)
    return clf, x, y


def test_cw_l2_matches_the_closed_form_on_a_linear_model() -> None:
    clf, x, y = _linear()
    w = clf.net.weight[1] - clf.net.weight[0]
    b = clf.net.bias[1] - clf.net.bias[0]
    exact = ((x @ w + b).abs() / w.norm()).detach()  # (6,) minimal L2 distance
    res = CWL2(steps=300)(clf, x, y)
    assert bool(res.success.all())
    assert bool((res.norms >= exact * (1 - 1e-4)).all())
    assert bool((res.norms <= exact * 1.01).all()), (res.norms, exact)  # measured: < 1.001
    # one query + gradient per Adam iteration; the base adds the clean check and the result
    assert bool((res.queries == res.gradients + 2).all()) and int(res.gradients.min()) > 100


def test_cw_l2_untargeted_and_targeted_on_digits(digits_model: Digits) -> None:
    clf, test = digits_model
    x, y = test.x[:32], test.y[:32]
    res = CWL2(**L2_FAST)(clf, x, y)
    assert res.success_rate == 1.0
    moved = res.norms[res.norms > 0]
    assert bool(torch.isfinite(res.norms).all()) and moved.numel() >= 28
    # a minimum-norm attack beats a one-step attack at the same size wherever that succeeds
    fgm = FGM(eps=2.0)(clf, x, y)
    assert bool((res.norms[fgm.success] <= 2.0).all())
    t = (y + 3) % 10
    tres = CWL2(**L2_FAST)(clf, x[:16], y[:16], target=t[:16])
    assert tres.success_rate == 1.0
    assert torch.equal(tres.logits_adv.argmax(1), t[:16])
    assert float(tres.norms.mean()) > float(res.norms[:16].mean())  # targets cost more


def test_cw_l2_confidence_buys_margin(digits_model: Digits) -> None:
    clf, test = digits_model
    x, y = test.x[:8], test.y[:8]
    low = CWL2(**L2_FAST)(clf, x, y)
    high = CWL2(**L2_FAST, confidence=5.0)(clf, x, y)
    attacked = high.norms > 0  # inputs the model already gets wrong come back unchanged
    assert int(attacked.sum()) >= 6
    z, ya = high.logits_adv[attacked], y[attacked]
    other = z.scatter(1, ya.view(-1, 1), float("-inf")).max(1).values
    assert bool((other - z.gather(1, ya.view(-1, 1)).squeeze(1) >= 5.0 - 1e-4).all())
    assert bool((high.norms[attacked] > low.norms[attacked]).all())


def test_cw_linf_on_digits(digits_model: Digits) -> None:
    clf, test = digits_model
    x, y = test.x[:8], test.y[:8]
    res = CWLinf(**LINF_FAST)(clf, x, y)
    assert res.success_rate == 1.0
    assert float(res.norms.max()) < 0.2 and float(res.norms.mean()) < 0.15  # measured 0.14, 0.07
    linf = (res.x_adv - x).flatten(1).abs().amax(1)
    assert torch.allclose(linf, res.norms)


def test_cw_l0_on_digits(digits_model: Digits) -> None:
    clf, test = digits_model
    x, y = test.x[:16], test.y[:16]
    res = CWL0(**L0_FAST)(clf, x, y)
    assert res.success_rate >= 0.8
    changed = ((res.x_adv - x) != 0).flatten(1).sum(1)
    assert torch.equal(changed.to(res.norms.dtype), res.norms)
    assert float(res.norms[res.success].max()) < 64 and float(res.norms[res.success].mean()) < 20


@pytest.mark.parametrize(("attack", "kw"), [(CWL2, L2_FAST), (CWLinf, LINF_FAST), (CWL0, L0_FAST)])
def test_per_feature_bounds(attack: type[Any], kw: dict[str, Any]) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    low = torch.tensor([0.0, -1.0, 10.0, 0.0, -5.0])
    high = torch.tensor([1.0, 1.0, 20.0, 0.1, 5.0])
    clf = Classifier(net, bounds=(low, high), num_classes=3)
    gen = torch.Generator().manual_seed(1)
    x = low + (high - low) * torch.rand(12, 5, generator=gen)
    x[0, :2], x[1, 3:] = low[:2], high[3:]  # at the bounds: tanh(w) must cope
    with torch.no_grad():
        y = clf(x).argmax(1)
    res = attack(**kw)(clf, x, y)
    assert bool((res.x_adv >= low).all()) and bool((res.x_adv <= high).all())
    assert res.success_rate >= 0.75
    assert bool(torch.isfinite(res.x_adv).all())


def test_already_adversarial_inputs_are_returned_unchanged(digits_model: Digits) -> None:
    clf, test = digits_model
    x, y = test.x[:4], test.y[:4].clone()
    with torch.no_grad():
        y[0] = (clf(x[:1]).argmax(1) + 1) % 10  # a "true" label the model already gets wrong
    res = CWL2(steps=20, binary_search_steps=2)(clf, x, y)
    assert torch.equal(res.x_adv[0], x[0]) and float(res.norms[0]) == 0.0
    assert bool(res.success[0])


@pytest.mark.parametrize(
    ("attack", "kw", "match"),
    [
        (CWL2, {"steps": 0}, "steps"),
        (CWL2, {"binary_search_steps": 1.5}, "binary_search_steps"),
        (CWL2, {"lr": 0.0}, "lr"),
        (CWL2, {"initial_const": -1.0}, "initial_const"),
        (CWL2, {"confidence": -0.5}, "confidence"),
        (CWL2, {"norm": "linf"}, "supports norm l2"),
        (CWLinf, {"decrease_factor": 1.0}, "decrease_factor"),
        (CWLinf, {"const_factor": 1.0}, "const_factor"),
        (CWLinf, {"initial_const": 30.0}, "largest_const must be > initial_const"),
        (CWLinf, {"norm": "l2"}, "supports norm linf"),
        (CWL0, {"largest_const": 0.0}, "largest_const"),
        (CWL0, {"steps": -3}, "steps"),
        (CWL0, {"lr": "fast"}, "lr"),
    ],
)
def test_bad_arguments_raise(attack: type[Any], kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        attack(**kw)
