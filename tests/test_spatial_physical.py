"""Spatial and lighting attacks (Engstrom et al. 2019) and the print-and-photo simulator with the
destruction rate (Kurakin et al. 2017) and EOT through it (Athalye et al. 2018)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from advlab import attacks
from advlab.attacks import PGD
from advlab.attacks.physical import (
    JPEG,
    ColorShift,
    DefocusBlur,
    Exposure,
    MotionBlur,
    Perspective,
    PrintPhoto,
    RandomTransform,
    Resample,
    SensorNoise,
    destruction_rate,
    photographed,
)
from advlab.attacks.spatial import Lighting, Spatial, rotate_translate
from advlab.data import TensorData
from advlab.models import Classifier, eot, query_access

Digits = tuple[Classifier, TensorData]


def _batch(digits: Digits, n: int) -> tuple[Tensor, Tensor]:
    _, test = digits
    return test.x[:n].clone(), test.y[:n].clone()


# ----------------------------------------------------------------------------- spatial
def test_registered_with_names() -> None:
    assert isinstance(attacks.build("spatial"), Spatial)
    assert isinstance(attacks.build("lighting"), Lighting)
    assert Spatial().name == "spatial" and Lighting().name == "lighting"


def test_rotation_and_translation_directions() -> None:
    im = torch.zeros(1, 1, 9, 9)
    im[0, 0, 4, 6:] = 1.0  # a bar right of the centre
    up = rotate_translate(im, 90.0)  # counter-clockwise on screen: the bar points up
    assert torch.allclose(up[0, 0, :3, 4], torch.ones(3), atol=1e-5)
    assert float(up.sum()) == pytest.approx(3.0, abs=1e-4)
    down = rotate_translate(im, 0.0, 0.0, 2 / 9)  # 2 px down
    assert torch.allclose(down[0, 0, 6], im[0, 0, 4], atol=1e-5)
    assert torch.equal(rotate_translate(im, 0.0), im)  # the identity is exact
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        rotate_translate(im[0], 10.0)


def test_worst_of_k_at_least_as_strong_as_one_random_transform(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 64)
    one = Spatial(search="worst-of-k", k=1, seed=5)(clf, x, y)
    ten = Spatial(search="worst-of-k", k=10, seed=5)(clf, x, y)
    # same seed: the k = 10 draws start with the k = 1 draw, so every success is kept
    assert not bool((one.success & ~ten.success).any())
    assert ten.success_rate >= one.success_rate
    assert ten.success_rate > one.success_rate  # and on this model it is strictly stronger
    assert bool((ten.queries == 11).all()) and bool((one.queries == 2).all())
    grid = Spatial()(clf, x, y)  # the paper's 775-point grid
    assert bool((grid.queries == 775).all())
    assert grid.success_rate >= ten.success_rate
    assert grid.eps is None and grid.norm == "linf"
    assert torch.allclose(grid.norms, (grid.x_adv - x).flatten(1).abs().amax(1))


def test_grid_contains_the_identity(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 64)
    wrong = clf.predict(x) != y
    assert bool(wrong.any())  # the case below needs some clean errors
    none = Spatial(max_rotation=0, max_translation=0)(clf, x, y)
    assert torch.equal(none.x_adv, x) and torch.equal(none.success, wrong)
    assert bool((none.queries == 1).all()) and float(none.norms.max()) == 0.0
    odd = Spatial(n_translations=3, n_rotations=3)(clf, x, y)
    assert bool((odd.queries == 27).all())  # identity is a grid point
    even = Spatial(n_translations=2, n_rotations=4)(clf, x, y)
    assert bool((even.queries == 1 + 16).all())  # identity added to the 16 points
    for res in (odd, even):
        assert bool((res.success | ~wrong).all())  # never worse than the clean input
    unchanged = ~even.success
    assert torch.equal(even.x_adv[unchanged & wrong], x[unchanged & wrong])


def test_run_returns_params_that_reproduce_x_adv(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 16)
    atk = Spatial(search="worst-of-k", k=5, seed=2, padding="border")
    res, params = atk.run(clf, x, y)
    assert params.shape == (16, 3)
    assert float(params[:, 0].abs().max()) <= 30.0 and float(params[:, 1:].abs().max()) <= 0.1
    again = atk.transform(x, params, clf.low, clf.high)
    assert torch.allclose(again, res.x_adv, atol=1e-6)
    assert torch.equal(res.x_adv, atk(clf, x, y).x_adv)


def test_early_stop_and_batching(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 32)
    full = Spatial(n_translations=3, n_rotations=7)(clf, x, y)
    small = Spatial(n_translations=3, n_rotations=7, batch_size=10)(clf, x, y)
    assert torch.equal(full.success, small.success)
    assert torch.allclose(full.x_adv, small.x_adv, atol=1e-6)
    fast = Spatial(n_translations=3, n_rotations=7, early_stop=True)(clf, x, y)
    assert torch.equal(fast.success, full.success)
    assert int(fast.queries.sum()) < int(full.queries.sum())


def test_targeted(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 16)
    res = Spatial(n_translations=3, n_rotations=7)(clf, x, y, target="random")
    assert res.target is not None
    assert torch.equal(res.success, res.logits_adv.argmax(1) == res.target)


@pytest.mark.parametrize(
    "atk",
    [
        Spatial(n_translations=3, n_rotations=5),
        Spatial(search="worst-of-k", k=4),
        Lighting(n_brightness=3, n_contrast=3, n_gamma=3),
        Lighting(search="worst-of-k", k=4),
    ],
    ids=repr,
)
def test_contract_query_access_and_determinism(atk: Any, digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 16)
    x0 = x.clone()
    clf.train()
    try:
        res = atk(clf, x, y)
        assert clf.training
    finally:
        clf.eval()
    assert torch.equal(x, x0) and all(p.grad is None for p in clf.parameters())
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert torch.equal(res.success, res.logits_adv.argmax(1) != y)
    with torch.no_grad():
        assert torch.allclose(clf(res.x_adv), res.logits_adv, atol=1e-5)
    assert torch.equal(atk(clf, x, y).x_adv, res.x_adv)  # same seed, same result
    # forward queries only: the same result through a query-only model, which counts them
    qm = query_access(clf)
    via = atk(qm, x, y)
    assert torch.allclose(via.x_adv, res.x_adv, atol=1e-6)
    assert torch.equal(via.success, res.success)
    assert qm.queries == int(via.queries.sum())


def test_lighting_changes_only_lighting(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 32)
    res, params = Lighting(contrast=1.0, gamma=1.0, n_brightness=3).run(clf, x, y)
    assert bool((res.queries == 3).all())
    for i in range(32):  # each x_adv is x, or x ± 0.2 clamped
        expected = (x[i] + params[i, 0]).clamp(0, 1)
        assert torch.allclose(res.x_adv[i], expected, atol=1e-6)
    strong = Lighting()(clf, x, y)
    assert strong.success_rate >= res.success_rate
    none = Lighting(brightness=0.0, contrast=1.0, gamma=1.0)(clf, x, y)
    assert torch.equal(none.x_adv, x)
    # other bounds: pixel values are mapped through them
    shifted = Classifier(_Shift(clf, 1.0), bounds=(-1.0, 1.0), num_classes=10).eval()
    moved = Lighting(n_brightness=3, n_contrast=3, n_gamma=3)(shifted, 2 * x - 1, y)
    assert float(moved.x_adv.min()) >= -1.0 and float(moved.x_adv.max()) <= 1.0
    assert moved.success_rate == pytest.approx(
        Lighting(n_brightness=3, n_contrast=3, n_gamma=3)(clf, x, y).success_rate
    )


class _Shift(nn.Module):
    """``clf((x + shift) / 2)``: a model on ``[-1, 1]`` images equal to ``clf`` on ``[0, 1]``."""

    def __init__(self, clf: Classifier, shift: float) -> None:
        super().__init__()
        self.clf, self.shift = clf, shift

    def forward(self, x: Tensor) -> Tensor:
        return self.clf.logits((x + self.shift) / 2, check=False)


def test_attack_bad_arguments_and_shapes(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 4)
    bad: list[tuple[type, dict[str, Any], str]] = [
        (Spatial, {"search": "random"}, "search"),
        (Spatial, {"max_rotation": -1}, "max_rotation"),
        (Spatial, {"max_rotation": 200}, "max_rotation"),
        (Spatial, {"max_translation": 3}, "fraction"),
        (Spatial, {"n_rotations": 0}, "n_rotations"),
        (Spatial, {"k": 0}, "k"),
        (Spatial, {"padding": "zeros"}, "padding"),
        (Spatial, {"loss": "hinge"}, "loss"),
        (Spatial, {"norm": "l3"}, "norm"),
        (Lighting, {"contrast": 0.5}, "contrast"),
        (Lighting, {"gamma": float("inf")}, "gamma"),
        (Lighting, {"brightness": 2}, "brightness"),
        (Lighting, {"n_gamma": 0}, "n_gamma"),
    ]
    for cls, kw, msg in bad:
        with pytest.raises(ValueError, match=msg):
            cls(**kw)
    with pytest.raises(ValueError, match="eps"):
        attacks.build("spatial", eps=0.1)  # not an Lp-ball attack: no eps
    flat = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), num_classes=10).eval()
    for atk in (Spatial(), Lighting()):
        with pytest.raises(ValueError, match=r"images of shape \(N, C, H, W\)"):
            atk(flat, x.flatten(1), y)
        with pytest.raises(ValueError, match="outside the model's bounds"):
            atk(clf, x + 2, y)
        with pytest.raises(ValueError, match="target equals the true label"):
            atk(clf, x, y, target=y)


# ----------------------------------------------------------------------------- simulator
TRANSFORMS: list[RandomTransform] = [
    Perspective(0.05),
    DefocusBlur(1.0),
    MotionBlur(2.0),
    Exposure(0.1, 1.3, 1.3),
    ColorShift(0.2),
    Resample((0.5, 0.9)),
    SensorNoise(0.02, 0.03),
    JPEG((30, 70)),
    PrintPhoto(),
]


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 2.0)])
def test_transform_bounds_seeds_and_gradients(
    t: RandomTransform, bounds: tuple[float, float]
) -> None:
    lo, hi = bounds
    x = lo + (hi - lo) * torch.rand(6, 3, 13, 11, generator=torch.Generator().manual_seed(0))
    x0 = x.clone()
    a = t(x, 1, bounds=bounds)
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(x, x0)
    assert float(a.min()) >= lo and float(a.max()) <= hi
    assert torch.equal(a, t(x, torch.Generator().manual_seed(1), bounds=bounds))  # same seed
    assert not torch.allclose(a, t(x, 2, bounds=bounds))  # another seed
    assert not torch.allclose(a, x, atol=1e-3)  # it does something
    g = torch.Generator().manual_seed(3)
    assert not torch.equal(t(x, g, bounds=bounds), t(x, g, bounds=bounds))  # the state advances
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(t(xg, 4, bounds=bounds).square().sum(), xg)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def test_transform_details_and_errors() -> None:
    grey = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ColorShift(0.3)(grey, 0), grey)  # no-op for one channel
    for t in (DefocusBlur(0.0), MotionBlur(0.0), Resample((1.0, 1.0)), Perspective(0.0)):
        assert torch.allclose(t(grey, 0), grey, atol=1e-6), t  # zero strength: identity
    for t in TRANSFORMS:
        with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
            t(grey[0], 0)
        with pytest.raises(TypeError, match="generator"):
            t(grey, "seed")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="low < high"):
            t(grey, 0, bounds=(1.0, 0.0))
        with pytest.raises(TypeError, match="float"):
            t(grey.long(), 0)
    for make in (
        lambda: Perspective(-0.1),
        lambda: DefocusBlur(float("nan")),
        lambda: MotionBlur(-1),
        lambda: Exposure(contrast=0.5),
        lambda: ColorShift(2.0),
        lambda: Resample((0.9, 0.5)),
        lambda: Resample(0.5),  # type: ignore[arg-type]
        lambda: SensorNoise(read=-0.1),
        lambda: JPEG((0, 50)),
        lambda: JPEG((50.5, 60)),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(TypeError, match="RandomTransform"):
        PrintPhoto([nn.Identity()])  # type: ignore[list-item]


def test_jpeg_is_close_to_pil() -> None:
    image_mod = pytest.importorskip("PIL.Image")
    import numpy as np

    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 1, 6, 6, generator=gen), size=(24, 32))
    noisy = (smooth + 0.1 * torch.rand(1, 1, 24, 32, generator=gen)).clamp(0, 1)
    x = (noisy * 255).round() / 255
    for q in (50, 75, 90):
        buf = io.BytesIO()
        image_mod.fromarray((x[0, 0].numpy() * 255).astype(np.uint8), mode="L").save(
            buf, format="JPEG", quality=q
        )
        buf.seek(0)
        ref = torch.from_numpy(np.asarray(image_mod.open(buf), dtype=np.float32) / 255)
        ours = JPEG((q, q))(x, 0)[0, 0]
        err = float((ours - ref).abs().mean())
        assert err < 1.5 / 255, (q, err)  # rounding and integer-DCT differences only
        assert float((ours - x[0, 0]).abs().mean()) > 2 * err  # and it did compress


# ----------------------------------------------------------------------------- models, metric
class _Mean(nn.Module):
    """Two classes by mean brightness: class 1 when the mean is above 0.5."""

    def forward(self, x: Tensor) -> Tensor:
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([0.5 - m, m - 0.5], 1) * 10


class _Add(RandomTransform):
    """Deterministic: adds ``shift`` (draws nothing)."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        return z + self.shift


