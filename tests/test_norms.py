"""Lp-ball strategies: projections are exact, random points lie in the ball, directions are
steepest ascent (<grad, d> equals the dual norm of grad)."""

from __future__ import annotations

import pytest
import torch

from advlab.attacks.norms import get_norm

NAMES = ["linf", "l2", "l1", "l0"]


@pytest.mark.parametrize("name", NAMES)
def test_projection_lands_in_the_ball_and_keeps_inside_points(name: str) -> None:
    lp = get_norm(name)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(16, 3, 5, 5, generator=g)
    eps = 7.0 if name == "l0" else 0.5
    proj = lp.project(v, eps)
    assert bool((lp.size(proj) <= eps * (1 + 1e-5) + 1e-6).all())
    inside = lp.project(proj, eps)
    assert torch.allclose(inside, proj, atol=1e-6)
    per_sample = torch.linspace(0.1, 1.0, 16) * (10 if name == "l0" else 1)
    assert bool((lp.size(lp.project(v, per_sample)) <= per_sample + 1e-5).all())


def test_l1_projection_is_soft_thresholding_onto_the_sphere() -> None:
    lp = get_norm("l1")
    v = torch.randn(8, 50, generator=torch.Generator().manual_seed(1))
    out = lp.project(v, 2.0)
    assert torch.allclose(out.abs().sum(1), torch.full((8,), 2.0), atol=1e-4)
    for row_v, row_o in zip(v, out, strict=True):
        kept = row_o != 0
        theta = row_v.abs()[kept] - row_o.abs()[kept]
        assert torch.allclose(theta, theta[0].expand_as(theta), atol=1e-5)  # one threshold
        assert bool((row_v.abs()[~kept] <= theta[0] + 1e-5).all())
        assert bool((torch.sign(row_o[kept]) == torch.sign(row_v[kept])).all())


@pytest.mark.parametrize("name", NAMES)
def test_random_points_are_inside_the_ball(name: str) -> None:
    lp = get_norm(name)
    eps = 5.0 if name == "l0" else 0.3
    r = lp.random((64, 1, 6, 6), eps, torch.Generator().manual_seed(2), torch.device("cpu"))
    assert bool((lp.size(r) <= eps * (1 + 1e-5)).all())
    assert float(lp.size(r).mean()) > 0


@pytest.mark.parametrize(("name", "dual"), [("linf", 1.0), ("l2", 2.0)])
def test_direction_is_steepest_ascent(name: str, dual: float) -> None:
    lp = get_norm(name)
    grad = torch.randn(10, 30, generator=torch.Generator().manual_seed(3))
    d = lp.direction(grad)
    assert torch.allclose(lp.size(d), torch.ones(10), atol=1e-5)
    assert torch.allclose((grad * d).sum(1), grad.norm(p=dual, dim=1), atol=1e-4)


def test_unknown_norm() -> None:
    with pytest.raises(ValueError, match="norm must be one of"):
        get_norm("l3")
