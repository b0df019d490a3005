"""Transfer attacks (issue #6): ``TransferAttack`` (surrogate + attack, target scored by forward
queries only) and the Papernot et al. 2017 substitute pipeline (labels-only oracle, Jacobian
dataset augmentation, exact query counts, transfer far above random noise)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from advlab import attacks, data, models
from advlab.attacks.transfer import TransferAttack
from advlab.data import TensorData
from advlab.defenses.training import TrainConfig, train
from advlab.evaluation.substitute import split_seed, substitute_attack, train_substitute
from advlab.models import Classifier, GradientAccessError, query_access

Digits = tuple[Classifier, TensorData]


@pytest.fixture(scope="module")
def surrogate() -> Classifier:
    """An MLP trained separately on the digits train split (another architecture than the
    LeNet target, same task): a plain transfer source. About 1 s."""
    clf = models.build("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[128])
    cfg = TrainConfig(epochs=8, batch_size=64, lr=3e-3, device="cpu", seed=1)
    train(clf, data.load("digits", "train"), None, cfg)
    return clf


class _Spy(nn.Module):
    """Counts the inputs a Classifier is queried on (independent of advlab's own counters)."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__()
        self.inner = inner
        self.seen = 0

    def forward(self, x: Tensor) -> Tensor:
        self.seen += x.shape[0]
        return self.inner.logits(x, check=False)


def _batch(digits: Digits, n: int = 120) -> tuple[Tensor, Tensor]:
    _, test = digits
    return test.x[:n].clone(), test.y[:n].clone()


def _noise_rate(clf: Classifier, x: Tensor, y: Tensor, eps: float) -> float:
    g = torch.Generator().manual_seed(0)
    sign = torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1
    with torch.no_grad():
        pred = clf.logits((x + eps * sign).clamp(0, 1)).argmax(1)
    return float((pred != y).float().mean())


# ------------------------------------------------------------------------ TransferAttack
def test_labels_only_target_no_gradients_and_counts(
    digits_model: Digits, surrogate: Classifier
) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model)
    oracle = query_access(clf, "labels")
    atk = TransferAttack.from_name(surrogate, "fgsm", eps=0.3)
    res, src = atk.run(oracle, x, y)
    assert oracle.queries == x.shape[0]  # one scoring query per sample, nothing else
    assert res.queries.tolist() == [1] * len(y) and int(res.gradients.sum()) == 0
    assert int(src.gradients.sum()) == len(y)  # FGSM's one gradient, on the surrogate
    assert res.attack == "transfer:fgsm" and res.eps == 0.3 and res.norm == "linf"
    # results refer to the target: success = the target's label differs from y
    with torch.no_grad():
        pred = clf.logits(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred != y)
    # the points are exactly FGSM's on the surrogate
    assert torch.equal(res.x_adv, attacks.build("fgsm", eps=0.3)(surrogate, x, y).x_adv)
    # sensible rates: white-box on the surrogate > transfer to the target >> noise of eps 0.3
    assert src.success_rate >= 0.9
    assert res.success_rate >= _noise_rate(clf, x, y, 0.3) + 0.25
    assert res.success_rate >= 0.5
    # a gradient attack on the query-only target itself is refused
    with pytest.raises(GradientAccessError):
        attacks.build("fgsm", eps=0.3)(oracle, x, y)


def test_invariants_modes_mutation_determinism(digits_model: Digits, surrogate: Classifier) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 64)
    x0, y0 = x.clone(), y.clone()
    atk = TransferAttack(surrogate, attacks.build("pgd", eps=0.15, steps=5, step_size=0.05))
    params = [p.requires_grad for m in (clf, surrogate) for p in m.parameters()]
    clf.train()
    surrogate.train()
    rng = torch.random.get_rng_state()
    try:
        a = atk(clf, x, y)
        b = atk(clf, x, y)
        assert clf.training and surrogate.training  # modes restored for both models
    finally:
        clf.eval()
        surrogate.eval()
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert params == [p.requires_grad for m in (clf, surrogate) for p in m.parameters()]
    assert all(p.grad is None for m in (clf, surrogate) for p in m.parameters())
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert float((a.x_adv - x).abs().max()) <= 0.15 + 1e-6
    assert float(a.x_adv.min()) >= 0.0 and float(a.x_adv.max()) <= 1.0
    assert torch.allclose(a.norms, (a.x_adv - x).flatten(1).abs().amax(1))
    # craft: the same points, and the target is never queried
    oracle = query_access(clf, "labels")
    assert torch.equal(atk.craft(oracle, x, y), a.x_adv) and oracle.queries == 0
    assert "surrogate" in repr(atk) and atk.budget() == 0.15


