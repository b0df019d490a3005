"""DeepFool and JSMA: closed forms on linear models, behaviour on the digits LeNet, arguments."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advlab.attacks import jsma as jsma_module
from advlab.attacks.deepfool import DeepFool
from advlab.attacks.jacobian import _backward_rows, jacobian, logits_jacobian
from advlab.attacks.jsma import JSMA, best_pairs
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks
from advlab.data import TensorData
from advlab.models import Classifier

Digits = tuple[Classifier, TensorData]
OVERSHOOT = 0.02


def _linear(k: int, d: int = 20, seed: int = 0) -> tuple[Classifier, Tensor, Tensor]:
    """A float64 affine classifier ``z = W x + b`` with wide bounds (no clipping) and 8 inputs
    labelled with its own predictions (so none is already misclassified)."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Linear(d, k).double()
    with torch.no_grad():
        net.weight.copy_(torch.randn(k, d, generator=gen, dtype=torch.float64))
        net.bias.copy_(torch.randn(k, generator=gen, dtype=torch.float64))
    clf = Classifier(net, bounds=(-100.0, 100.0)).eval()
    x = torch.randn(8, d, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = clf(x).argmax(1)
    return clf, x, y


def _distances(clf: Classifier, x: Tensor, y: Tensor, dual: float) -> Tensor:
    """Exact distance to the nearest decision boundary of an affine classifier (dual norm)."""
    lin = clf.net
    assert isinstance(lin, nn.Linear)
    w = lin.weight.detach()  # (K, D)
    with torch.no_grad():
        z = clf(x)  # (N, K)
    f = (z - z.gather(1, y.view(-1, 1))).abs()  # (N, K)
    wk = w.unsqueeze(0) - w[y].unsqueeze(1)  # (N, K, D)
    dist = f / torch.linalg.vector_norm(wk, ord=dual, dim=2)
    nearest: Tensor = dist.scatter(1, y.view(-1, 1), float("inf")).min(1).values
    return nearest


# ------------------------------------------------------------------------- DeepFool closed forms
@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_deepfool_two_class_linear_is_exact(norm: str, dual: float) -> None:
    clf, x, y = _linear(2)
    res = DeepFool(norm=norm)(clf, x, y)
    lin = clf.net
    assert isinstance(lin, nn.Linear)
    w = lin.weight[1] - lin.weight[0]
    b = lin.bias[1] - lin.bias[0]
    expected = (x @ w + b).abs() / torch.linalg.vector_norm(w, ord=dual) * (1 + OVERSHOOT)
    assert bool(res.success.all())
    torch.testing.assert_close(res.norms, expected, rtol=1e-4, atol=0.0)
    # one step, then the check that sees the flip: 2 forward passes with 1 gradient each,
    # plus the base class's clean and final forward passes
    assert res.gradients.tolist() == [2] * 8 and res.queries.tolist() == [4] * 8


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_deepfool_multiclass_linear_first_step_is_exact(norm: str, dual: float) -> None:
    clf, x, y = _linear(5, seed=1)
    res = DeepFool(norm=norm)(clf, x, y)  # candidates 10 > K: capped at 5
    expected = _distances(clf, x, y, dual) * (1 + OVERSHOOT)
    assert bool(res.success.all())
    torch.testing.assert_close(res.norms, expected, rtol=1e-4, atol=0.0)
    assert res.gradients.tolist() == [2 * 4] * 8  # 2 passes x (K - 1) gradients


def test_deepfool_overshoot_zero_lands_on_the_boundary() -> None:
    clf, x, y = _linear(3, seed=2)
    res = DeepFool(overshoot=0.0, steps=1)(clf, x, y)
    torch.testing.assert_close(res.norms, _distances(clf, x, y, 2.0), rtol=1e-6, atol=0.0)


def test_deepfool_stays_in_per_feature_bounds() -> None:
    clf0, x, y = _linear(4, d=6, seed=3)
    low = torch.full((6,), -1.0)
    low[0] = -0.1
    clf = Classifier(clf0.net, bounds=(low, torch.ones(6))).eval()
    x = x.clamp(-0.1, 0.1)
    with torch.no_grad():
        y = clf(x).argmax(1)
    for norm in ("l2", "linf"):
        res = DeepFool(norm=norm)(clf, x, y)
        assert bool((res.x_adv >= low.double() - 1e-12).all())
        assert bool((res.x_adv <= 1.0 + 1e-12).all())


def _box_minimum(x: Tensor, w: Tensor, b: Tensor, dual: float) -> Tensor:
    """``(N,)``: for ``x (N, D)`` and ``w`` (``(D,)`` or one row per sample), the exact smallest
    perturbation (L2 for ``dual = 2``, Linf for ``dual = 1``) that makes
    ``w·x' + b >= 0`` with ``x'`` in [0, 1]: ``x' = clip(x + t·d)``, ``d = w`` (L2) or
    ``sign(w)`` (Linf), the smallest such ``t`` found by bisection (``w·x' + b`` grows with t)."""
    d = w if dual == 2.0 else w.sign()
    lo, hi = torch.zeros(len(x), dtype=x.dtype), torch.full((len(x),), 100.0, dtype=x.dtype)
    for _ in range(200):
        mid = (lo + hi) / 2
        ok = ((x + mid.view(-1, 1) * d).clamp(0, 1) * w).sum(1) + b >= 0
        lo, hi = torch.where(ok, lo, mid), torch.where(ok, mid, hi)
    delta = (x + hi.view(-1, 1) * d).clamp(0, 1) - x
    out: Tensor = torch.linalg.vector_norm(delta, ord=2.0 if dual == 2.0 else float("inf"), dim=1)
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_deepfool_at_the_box_reaches_the_box_constrained_minimum(
    norm: str, dual: float, dtype: torch.dtype
) -> None:
    """Two features in [0, 1]; the nearest boundary lies across feature 0, which sits at its
    lower bound (the third point: reaches it) with a gradient pushing it out of the box. Every
    step is the paper's one along the full gradient, clipped (the clipped part dropped, 1e-4
    added to the cut step's length), so the iterates are ``clip(x + t·d)`` with growing ``t``:
    they reach the exact box-constrained minimum from the clean side, the overshoot absorbed by
    the box. Without the 1e-4 they stall just short of the boundary in float32; leaving the
    pinned feature out of the step instead lands at ``(1 + overshoot)`` times the minimum.
    """
    net = nn.Linear(2, 2).to(dtype)
    with torch.no_grad():  # f = z_1 - z_0 = -x_0 + x_1 - 0.9: class 0 at the points below
        net.weight.copy_(torch.tensor([[0.5, -0.5], [-0.5, 0.5]]))
        net.bias.copy_(torch.tensor([0.45, -0.45]))
    clf = Classifier(net, bounds=(0.0, 1.0)).eval()
    x = torch.tensor([[0.0, 0.1], [0.0, 0.5], [0.3, 0.2], [0.0, 0.85]], dtype=dtype)
    y = torch.zeros(4, dtype=torch.long)
    w, b = torch.tensor([-1.0, 1.0]), torch.tensor(-0.9)
    best = _box_minimum(x.double(), w.double(), b.double(), dual)
    for overshoot in (0.0, OVERSHOOT):
        res = DeepFool(norm=norm, overshoot=overshoot)(clf, x, y)
        norms = res.norms.double()
        assert bool(res.success.all())
        assert bool((norms >= best - 1e-6).all())
        assert bool((norms <= best + 1e-3).all()), (norms, best)
        assert float(res.gradients.max()) < 2 * 30  # a few dozen iterations at most


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_deepfool_random_boxed_linear_is_near_the_box_minimum(norm: str, dual: float) -> None:
    """A random 2-class affine model in [0, 1], inputs with ~60% of their features at a bound:
    never below the exact box-constrained minimum, never above it by more than the overshoot
    (plus the 1e-4 push)."""
    gen = torch.Generator().manual_seed(4)
    d = 20
    net = nn.Linear(d, 2).double()
    with torch.no_grad():
        net.weight.copy_(torch.randn(2, d, generator=gen, dtype=torch.float64))
        net.bias.zero_()
    x = torch.rand(16, d, generator=gen, dtype=torch.float64)
    x = torch.where(x < 0.3, 0.0, torch.where(x > 0.7, 1.0, x))
    clf = Classifier(net, bounds=(0.0, 1.0)).eval()
    with torch.no_grad():
        y = clf(x).argmax(1)
    w = net.weight[1] - net.weight[0]
    sign = 1.0 - 2.0 * y.double()  # f = sign·(w·x): the other class wins when f >= 0
    best = _box_minimum(x, sign.view(-1, 1) * w, torch.zeros((), dtype=torch.float64), dual)
    res = DeepFool(norm=norm)(clf, x, y)
    assert bool(res.success.all())
    assert bool((res.norms >= best - 1e-9).all())
    assert bool((res.norms <= best * (1 + OVERSHOOT) + 1e-3).all()), res.norms / best


# ---------------------------------------------------------------------- DeepFool on the LeNet
@pytest.mark.parametrize(("norm", "limit"), [("l2", 1.0), ("linf", 0.2)])
def test_deepfool_breaks_the_digits_model(digits_model: Digits, norm: str, limit: float) -> None:
    clf, test = digits_model
    x, y = test.x[:100], test.y[:100]
    res = DeepFool(norm=norm)(clf, x, y)
    assert res.success_rate >= 0.99
    assert float(res.norms[res.success].mean()) < limit
    # a few iterations (about 5 on average, 9 gradients each): box-cut steps make only part of
    # their linearized progress, so more than the 2-3 of the unbounded case
    assert float(res.gradients.float().mean()) < 9 * 8


# --------------------------------------------------------------------------------------- JSMA
def test_jsma_reaches_its_target_with_few_features(digits_model: Digits) -> None:
    clf, test = digits_model
    x, y = test.x[:100], test.y[:100]
    target = (y + 1 + torch.arange(100) % 9) % 10  # every other class, none equal to y
    for gamma, rate in ((0.145, 0.5), (0.3, 0.85)):
        res = JSMA(gamma=gamma)(clf, x, y, target=target)
        assert res.target is not None and torch.equal(res.target, target)
        assert res.success_rate >= rate
        assert float(res.norms.max()) <= gamma * 64
        assert bool((res.x_adv >= x).all())  # theta = +1 only increases features


def test_jsma_default_target_is_random_and_seeded(digits_model: Digits) -> None:
    clf, test = digits_model
    x, y = test.x[:30], test.y[:30]
    a, b = JSMA(seed=5)(clf, x, y), JSMA(seed=5)(clf, x, y)
    assert a.target is not None and b.target is not None
    assert torch.equal(a.target, b.target) and bool((a.target != y).all())
    assert torch.equal(a.x_adv, b.x_adv)


@pytest.mark.parametrize("saliency", ["probs", "logits"])
def test_jsma_decreasing_features(digits_model: Digits, saliency: str) -> None:
    clf, test = digits_model
    x, y = test.x[:100], test.y[:100]
    res = JSMA(theta=-1, gamma=0.3, saliency=saliency)(clf, x, y)
    assert res.success_rate >= 0.5
    assert bool((res.x_adv <= x).all())
    changed = res.x_adv != x
    assert bool((res.x_adv[changed] == 0.0).all())  # a -1 step saturates [0, 1] features
    assert float(res.norms.max()) <= 0.3 * 64


def test_best_pairs_matches_brute_force_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    n, nf = 7, 9
    alpha = torch.randn(n, nf, generator=gen)
    beta = torch.randn(n, nf, generator=gen)
    dom = torch.rand(n, nf, generator=gen) < 0.7
    for theta in (1.0, -1.0):
        pairs, found = best_pairs(alpha, beta, dom, theta)
        monkeypatch.setattr(jsma_module, "PAIR_BUDGET", nf * nf * 2)  # chunks of 2 samples
        chunked = best_pairs(alpha, beta, dom, theta)
        monkeypatch.undo()
        assert torch.equal(chunked[0], pairs) and torch.equal(chunked[1], found)
        for i in range(n):
            best, arg = 0.0, None
            for p in range(nf):
                for q in range(p + 1, nf):
                    a, b = alpha[i, p] + alpha[i, q], beta[i, p] + beta[i, q]
                    ok = (a > 0 and b < 0) if theta > 0 else (a < 0 and b > 0)
                    if ok and dom[i, p] and dom[i, q] and float(-a * b) > best:
                        best, arg = float(-a * b), (p, q)
            assert bool(found[i]) == (arg is not None)
            if arg is not None:
                assert tuple(pairs[i].tolist()) == arg


# ------------------------------------------------------------------------------------ Jacobian
class _NoVmap(torch.autograd.Function):
    """Identity whose backward reads a Python number, which batched (vmapped) backward refuses."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, g: Tensor) -> Tensor:
        float(g.sum().item())
        return g


def test_jacobian_matches_autograd_and_counts(digits_model: Digits) -> None:
    clf, test = digits_model
    x = test.x[:3]
    p = Problem(clf, x, test.y[:3], None, torch.Generator())
    logits, cls, jac = logits_jacobian(p, x, p.all)
    torch.testing.assert_close(logits, clf(x))
    assert jac.shape == (3, 10, 1, 8, 8) and cls.shape == (3, 10)
    for i in range(3):
        ref = torch.autograd.functional.jacobian(  # type: ignore[no-untyped-call]
            lambda v: clf(v.unsqueeze(0))[0], x[i]
        )
        torch.testing.assert_close(jac[i], ref, rtol=1e-5, atol=1e-6)
    assert p.gradients.tolist() == [10] * 3 and p.queries.tolist() == [1] * 3
    # the fallback (one backward pass per output) gives the same rows
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        out = _NoVmap.apply(clf(xg))  # type: ignore[no-untyped-call]
        rows = _backward_rows(out, xg)
    torch.testing.assert_close(rows, jac)
    _, out2, jac2 = jacobian(p, x, p.all, lambda z: z.sum(1, keepdim=True))
    torch.testing.assert_close(jac2[:, 0], jac.sum(1))
    assert out2.shape == (3, 1) and p.gradients.tolist() == [11] * 3


# ------------------------------------------------------------------------------ arguments
def test_registry_names() -> None:
    assert attacks.get("deepfool") is DeepFool and attacks.get("jsma") is JSMA


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gamma": 0.0},
        {"gamma": 1.5},
        {"gamma": -0.1},
        {"gamma": True},
        {"theta": 0.5},
        {"theta": 2},
        {"theta": True},
        {"saliency": "softmax"},
        {"norm": "l2"},
    ],
)
def test_jsma_bad_args_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        JSMA(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"norm": "l0"}, {"norm": "l1"}, {"steps": 0}, {"candidates": 1}, {"overshoot": -0.1}],
)
def test_deepfool_bad_args_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DeepFool(**kwargs)  # type: ignore[arg-type]


def test_deepfool_is_untargeted(digits_model: Digits) -> None:
    clf, test = digits_model
    x, y = test.x[:4], test.y[:4]
    with pytest.raises(ValueError, match="untargeted"):
        DeepFool()(clf, x, y, target=(y + 1) % 10)
    with pytest.raises(ValueError, match="untargeted"):
        DeepFool()(clf, x, y, target="random")


def test_jsma_target_equal_to_label_raises(digits_model: Digits) -> None:
    clf, test = digits_model
    x, y = test.x[:4], test.y[:4]
    with pytest.raises(ValueError, match="target equals the true label"):
        JSMA()(clf, x, y, target=y)