def test_destruction_rate_matches_a_hand_computation() -> None:
    model = Classifier(_Mean(), num_classes=2).eval()
    values = torch.tensor
    x = values([0.2, 0.8, 0.9, 0.3, 0.6]).view(5, 1, 1, 1).expand(5, 1, 2, 2).clone()
    x_adv = values([0.6, 0.4, 0.1, 0.45, 0.6]).view(5, 1, 1, 1).expand(5, 1, 2, 2).clone()
    y = values([0, 1, 1, 0, 0])
    # clean correct: 0,1,2,3; adversarial wrong: 0,1,2,4 -> eligible 0,1,2.
    # T = +0.25: T(x_adv) = 0.85, 0.65, 0.35, 0.7, 0.85 -> correct only for 1.
    d = destruction_rate(model, x, x_adv, y, _Add(0.25), draws=3)
    assert d.eligible == 3 and d.rate == pytest.approx(1 / 3)
    assert d.clean_accuracy == pytest.approx(4 / 5)
    assert d.adversarial_accuracy == pytest.approx(1 / 5)
    # T(x) = 0.45, 1, 1, 0.55, 0.85 -> correct 0,1,2: accuracy 3/5; image 3 broken: 1/4
    assert d.clean_accuracy_transformed == pytest.approx(3 / 5)
    assert d.clean_destruction == pytest.approx(1 / 4)
    assert d.adversarial_accuracy_transformed == pytest.approx(1 / 5)
    assert torch.equal(d.restored, values([0.0, 1.0, 0.0, 0.0, 0.0]))
    assert set(d.to_dict()) >= {"rate", "eligible", "clean_accuracy_transformed"}
    none = destruction_rate(model, x, x, y, _Add(0.25))
    assert none.eligible == 0 and none.rate != none.rate  # NaN: nothing to destroy
    with pytest.raises(ValueError, match="draws"):
        destruction_rate(model, x, x_adv, y, _Add(0.25), draws=0)
    with pytest.raises(ValueError, match="x_adv must have"):
        destruction_rate(model, x, x_adv[:3], y, _Add(0.25))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        destruction_rate(model, x.flatten(1), x_adv.flatten(1), y, _Add(0.25))
    with pytest.raises(ValueError, match="labels"):
        destruction_rate(model, x, x_adv, y[:2], _Add(0.25))
    with pytest.raises(TypeError, match="RandomTransform"):
        destruction_rate(model, x, x_adv, y, nn.Identity())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside the model's bounds"):
        destruction_rate(model, x, x_adv + 1, y, _Add(0.25))