def test_targeted_and_narrower_target_bounds(digits_model: Digits, surrogate: Classifier) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 48)
    oracle = query_access(clf, "labels")
    atk = TransferAttack.from_name(surrogate, "bim", eps=0.3, steps=10, step_size=0.05)
    res = atk(oracle, x, y, target="least-likely")
    assert oracle.queries == len(y)  # least-likely is resolved on the surrogate, not queried
    with torch.no_grad():
        ll = surrogate.logits(x).scatter(1, y.view(-1, 1), float("inf")).argmin(1)
    assert res.target is not None and torch.equal(res.target, ll)
    assert torch.equal(res.success, res.logits_adv.argmax(1) == ll)
    # ILLC's default target (least-likely) applies and is scored as targeted on the target
    illc = TransferAttack.from_name(surrogate, "illc", eps=0.3, steps=5, step_size=0.06)
    assert illc(clf, x, y).target is not None
    # a target with narrower bounds: x_adv is clamped into them, still inside the eps-ball
    narrow = Classifier(clf.net, bounds=(0.0, 0.9), num_classes=10).eval()
    xs = x.clamp(0, 0.9)
    out = TransferAttack.from_name(surrogate, "fgsm", eps=0.3)(narrow, xs, y)
    assert float(out.x_adv.max()) <= 0.9 and float((out.x_adv - xs).abs().max()) <= 0.3 + 1e-6


def test_transfer_attack_errors(digits_model: Digits, surrogate: Classifier) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 8)
    fgsm = attacks.build("fgsm", eps=0.1)
    with pytest.raises(TypeError, match="surrogate must be an advlab Classifier"):
        TransferAttack(surrogate.net, fgsm)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="attack must be an advlab Attack"):
        TransferAttack(surrogate, "fgsm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown"):
        TransferAttack.from_name(surrogate, "no-such-attack")
    five = models.build("mlp", input_shape=(1, 8, 8), num_classes=5)
    with pytest.raises(ValueError, match="number of classes"):
        TransferAttack(five, fgsm)(clf, x, y)
    other = models.build("mlp", input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ValueError, match="surrogate"):
        TransferAttack(other, fgsm)(clf, x, y)
    deepfool = TransferAttack.from_name(surrogate, "deepfool")
    with pytest.raises(ValueError, match="untargeted"):
        deepfool(clf, x, y, target=(y + 1) % 10)
    with pytest.raises(ValueError, match="shape"):
        TransferAttack(surrogate, fgsm)(clf, x, y[:3])


# ------------------------------------------------------------------ substitute (Papernot 2017)
def _settings(**kw: Any) -> dict[str, Any]:
    return {"rounds": 3, "epochs_per_round": 10, **kw}


