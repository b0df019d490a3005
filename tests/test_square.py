"""Square attack (Andriushchenko et al. 2020): score-based only, honest query counts, the
eps-ball and bounds, determinism, and strength on the digits model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from advlab import attacks
from advlab.attacks import Square
from advlab.attacks.square import meta_pseudo_gaussian, p_schedule
from advlab.data import TensorData
from advlab.models import Classifier

Digits = tuple[Classifier, TensorData]


class _NoBackward(torch.autograd.Function):
    """Identity whose backward pass raises: any gradient through it fails the test."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        raise RuntimeError("square must not compute gradients")


class _Spy(nn.Module):
    """Wraps a Classifier: counts the inputs it is queried on; refuses backward passes."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__()
        self.inner = inner
        self.seen = 0

    def forward(self, x: Tensor) -> Tensor:
        self.seen += x.shape[0]
        x = _NoBackward.apply(x) if torch.is_grad_enabled() else x
        return self.inner.logits(x, check=False)


def _spy(clf: Classifier, **kw: Any) -> tuple[Classifier, _Spy]:
    spy = _Spy(clf)
    return Classifier(spy, num_classes=10, **kw).eval(), spy


def _batch(digits: Digits, n: int) -> tuple[Tensor, Tensor]:
    _, test = digits
    return test.x[:n].clone(), test.y[:n].clone()


def test_forward_passes_only_and_queries_are_counted(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 32)
    model, spy = _spy(clf)
    res = Square(eps=0.1, n_queries=60)(model, x, y)
    assert int(res.gradients.sum()) == 0
    assert int(res.queries.sum()) == spy.seen  # every forward pass is counted, per sample
    assert int(res.queries.min()) >= 2 and int(res.queries.max()) <= 60 + 1
    # an input that was never fooled spent the whole budget; a fooled one stopped early
    assert bool((res.queries[~res.success] == 61).all())
    assert bool(res.success.any()) and bool((res.queries[res.success] < 61).all())
    with pytest.raises(RuntimeError, match="must not compute gradients"):
        attacks.build("fgsm", eps=0.1)(model, x, y)  # the spy really refuses gradients


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.15), ("l2", 1.0)])
def test_eps_ball_per_feature_bounds_and_no_mutation(
    norm: str, eps: float, digits_model: Digits
) -> None:
    clf, _ = digits_model
    low = torch.linspace(0.0, 0.2, 64).view(1, 8, 8)
    high = 1.0 - torch.linspace(0.0, 0.2, 64).flip(0).view(1, 8, 8)
    model, _ = _spy(clf, bounds=(low, high))
    x, y = _batch(digits_model, 24)
    x = torch.minimum(torch.maximum(x, low), high)
    t = (y + 1) % 10
    x0, y0, t0 = x.clone(), y.clone(), t.clone()
    for target in (None, t):
        res = Square(norm=norm, eps=eps, n_queries=40)(model, x, y, target=target)
        assert torch.equal(x, x0) and torch.equal(y, y0) and torch.equal(t, t0)
        assert bool((res.x_adv >= low).all()) and bool((res.x_adv <= high).all())
        size = res.norms
        assert float(size.max()) <= eps * (1 + 1e-6) + 1e-6
        assert torch.allclose(size, Square(norm=norm).lp.size(res.x_adv - x))
        if norm == "linf":  # every feature sits at a vertex of the box eps-ball ∩ bounds
            lo, hi = torch.maximum(x - eps, low), torch.minimum(x + eps, high)
            at = torch.isclose(res.x_adv, lo, atol=1e-6) | torch.isclose(res.x_adv, hi, atol=1e-6)
            assert bool(at.all())
        else:  # the search stays near the sphere (only clipping shrinks it)
            assert float(size.median()) > 0.5 * eps


def test_same_seed_same_result_other_seed_differs(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 16)
    for norm, eps in (("linf", 0.1), ("l2", 0.8)):
        a = Square(norm=norm, eps=eps, n_queries=30, seed=5)(clf, x, y)
        b = Square(norm=norm, eps=eps, n_queries=30, seed=5)(clf, x, y)
        c = Square(norm=norm, eps=eps, n_queries=30, seed=6)(clf, x, y)
        assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
        assert not torch.equal(a.x_adv, c.x_adv)


def test_untargeted_success_on_digits(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 100)
    right = clf.predict(x) == y
    res = Square(eps=0.3, n_queries=1000)(clf, x, y)
    assert float(res.success[right].float().mean()) > 0.8
    res2 = Square(norm="l2", eps=2.0, n_queries=1000)(clf, x, y)
    assert float(res2.success[right].float().mean()) > 0.8
    assert int(res.gradients.sum()) == int(res2.gradients.sum()) == 0


def test_close_to_white_box_apgd_at_a_small_budget(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 64)
    sq = Square(eps=0.12, n_queries=1000)(clf, x, y)
    apgd = attacks.build("apgd-ce", eps=0.12)(clf, x, y)
    assert float(sq.success.float().mean()) >= float(apgd.success.float().mean()) - 0.1
    assert float(sq.success.float().mean()) < 1.0  # a budget where the search matters


def test_targeted_reaches_targets(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 50)
    res = Square(eps=0.3, n_queries=500)(clf, x, y, target="random")
    assert res.target is not None
    assert float((res.logits_adv.argmax(1) == res.target).float().mean()) > 0.7
    assert torch.equal(res.success, res.logits_adv.argmax(1) == res.target)


def test_early_stop_leaves_misclassified_inputs_and_restarts_spend_more(
    digits_model: Digits,
) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 40)
    y = torch.where(torch.arange(40) < 4, (y + 1) % 10, y)  # a few more misclassified inputs
    wrong = clf.predict(x) != y
    res = Square(eps=0.1, n_queries=20, early_stop=True)(clf, x, y)
    assert torch.equal(res.x_adv[wrong], x[wrong]) and bool(res.success[wrong].all())
    assert int(res.queries.max()) <= 20 + 2  # clean check + run + scoring
    one = Square(eps=0.1, n_queries=20)(clf, x, y)
    two = Square(eps=0.1, n_queries=20, restarts=2)(clf, x, y)
    assert int(two.success.sum()) >= int(one.success.sum())
    assert int(two.queries.max()) <= 2 * 21


def test_non_square_images_and_image_shape_required() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(60, 10))
    clf = Classifier(net, num_classes=10).eval()
    x = torch.rand(6, 1, 6, 10)
    y = clf.predict(x)
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        res = Square(norm=norm, eps=eps, n_queries=50)(clf, x, y)
        assert res.x_adv.shape == x.shape
        assert float(res.norms.max()) <= eps * (1 + 1e-6)
    flat = Classifier(nn.Linear(60, 10), num_classes=10).eval()
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Square()(flat, x.flatten(1), y)


def test_schedule_pattern_and_hyperparameters() -> None:
    assert p_schedule(0.8, 0, 10000) == p_schedule(0.8, 10, 10000) == 0.8
    assert p_schedule(0.8, 11, 10000) == 0.4
    assert p_schedule(0.8, 8001, 10000) == 0.8 / 512
    assert p_schedule(0.8, 2, 1000) == 0.4  # rescaled: iteration 2 of 1000 is 20 of 10,000
    eta = meta_pseudo_gaussian(5, torch.float64, torch.device("cpu"))
    assert torch.isclose(eta.square().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert bool((eta[:2] > 0).all()) and bool((eta[2:] < 0).all())
    atk = attacks.build("square", norm="l2", eps=0.5, n_queries=100, p_init=0.3)
    assert isinstance(atk, Square)
    assert "n_queries=100" in repr(atk) and "p_init=0.3" in repr(atk)
    assert Square().n_queries == 5000 and Square().p_init == 0.8
    for bad in ({"p_init": 0.0}, {"p_init": 1.5}, {"n_queries": 0}, {"norm": "l1"}):
        with pytest.raises(ValueError):
            Square(**bad)
