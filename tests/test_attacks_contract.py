"""Contract tests run over every registered attack (DESIGN §8)."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest
import torch

from advlab import attacks
from advlab.attacks import Attack, BudgetAttack
from advlab.data import TensorData
from advlab.models import Classifier

# small budgets so the whole file stays fast; every registered attack must appear here
FAST: dict[str, dict[str, Any]] = {
    "fgsm": {"eps": 0.2},
    "fgm": {"eps": 1.0},
    "bim": {"eps": 0.2, "steps": 5, "step_size": 0.05},
    "illc": {"eps": 0.2, "steps": 5, "step_size": 0.05},
    "pgd": {"eps": 0.2, "steps": 5, "step_size": 0.05},
    "mi-fgsm": {"eps": 0.2, "steps": 5},
    "rand-fgsm": {"eps": 0.2, "alpha": 0.05},
    "noise-fooling": {"eps": 0.2, "steps": 5, "step_size": 0.05},
    "deepfool": {"steps": 5},
    "cw-l2": {"steps": 20, "binary_search_steps": 3, "initial_const": 1.0, "lr": 0.05},
    "cw-linf": {"steps": 10, "initial_const": 0.01, "largest_const": 0.1},
    "cw-l0": {"steps": 10, "lr": 0.05, "initial_const": 1.0, "largest_const": 8.0},
    "apgd-ce": {"eps": 0.2, "steps": 5},
    "apgd-dlr": {"eps": 0.2, "steps": 5},
    "apgd-t": {"eps": 0.2, "steps": 5, "n_target_classes": 3},
    "fab": {"steps": 5},
    "fab-t": {"steps": 5, "n_target_classes": 2},
    "jsma": {"gamma": 0.15},
    "hsja": {"steps": 2, "max_queries": 300},
    "spatial": {"n_translations": 3, "n_rotations": 5},
    "lighting": {"n_brightness": 3, "n_contrast": 3, "n_gamma": 3},
    "square": {"eps": 0.2, "n_queries": 50},
    "one-pixel": {"population": 20, "generations": 3},
}
TARGET: dict[str, Any] = {"noise-fooling": "random"}


def test_every_attack_is_covered() -> None:
    assert set(attacks.names()) == set(FAST)


def _build(name: str, **extra: Any) -> Attack:
    return attacks.build(name, **{**FAST[name], **extra})


def _batch(model: tuple[Classifier, TensorData], n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    _, test = model
    return test.x[:n].clone(), test.y[:n].clone()


@pytest.mark.parametrize("name", sorted(FAST))
def test_bounds_ball_shapes_and_no_side_effects(
    name: str, digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model)
    x0, y0 = x.clone(), y.clone()
    clf.train()  # the attack must run in eval mode and then restore train mode
    flags = [p.requires_grad for p in clf.parameters()]
    atk = _build(name)
    res = atk(clf, x, y, target=TARGET.get(name))
    assert clf.training
    clf.eval()
    assert [p.requires_grad for p in clf.parameters()] == flags
    assert all(p.grad is None for p in clf.parameters())
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.success.shape == (16,) and res.success.dtype == torch.bool
    assert res.norms.shape == (16,) and res.logits_adv.shape == (16, 10)
    assert res.queries.shape == (16,) and bool((res.queries >= 1).all())
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    if isinstance(atk, BudgetAttack):
        size = atk.lp.size(res.x_adv - x)
        assert float(size.max()) <= atk.eps * (1 + 1e-6) + 1e-6
        assert torch.allclose(size, res.norms)
    with torch.no_grad():
        assert torch.allclose(clf(res.x_adv), res.logits_adv, atol=1e-5)
    pred = res.logits_adv.argmax(1)
    expected = pred == res.target if res.target is not None else pred != y
    assert torch.equal(res.success, expected)


@pytest.mark.parametrize("name", sorted(FAST))
def test_same_seed_same_result_and_batch_of_one(
    name: str, digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 6)
    target = TARGET.get(name)
    a = _build(name, seed=3)(clf, x, y, target=target)
    b = _build(name, seed=3)(clf, x, y, target=target)
    assert torch.equal(a.x_adv, b.x_adv)
    one = _build(name)(clf, x[:1], y[:1], target=target)
    assert one.x_adv.shape == x[:1].shape


@pytest.mark.parametrize("name", sorted(FAST))
def test_bad_input_raises_clearly(name: str, digits_model: tuple[Classifier, TensorData]) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 4)
    atk = _build(name)
    t = TARGET.get(name)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        atk(clf, x, y[:3], target=t)
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        atk(clf, x, y + 10, target=t)
    with pytest.raises(TypeError, match="integer class indices"):
        atk(clf, x, y.float(), target=t)
    with pytest.raises(ValueError, match="outside the model's bounds"):
        atk(clf, x + 2, y, target=t)
    with pytest.raises(TypeError, match="Classifier"):
        atk(clf.net, x, y, target=t)
    if atk.supports_targeted:
        with pytest.raises(ValueError, match="target equals the true label"):
            atk(clf, x, y, target=y)
    if isinstance(atk, BudgetAttack):
        with pytest.raises(ValueError, match="eps"):
            _build(name, eps=-0.1)


BUDGET = sorted(n for n in FAST if issubclass(attacks.attacks.get(n), BudgetAttack))


@pytest.mark.parametrize("name", [n for n in BUDGET if n != "noise-fooling"])
def test_eps_zero_is_the_identity(name: str, digits_model: tuple[Classifier, TensorData]) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model)
    kw = {"alpha": 0.0} if name == "rand-fgsm" else {}
    res = _build(name, eps=0.0, **kw)(clf, x, y)
    assert torch.equal(res.x_adv, x)


def _takes(name: str, arg: str) -> bool:
    return arg in inspect.signature(attacks.attacks.get(name)).parameters


RESTARTS = [
    (n, es) for n in sorted(FAST) if _takes(n, "restarts") for es in (False, True)
    if es is False or _takes(n, "early_stop")
]  # fmt: skip


@pytest.mark.parametrize(("name", "early_stop"), RESTARTS)
def test_restarts_keep_the_first_runs_results_and_work_on_the_rest(
    name: str, early_stop: bool, digits_model: tuple[Classifier, TensorData]
) -> None:
    # with early stop, restarts after the first used to be skipped (a mask aliasing bug)
    clf, _ = digits_model
    x, y = _batch(digits_model, 32)
    kw: dict[str, Any] = {"early_stop": True} if early_stop else {}
    if "eps" in FAST[name]:
        kw["eps"] = 0.05  # a small budget leaves robust inputs for the later runs
    one = _build(name, restarts=1, **kw)(clf, x, y)
    three = _build(name, restarts=3, **kw)(clf, x, y)
    assert bool((three.success | ~one.success).all())  # the first run is the one-run attack
    if name not in BUDGET:  # minimum-norm (FAB): later runs may only shrink the perturbation
        both = one.success & three.success
        assert bool((three.norms[both] <= one.norms[both] + 1e-6).all())
        return
    robust = ~three.success
    assert bool(robust.any())
    assert bool((three.queries[robust] > one.queries[robust]).all())


def test_mode_restored_when_the_attack_raises(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 4)
    clf.train()
    try:
        with pytest.raises(ValueError):
            attacks.build("pgd")(clf, x, y, target=torch.full((4,), 99))
        assert clf.training and all(p.requires_grad for p in clf.parameters())
    finally:
        clf.eval()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(FAST))
def test_cuda_results_stay_on_the_device_and_keep_the_invariants(
    name: str, digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, _ = digits_model
    gpu = copy.deepcopy(clf).cuda().eval()
    x, y = (t.cuda() for t in _batch(digits_model, 8))
    x0 = x.clone()
    target = TARGET.get(name)
    atk = _build(name, seed=5)
    res = atk(gpu, x, y, target=target)
    again = _build(name, seed=5)(gpu, x, y, target=target)
    assert torch.equal(x, x0) and not gpu.training
    assert all(p.grad is None for p in gpu.parameters())
    for t in (res.x_adv, res.success, res.norms, res.logits_adv, res.queries):
        assert t.device.type == "cuda"
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    if isinstance(atk, BudgetAttack):
        assert float(atk.lp.size(res.x_adv - x).max()) <= atk.eps * (1 + 1e-6) + 1e-6
    with torch.no_grad():
        pred = gpu(res.x_adv).argmax(1)
    expected = pred == res.target if res.target is not None else pred != y
    assert torch.equal(res.success, expected)
    assert torch.allclose(res.x_adv, again.x_adv, atol=1e-5)
    one = _build(name)(gpu, x[:1], y[:1], target=target)
    assert one.x_adv.device.type == "cuda" and one.x_adv.shape == x[:1].shape