def test_substitute_queries_exact_and_labels_only(digits_model: Digits) -> None:
    clf, test = digits_model
    spy = _Spy(clf)
    target = Classifier(spy, num_classes=10, input_shape=(1, 8, 8)).eval()
    seed_x, _, _ = split_seed(test.x, test.y, 100)
    rng = torch.random.get_rng_state()
    sub, info = train_substitute(target, seed_x, **_settings())
    assert torch.equal(torch.random.get_rng_state(), rng)
    n = 100
    assert info["oracle_queries"] == n * (1 + 1 + 2) == spy.seen  # n · 2^(rounds-1)
    assert [h["size"] for h in info["history"]] == [n, 2 * n, 4 * n]
    assert [h["new_queries"] for h in info["history"]] == [n, n, 2 * n]
    assert info["train_size"] == 4 * n and info["arch"] == "papernot-a"
    assert isinstance(sub, Classifier) and not sub.training and not target.training
    # labels only: a wrapper that refuses gradients and hides scores gives the same substitute
    sub2, info2 = train_substitute(query_access(clf, "labels"), seed_x, **_settings())
    assert info2["oracle_queries"] == info["oracle_queries"]
    assert all(torch.equal(a, b) for a, b in zip(sub.parameters(), sub2.parameters(), strict=True))
    # periodic step size: the sign of λ flips every tau rounds
    _, info3 = train_substitute(target, seed_x, tau=1, **_settings(epochs_per_round=1))
    assert [h["lam"] for h in info3["history"]] == [None, 0.1, -0.1]


def test_substitute_transfers_far_better_than_noise(digits_model: Digits) -> None:
    clf, test = digits_model
    seed_x, test_x, test_y = split_seed(test.x, test.y, 100, seed=0)
    out = substitute_attack(clf, seed_x, test_x, test_y, eps=0.3, **_settings())
    assert out["oracle_queries"] == 400 and out["evaluation_queries"] == len(test_y)
    assert out["n_test"] == len(test_y) == len(test.y) - 100
    # measured (seed 0): transfer 0.67 vs noise 0.29; substitute accuracy 0.68
    assert out["transfer_success"] >= out["noise_success"] + 0.2
    assert out["substitute_accuracy"] >= 0.45
    assert out["whitebox_success_on_substitute"] >= 0.9
    hist = out["substitute"]["history"]
    assert hist[-1]["substitute_accuracy"] > hist[0]["substitute_accuracy"]  # augmentation helps
    assert abs(out["target_accuracy_adv"] + out["transfer_success"] - 1) < 1e-9


def test_split_seed_balanced(digits_model: Digits) -> None:
    _, test = digits_model
    sx, rx, ry = split_seed(test.x, test.y, 100)
    assert sx.shape[0] == 100 and rx.shape[0] == ry.shape[0] == len(test.y) - 100
    # balanced: 10 per class; the seeds are not in the evaluation set
    flat = test.x.flatten(1)
    idx = [int((flat == s.flatten()).all(1).nonzero()[0]) for s in sx]
    assert torch.bincount(test.y[idx], minlength=10).tolist() == [10] * 10
    first, _, _ = split_seed(test.x, test.y, 7, balanced=False)
    assert torch.equal(first, test.x[:7])


def test_substitute_errors(digits_model: Digits) -> None:
    clf, test = digits_model
    sx = test.x[:20]
    for kw, match in [
        ({"rounds": 0}, "rounds"),
        ({"epochs_per_round": 0}, "epochs_per_round"),
        ({"lam": 0.0}, "lam"),
        ({"tau": 0}, "tau"),
        ({"arch": "no-such-model"}, "no-such-model"),
        ({"arch": "papernot-a", "arch_kwargs": {"width": 3}}, "arch_kwargs"),
    ]:
        with pytest.raises(ValueError, match=match):
            train_substitute(clf, sx, **kw)
    with pytest.raises(ValueError, match="bounds"):
        train_substitute(clf, sx * 2 + 0.5)
    with pytest.raises(ValueError, match="shape"):
        train_substitute(clf, torch.rand(4, 1, 9, 9))
    with pytest.raises(ValueError, match="empty"):
        train_substitute(clf, sx[:0])
    with pytest.raises(TypeError, match="Classifier"):
        train_substitute(clf.net, sx)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config"):
        train_substitute(clf, sx, config={"lr": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="test_y"):
        substitute_attack(clf, sx, test.x[:10], test.y[:9])
    with pytest.raises(ValueError, match="test_y"):
        substitute_attack(clf, sx, test.x[:10], test.y[:10] + 10)
    with pytest.raises(ValueError, match="unknown"):
        substitute_attack(clf, sx, test.x[:10], test.y[:10], attack="nope")
    with pytest.raises(ValueError, match="smaller"):
        split_seed(test.x[:5], test.y[:5], 5)
