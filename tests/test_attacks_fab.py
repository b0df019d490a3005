"""FAB and FAB-T: exact hyperplane-box projections, closed-form distances, behaviour, arguments."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from advlab.attacks import attacks
from advlab.attacks.apgd import APGDCE
from advlab.attacks.fab import FAB, FABT, project_hyperplane_box
from advlab.data import TensorData
from advlab.models import Classifier

Digits = tuple[Classifier, TensorData]
ORD = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}


def _batch(model: Digits, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    _, test = model
    return test.x[:n].clone(), test.y[:n].clone()


def _problem(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Points in the unit box, sparse-ish hyperplanes crossing it, some points on the faces."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, d, generator=g, dtype=torch.float64)
    t[: n // 4, :2], t[n // 4 : n // 2, :2] = 0.0, 1.0
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = w * (torch.rand(n, d, generator=g) > 0.2)
    b = (w * torch.rand(n, d, generator=g, dtype=torch.float64)).sum(1)  # reachable planes
    return t, w, b


# ---------------------------------------------------------------- projection
def _optimum(norm: str, t: Any, w: Any, b: float) -> float:
    """Reference minimal norm from scipy: an LP for Linf / L1, SLSQP for L2."""
    np = pytest.importorskip("numpy")
    opt = pytest.importorskip("scipy.optimize")
    d = len(t)
    box = [(-t[i], 1 - t[i]) for i in range(d)]
    if norm == "l2":
        r = opt.minimize(
            lambda v: v @ v,
            np.zeros(d),
            jac=lambda v: 2 * v,
            constraints=[{"type": "eq", "fun": lambda v: w @ (t + v) - b, "jac": lambda v: w}],
            bounds=box,
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        return float(np.sqrt(r.fun))
    eye = np.eye(d)
    if norm == "l1":  # variables (delta, u), |delta| <= u, minimize sum u
        cost = np.r_[np.zeros(d), np.ones(d)]
        a_ub = np.block([[eye, -eye], [-eye, -eye]])
        extra = [(0, None)] * d
        a_eq = np.r_[w, np.zeros(d)][None]
    else:  # variables (delta, s), |delta_i| <= s, minimize s
        cost = np.r_[np.zeros(d), 1.0]
        a_ub = np.block([[eye, -np.ones((d, 1))], [-eye, -np.ones((d, 1))]])
        extra = [(0, None)]
        a_eq = np.r_[w, 0.0][None]
    r = opt.linprog(cost, a_ub, np.zeros(2 * d), a_eq, [b - w @ t], bounds=box + extra)
    return float(r.fun)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_projection_is_the_exact_minimal_norm_point(norm: str) -> None:
    t, w, b = _problem(24, 10)
    lo, hi = torch.zeros(1, 10, dtype=t.dtype), torch.ones(1, 10, dtype=t.dtype)
    d = project_hyperplane_box(norm, t, w, b, lo, hi)
    z = t + d
    assert bool((z >= -1e-12).all() and (z <= 1 + 1e-12).all())
    assert torch.allclose((w * z).sum(1), b, atol=1e-9)
    size = torch.linalg.vector_norm(d, ord=ORD[norm], dim=1)
    for i in range(len(t)):
        ref = _optimum(norm, t[i].numpy(), w[i].numpy(), float(b[i]))
        assert float(size[i]) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_projection_without_active_box_matches_the_closed_form(norm: str) -> None:
    t, w, b = _problem(16, 8, seed=1)
    t = t - 0.5  # the box [-100, 100] never binds
    d = project_hyperplane_box(norm, t, w, b, torch.tensor(-100.0), torch.tensor(100.0))
    s = ((w * t).sum(1) - b).abs()  # distance = |<w, t> - b| / ||w||_dual
    dual = {"linf": 1.0, "l2": 2.0, "l1": float("inf")}[norm]
    expected = s / torch.linalg.vector_norm(w, ord=dual, dim=1)
    assert torch.allclose(torch.linalg.vector_norm(d, ord=ORD[norm], dim=1), expected)
    if norm == "l2":  # the orthogonal projection
        assert torch.allclose(d, -((w * t).sum(1) - b).unsqueeze(1) * w / (w * w).sum(1, True))


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_unreachable_plane_gives_the_farthest_box_point(norm: str) -> None:
    t = torch.full((2, 3), 0.5)
    w = torch.tensor([[1.0, -2.0, 0.0], [1.0, 1.0, 1.0]])
    b = torch.tensor([100.0, -100.0])  # beyond any point of the unit box
    d = project_hyperplane_box(norm, t, w, b, torch.tensor(0.0), torch.tensor(1.0))
    assert torch.equal(t + d, torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]]))


def test_projection_rejects_unknown_norms() -> None:
    t = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="norm"):
        project_hyperplane_box("l0", t, t, torch.zeros(1), t, t + 1)


def test_projection_is_zero_on_the_plane_and_respects_per_feature_bounds() -> None:
    t, w, b = _problem(8, 6, seed=2)
    on_plane = project_hyperplane_box("l2", t, w, (w * t).sum(1), torch.tensor(0.0), 1.0 + t * 0)
    assert torch.equal(on_plane, torch.zeros_like(t))
    lo, hi = torch.linspace(-0.5, 0.0, 6).view(1, 6), torch.linspace(1.0, 2.0, 6).view(1, 6)
    for norm in ("linf", "l2", "l1"):
        z = t + project_hyperplane_box(norm, t, w, b, lo, hi)
        assert bool((z >= lo - 1e-12).all() and (z <= hi + 1e-12).all())


# ---------------------------------------------------------------- closed form
@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_fab_finds_the_minimal_perturbation_of_a_linear_model(norm: str) -> None:
    """Two classes, f = (w_1 - w_0)·x + (b_1 - b_0): the minimal distance to the boundary is
    |f| / ||w_1 - w_0||_dual (the box does not bind here)."""
    torch.manual_seed(0)
    net = nn.Linear(6, 2)
    clf = Classifier(net, bounds=(-10.0, 10.0), input_shape=(6,), num_classes=2).eval()
    x = torch.rand(8, 6) - 0.5
    with torch.no_grad():
        z = clf(x)
    y = z.argmax(1)
    w = net.weight[1] - net.weight[0]
    dual = {"linf": 1.0, "l2": 2.0, "l1": float("inf")}[norm]
    dist = (z[:, 1] - z[:, 0]).abs() / torch.linalg.vector_norm(w, ord=dual)
    res = FAB(norm=norm, steps=20)(clf, x, y)
    assert bool(res.success.all())
    assert bool((res.gradients == 20).all())  # K - 1 = 1 gradient per step
    assert bool((res.norms >= dist * (1 - 1e-4)).all())
    assert bool((res.norms <= dist * 1.01 + 1e-6).all())


# ---------------------------------------------------------------- behaviour on digits
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.5)])
def test_fab_is_close_to_apgd_at_a_fixed_budget(
    norm: str, eps: float, digits_model: Digits
) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model)
    fab = FAB(norm=norm, steps=20)(clf, x, y)
    apgd = APGDCE(norm=norm, eps=eps, steps=20)(clf, x, y)
    assert fab.success_rate >= 0.95
    assert fab.accuracy_at(eps) <= apgd.accuracy + 0.08
    assert float(fab.x_adv.min()) >= 0.0 and float(fab.x_adv.max()) <= 1.0


def test_fab_t_caps_targets_and_counts_gradients(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 32)
    fab_t = FABT(steps=5, n_target_classes=50)(clf, x, y)  # capped at K - 1 = 9 targets
    correct = clf(x).argmax(1) == y
    assert bool((fab_t.gradients[correct] == 9 * 5).all())  # one gradient per step and target
    assert bool((fab_t.gradients[~correct] == 0).all())  # already misclassified: untouched
    two = FABT(steps=5, n_target_classes=2)(clf, x, y)
    assert fab_t.accuracy_at(0.1) <= two.accuracy_at(0.1)  # more targets, smaller norms


def test_targeted_fab_reaches_the_target(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 32)
    t = (y + 1) % 10
    res = FAB(norm="l2", steps=20)(clf, x, y, target=t)
    assert res.targeted and res.success_rate >= 0.9
    assert torch.equal(res.success, res.logits_adv.argmax(1) == t)
    assert bool((res.gradients <= 20).all())  # one hyperplane: one gradient per step


def test_restarts_never_hurt_and_seed_is_deterministic(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 24)
    one = FAB(norm="l2", steps=10)(clf, x, y)
    a = FAB(norm="l2", steps=10, restarts=3, seed=5)(clf, x, y)
    b = FAB(norm="l2", steps=10, restarts=3, seed=5)(clf, x, y)
    assert torch.equal(a.x_adv, b.x_adv)
    ok = one.success
    assert bool((a.norms[ok] <= one.norms[ok] + 1e-6).all())  # the first run is the same


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"restarts": 0}, "restarts"),
        ({"alpha_max": 1.5}, "alpha_max"),
        ({"beta": 2.0}, "beta"),
        ({"eta": -1.0}, "eta"),
        ({"start_radius": -1.0}, "start_radius"),
        ({"norm": "l0"}, "norm"),
    ],
)
def test_bad_hyperparameters_raise(kwargs: dict[str, Any], match: str) -> None:
    for name in ("fab", "fab-t"):
        with pytest.raises(ValueError, match=match):
            attacks.build(name, **kwargs)
    with pytest.raises(ValueError, match="n_target_classes"):
        FABT(n_target_classes=0)


def test_fab_t_refuses_a_user_target_and_defaults() -> None:
    clf = Classifier(nn.Linear(6, 5), input_shape=(6,), num_classes=5).eval()
    x, y = torch.rand(4, 6), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="untargeted"):
        FABT(steps=2)(clf, x, y, target=torch.ones(4, dtype=torch.long))
    cfg = FAB().config()
    assert (cfg["steps"], cfg["alpha_max"], cfg["eta"], cfg["beta"]) == (100, 0.1, 1.05, 0.9)
    assert FAB(norm="l2").start_radius == 1.0 and FABT().n_target_classes == 9
