"""PGD with estimated gradients (issue 6): SPSA and NES use forward queries only."""

from __future__ import annotations

import pytest
import torch

from advlab import attacks
from advlab.attacks.losses import get_loss
from advlab.attacks.oracles import gradient_oracle
from advlab.attacks.problem import Problem
from advlab.data import TensorData
from advlab.models import Classifier, query_access


@pytest.mark.parametrize("gradient", ["spsa", "nes"])
def test_estimated_gradient_pgd_is_black_box_and_works(
    gradient: str, digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, test = digits_model
    x, y = test.x[:40], test.y[:40]
    q = query_access(clf, "scores")
    atk = attacks.build(
        "pgd", eps=0.2, steps=10, step_size=0.05, gradient=gradient, samples=32, early_stop=True
    )
    res = atk(q, x, y)
    assert int(res.gradients.sum()) == 0
    assert q.queries == int(res.queries.sum())
    # each step costs 2 * samples + 1 queries per still-active input
    assert int(res.queries.max()) <= 1 + 10 * (2 * 32 + 1) + 1
    white = attacks.build("pgd", eps=0.2, steps=10, step_size=0.05, early_stop=True)(clf, x, y)
    clean_acc = float((clf(x).argmax(1) == y).float().mean())
    assert res.accuracy < clean_acc - 0.3  # a real attack
    assert res.accuracy <= white.accuracy + 0.2  # not far from exact gradients
    assert float((res.x_adv - x).abs().max()) <= 0.2 + 1e-6
    again = atk(q, x, y)
    assert torch.equal(again.x_adv, res.x_adv)


def test_estimate_points_along_the_true_gradient(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    clf, test = digits_model
    x, y = test.x[:8], test.y[:8]
    p = Problem(clf, x, y, None, torch.Generator().manual_seed(0))
    loss = get_loss("ce")
    _, exact, _ = p.loss_grad(x, p.all, loss)
    for name in ("spsa", "nes"):
        _, est, _ = gradient_oracle(name, samples=2000, size=1e-3)(p, x, p.all, loss)
        cos = torch.nn.functional.cosine_similarity(est.flatten(1), exact.flatten(1))
        assert float(cos.min()) > 0.6, name


def test_bad_oracle_arguments() -> None:
    with pytest.raises(ValueError, match="gradient"):
        attacks.build("pgd", gradient="finite")
    with pytest.raises(ValueError, match="fd_size"):
        attacks.build("pgd", gradient="spsa", fd_size=0)
    with pytest.raises(ValueError, match="samples"):
        attacks.build("pgd", gradient="nes", samples=0)
