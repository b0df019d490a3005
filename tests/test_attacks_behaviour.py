"""Closed forms on linear models and behaviour on a small trained model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab import attacks
from advlab.data import TensorData
from advlab.models import Classifier


def _linear(k: int = 3, d: int = 6, seed: int = 0) -> tuple[Classifier, nn.Linear]:
    torch.manual_seed(seed)
    lin = nn.Linear(d, k)
    return Classifier(nn.Sequential(lin), num_classes=k, input_shape=(d,)), lin


def test_fgsm_is_the_exact_closed_form_step() -> None:
    clf, lin = _linear()
    x = torch.rand(20, 6) * 0.6 + 0.2
    y = torch.randint(0, 3, (20,))
    # d CE / dx = W^T (softmax(Wx + b) - onehot(y))
    p = torch.softmax(lin(x), 1) - F.one_hot(y, 3).float()
    grad = p @ lin.weight.detach()
    expected = (x + 0.1 * grad.sign()).clamp(0, 1)
    res = attacks.build("fgsm", eps=0.1)(clf, x, y)
    assert torch.allclose(res.x_adv, expected, atol=1e-7)
    t = (y + 1) % 3  # targeted: x - eps * sign(grad J(x, t))
    pt = torch.softmax(lin(x), 1) - F.one_hot(t, 3).float()
    expected_t = (x - 0.1 * (pt @ lin.weight.detach()).sign()).clamp(0, 1)
    assert torch.allclose(attacks.build("fgsm", eps=0.1)(clf, x, y, target=t).x_adv, expected_t)


def test_fgm_l2_step_has_exact_norm() -> None:
    clf, _ = _linear()
    x = torch.full((5, 6), 0.5)
    res = attacks.build("fgm", eps=0.2)(clf, x, torch.zeros(5, dtype=torch.long))
    assert torch.allclose(res.norms, torch.full((5,), 0.2), atol=1e-6)


def test_per_feature_bounds_on_feature_vectors() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    low = torch.tensor([0.0, -1.0, 0.0, 10.0, -5.0])
    high = torch.tensor([1.0, 1.0, 100.0, 11.0, 5.0])
    clf = Classifier(net, bounds=(low, high), num_classes=3)
    x = low + torch.rand(32, 5) * (high - low)
    y = torch.randint(0, 3, (32,))
    for name in ("pgd", "fgsm", "bim", "rand-fgsm", "mi-fgsm"):
        res = attacks.build(name, eps=0.5)(clf, x, y)
        assert bool(((res.x_adv >= low) & (res.x_adv <= high)).all()), name
        assert float((res.x_adv - x).abs().max()) <= 0.5 + 1e-6, name


def _acc(model: tuple[Classifier, TensorData], name: str, **kw: object) -> float:
    clf, test = model
    return attacks.build(name, **kw)(clf, test.x, test.y).accuracy


def test_iterative_beats_single_step(digits_model: tuple[Classifier, TensorData]) -> None:
    eps = 0.1
    fgsm = _acc(digits_model, "fgsm", eps=eps)
    bim = _acc(digits_model, "bim", eps=eps, steps=20, step_size=0.01)
    pgd = _acc(digits_model, "pgd", eps=eps, steps=20, step_size=0.01, restarts=2)
    assert pgd <= bim + 0.01 <= fgsm + 0.02
    assert pgd < fgsm


def test_restarts_never_hurt(digits_model: tuple[Classifier, TensorData]) -> None:
    one = _acc(digits_model, "pgd", eps=0.08, steps=10, step_size=0.02, restarts=1)
    three = _acc(digits_model, "pgd", eps=0.08, steps=10, step_size=0.02, restarts=3)
    assert three <= one


def test_early_stop_runs_every_restart_on_robust_inputs(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    # regression: with early stop, the first run used to mark every input done, so later
    # restarts never ran
    clf, test = digits_model
    kw = {"eps": 0.04, "steps": 5, "step_size": 0.01, "early_stop": True}
    one = attacks.build("pgd", **kw)(clf, test.x, test.y)
    four = attacks.build("pgd", restarts=4, **kw)(clf, test.x, test.y)
    robust = ~four.success
    assert bool(robust.any())
    assert bool((four.gradients[robust] == 4 * 5).all())
    assert four.accuracy <= one.accuracy
    assert bool((four.success | ~one.success).all())  # the first run's successes are kept


def test_early_stop_is_as_strong_and_cheaper(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    off = attacks.build("pgd", eps=0.1, steps=20, step_size=0.01)(clf, test.x, test.y)
    on = attacks.build("pgd", eps=0.1, steps=20, step_size=0.01, early_stop=True)(
        clf, test.x, test.y
    )
    assert on.accuracy <= off.accuracy + 0.01
    assert float(on.gradients.float().mean()) < float(off.gradients.float().mean())


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "mi-fgsm"])
def test_targeted_attacks_reach_their_targets(
    name: str, digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, test = digits_model
    x, y = test.x[:100], test.y[:100]
    kw = {"eps": 0.3} if name == "fgsm" else {"eps": 0.3, "steps": 30, "step_size": 0.02}
    res = attacks.build(name, **kw)(clf, x, y, target="random")
    assert res.targeted and bool((res.target != y).all())
    floor = 0.3 if name == "fgsm" else 0.9
    assert res.success_rate >= floor


def test_illc_targets_the_least_likely_class(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    x, y = test.x[:50], test.y[:50]
    res = attacks.build("illc", eps=0.3, steps=30, step_size=0.02)(clf, x, y)
    with torch.no_grad():
        logits = clf(x).scatter(1, y.view(-1, 1), float("inf"))
    assert torch.equal(res.target, logits.argmin(1))
    assert res.success_rate > 0.5  # least-likely targets are the hardest ones


def test_noise_fooling_images(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, _ = digits_model
    atk = attacks.build("noise-fooling", eps=0.3, steps=40, step_size=0.02)
    x = attacks.NoiseFooling.noise(20, (1, 8, 8), seed=1)
    with torch.no_grad():
        y = clf(x).argmax(1)
    res = atk(clf, x, y, target="random")
    assert res.success_rate >= 0.9
    with pytest.raises(ValueError, match="noise-fooling is targeted"):
        atk(clf, x, y)


def test_result_curve_for_budget_result(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    res = attacks.build("pgd", eps=0.2, steps=10, step_size=0.04)(clf, test.x, test.y)
    curve = res.curve([0.0, 0.1, 0.2])
    assert curve[0][1] >= curve[-1][1]
    summary = res.summary()
    assert summary["attack"] == "pgd" and 0 <= summary["accuracy"] <= 1


def test_keep_confident_is_at_least_as_strong(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    kw = {"eps": 0.08, "steps": 15, "step_size": 0.03}
    last = attacks.build("pgd", **kw)(clf, test.x, test.y)
    best = attacks.build("pgd", keep="confident", **kw)(clf, test.x, test.y)
    assert best.accuracy <= last.accuracy
    assert float((best.x_adv - test.x).abs().max()) <= 0.08 + 1e-6
    with pytest.raises(ValueError, match="keep must be"):
        attacks.build("pgd", keep="best")