def test_destruction_rate_averages_draws(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 64)
    x_adv = PGD(eps=0.1, steps=5, step_size=0.03)(clf, x, y).x_adv
    d = destruction_rate(clf, x, x_adv, y, PrintPhoto(), draws=4, seed=1)
    eligible = (clf.predict(x) == y) & (clf.predict(x_adv) != y)
    assert d.eligible == int(eligible.sum()) > 0
    assert d.rate == pytest.approx(float(d.restored[eligible].mean()), abs=1e-6)
    assert bool(((d.restored * 4).round() == d.restored * 4).all())  # k/draws per image
    again = destruction_rate(clf, x, x_adv, y, PrintPhoto(), draws=4, seed=1)
    assert again.rate == d.rate and torch.equal(again.restored, d.restored)
    # the default pipeline keeps the clean images mostly recognizable
    assert d.clean_accuracy_transformed > 0.6


def test_photographed_is_a_randomized_differentiable_classifier(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, _ = _batch(digits_model, 8)
    ph = photographed(clf, PrintPhoto(), seed=3)
    assert isinstance(ph, Classifier) and ph.bounds == clf.bounds and ph.num_classes == 10
    with torch.no_grad():
        a, b = ph(x), ph(x)
        c = photographed(clf, PrintPhoto(), seed=3)(x)
    assert not torch.allclose(a, b) and torch.equal(a, c)  # new draw per call; seeded
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(eot(ph, 4)(xg).logsumexp(1).sum(), xg)
    assert float(grad.abs().sum()) > 0
    with pytest.raises(TypeError, match="RandomTransform"):
        photographed(clf, nn.Identity())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Classifier"):
        photographed(clf.net, PrintPhoto())  # type: ignore[arg-type]
    per_feature = Classifier(nn.Flatten(), bounds=(torch.zeros(4), torch.ones(4)))
    with pytest.raises(ValueError, match="scalar bounds"):
        photographed(per_feature, PrintPhoto())


def test_eot_examples_survive_the_photo_better(digits_model: Digits) -> None:
    """Kurakin et al. 2017: photos destroy many adversarial images; EOT (Athalye et al. 2018)
    through the simulator makes them survive. Measured (these 100 digits, eps 0.15, 10 steps,
    3 EOT seeds × 2 destruction seeds): plain PGD destruction 0.085-0.106, EOT-PGD 0.016-0.038."""
    clf, _ = digits_model
    x, y = _batch(digits_model, 100)
    sim = PrintPhoto()
    pgd = PGD(eps=0.15, steps=10, step_size=0.04)
    plain = pgd(clf, x, y).x_adv
    robust = pgd(eot(photographed(clf, sim, seed=0), 8), x, y).x_adv
    d_plain = destruction_rate(clf, x, plain, y, sim, draws=8, seed=1)
    d_eot = destruction_rate(clf, x, robust, y, sim, draws=8, seed=1)
    assert d_plain.eligible > 50 and d_eot.eligible > 50
    assert d_eot.rate < 0.6 * d_plain.rate, (d_eot.rate, d_plain.rate)
    assert d_eot.adversarial_accuracy_transformed < d_plain.adversarial_accuracy_transformed
