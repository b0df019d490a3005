"""Auto-PGD (apgd-ce, apgd-dlr, apgd-t): schedule, closed-form, behaviour and argument checks."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from advlab.attacks import PGD, attacks
from advlab.attacks.apgd import APGDCE, APGDDLR, APGDT, checkpoint_fractions, checkpoints
from advlab.data import TensorData
from advlab.models import Classifier

Digits = tuple[Classifier, TensorData]


def _batch(model: Digits, n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    _, test = model
    return test.x[:n].clone(), test.y[:n].clone()


def _linear(k: int, d: int = 6, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(nn.Linear(d, k), input_shape=(d,), num_classes=k).eval()


# ---------------------------------------------------------------- step-size schedule
def test_checkpoint_fractions_follow_the_papers_recursion() -> None:
    p = checkpoint_fractions()
    assert p == pytest.approx([0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99])
    for j in range(1, len(p) - 1):  # p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
        assert p[j + 1] == pytest.approx(p[j] + max(p[j] - p[j - 1] - 0.03, 0.06))
    nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
    assert nxt > 1  # the list stops at the last p_j <= 1


@pytest.mark.parametrize("steps", [1, 5, 10, 37, 100, 1000])
def test_checkpoints_are_ceil_p_times_steps(steps: int) -> None:
    w = checkpoints(steps)
    expected = sorted({math.ceil(round(p * steps, 9)) for p in checkpoint_fractions()})
    assert w == expected
    assert w[0] == 0 and w[-1] <= steps and w == sorted(set(w))


def test_checkpoints_for_the_default_100_steps() -> None:
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]


def test_checkpoints_reject_bad_steps() -> None:
    with pytest.raises(ValueError, match="steps"):
        checkpoints(0)


# ---------------------------------------------------------------- closed form
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_two_class_linear_model_reaches_the_optimal_point(norm: str) -> None:
    """For 2 classes the CE loss grows with ``(w_1 - w_0)·x``: its maximum over the ball is
    ``x + eps·sign(w)`` (Linf) or ``x + eps·w/||w||`` (L2), inside the bounds here."""
    clf = _linear(2)
    x = torch.full((5, 6), 0.5)
    y = torch.zeros(5, dtype=torch.long)
    w = clf.net.weight[1] - clf.net.weight[0]  # type: ignore[index]
    eps = 0.1 if norm == "linf" else 0.2
    best = x + eps * (w.sign() if norm == "linf" else w / w.norm())
    res = APGDCE(norm=norm, eps=eps, steps=30)(clf, x, y)
    tol = 1e-6 if norm == "linf" else 1e-3  # L2 approaches the point along the sphere
    assert torch.allclose(res.x_adv, best.expand_as(x), atol=tol)


# ---------------------------------------------------------------- behaviour on digits
def test_apgd_ce_is_at_least_as_strong_as_pgd(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model)
    eps = 0.1
    pgd = PGD(eps=eps, steps=10, step_size=eps / 4)(clf, x, y)
    apgd = APGDCE(eps=eps, steps=50)(clf, x, y)
    assert apgd.accuracy <= pgd.accuracy + 0.02
    assert bool((apgd.gradients == 50).all())  # N steps = N gradients (none at x^(N))


@pytest.mark.parametrize("name", ["apgd-dlr", "apgd-t"])
def test_dlr_attacks_break_the_plain_model_at_eps_03(name: str, digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model)
    clean = float((clf(x).argmax(1) == y).float().mean())
    res = attacks.build(name, eps=0.3, steps=20, early_stop=True)(clf, x, y)
    assert clean > 0.8 and res.accuracy <= 0.1


@pytest.mark.parametrize("name", ["apgd-ce", "apgd-t"])
def test_early_stop_is_as_strong_and_cheaper(name: str, digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model)
    kw: dict[str, Any] = {"eps": 0.1, "steps": 10}
    if name == "apgd-t":
        kw["n_target_classes"] = 3
    full = attacks.build(name, **kw)(clf, x, y)
    fast = attacks.build(name, early_stop=True, **kw)(clf, x, y)
    assert fast.accuracy <= full.accuracy + 1e-9
    assert float(fast.gradients.float().mean()) < float(full.gradients.float().mean())


@pytest.mark.parametrize("name", ["apgd-ce", "apgd-dlr", "apgd-t"])
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.1)])
def test_eps_ball_and_bounds(name: str, norm: str, eps: float, digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 32)
    extra = {"n_target_classes": 2} if name == "apgd-t" else {}
    res = attacks.build(name, norm=norm, eps=eps, steps=10, restarts=2, **extra)(clf, x, y)
    assert float(res.norms.max()) <= eps * (1 + 1e-6) + 1e-6
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype


def test_targeted_apgd_ce_and_dlr_reach_the_target(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 32)
    t = (y + 1) % 10
    for atk in (APGDCE(eps=0.3, steps=20), APGDDLR(eps=0.3, steps=20)):
        res = atk(clf, x, y, target=t)
        assert res.targeted and res.success_rate >= 0.8
        assert torch.equal(res.success, res.logits_adv.argmax(1) == t)


def test_apgd_t_caps_targets_and_counts_gradients(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 32)
    res = APGDT(eps=0.05, steps=5, n_target_classes=50)(clf, x, y)  # capped at K - 1 = 9
    assert int(res.gradients.max()) <= 9 * 5
    assert bool((res.gradients % 5 == 0).all())  # whole runs of `steps` gradients per target


def test_same_seed_same_result_other_seed_other_start(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 16)
    for cls in (APGDCE, APGDT):
        a = cls(eps=0.05, steps=5, seed=7)(clf, x, y)
        b = cls(eps=0.05, steps=5, seed=7)(clf, x, y)
        c = cls(eps=0.05, steps=5, seed=8)(clf, x, y)
        assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.gradients, b.gradients)
        assert not torch.equal(a.x_adv, c.x_adv)


def test_registry_names_and_config() -> None:
    assert isinstance(attacks.build("apgd-ce"), APGDCE)
    assert isinstance(attacks.build("apgd-dlr"), APGDDLR)
    assert isinstance(attacks.build("apgd-t"), APGDT)
    cfg = APGDT().config()
    assert cfg["steps"] == 100 and cfg["n_target_classes"] == 9
    assert cfg["rho"] == 0.75 and cfg["momentum"] == 0.75 and cfg["restarts"] == 1
    assert "APGDT(" in repr(APGDT())


# ---------------------------------------------------------------- bad arguments
def test_class_count_requirements() -> None:
    x = torch.rand(4, 6)
    y = torch.zeros(4, dtype=torch.long)
    three = _linear(3)
    with pytest.raises(ValueError, match="classes"):
        APGDT(eps=0.1, steps=2)(three, x, y)
    with pytest.raises(ValueError, match="classes"):
        APGDDLR(eps=0.1, steps=2)(_linear(2), x, y)
    with pytest.raises(ValueError, match="4 classes"):
        APGDDLR(eps=0.1, steps=2)(three, x, y, target=torch.ones(4, dtype=torch.long))
    assert APGDDLR(eps=0.1, steps=2)(three, x, y).x_adv.shape == x.shape


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"rho": 1.5}, "rho"),
        ({"momentum": -0.1}, "momentum"),
        ({"eps": -1.0}, "eps"),
        ({"restarts": 0}, "restarts"),
        ({"norm": "l0"}, "norm"),
    ],
)
def test_bad_hyperparameters_raise(kwargs: dict[str, Any], match: str) -> None:
    for name in ("apgd-ce", "apgd-dlr", "apgd-t"):
        with pytest.raises(ValueError, match=match):
            attacks.build(name, **kwargs)
    with pytest.raises(ValueError, match="n_target_classes"):
        APGDT(n_target_classes=0)


def test_apgd_t_refuses_a_user_target() -> None:
    clf = _linear(5)
    x, y = torch.rand(4, 6), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="untargeted"):
        APGDT(eps=0.1, steps=2)(clf, x, y, target=torch.ones(4, dtype=torch.long))
