"""One-pixel attack (Su et al. 2019): exact query counts, forward queries only, a model whose
decision hinges on one pixel, strength on the digits model, the L0 budget, bounds, seeds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from advlab import attacks
from advlab.attacks import OnePixel
from advlab.attacks.one_pixel import distinct_others, first_of_kind
from advlab.data import TensorData
from advlab.models import Classifier, query_access

Digits = tuple[Classifier, TensorData]
ROW, COL, CHANNEL = 3, 5, 1  # the pixel (and channel) the constructed model reads
CENTRES = (0.2, 0.5, 0.9)  # class k is predicted when that feature is nearest CENTRES[k]


class _OnePixelNet(nn.Module):
    """Logits that depend only on feature ``(CHANNEL, ROW, COL)``: class ``k`` wins when the
    feature is nearest ``CENTRES[k]``."""

    def forward(self, x: Tensor) -> Tensor:
        v = x[:, CHANNEL, ROW, COL].unsqueeze(1)  # (N, 1)
        return -50.0 * (v - torch.tensor(CENTRES, dtype=x.dtype)).square()


def _pixel_problem(n: int = 8) -> tuple[Classifier, Tensor, Tensor]:
    clf = Classifier(_OnePixelNet(), num_classes=3).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, 12, 12, generator=gen)
    x[:, CHANNEL, ROW, COL] = CENTRES[0]  # every clean image is class 0
    return clf, x, torch.zeros(n, dtype=torch.long)


def _changed(x_adv: Tensor, x: Tensor) -> Tensor:
    """``(N, C, H, W)`` bool: the features the attack changed."""
    return x_adv != x


def _batch(digits: Digits, n: int) -> tuple[Tensor, Tensor]:
    _, test = digits
    return test.x[:n].clone(), test.y[:n].clone()


# ------------------------------------------------------------------ the constructed model
def test_finds_the_pixel_the_decision_hinges_on() -> None:
    clf, x, y = _pixel_problem()
    x0 = x.clone()
    res = OnePixel(population=100, generations=30)(clf, x, y)
    assert torch.equal(x, x0)
    assert bool(res.success.all())
    changed = _changed(res.x_adv, x)
    assert not bool(changed[:, :, torch.arange(12) != ROW].any())  # only row ROW ...
    assert not bool(changed[:, :, :, torch.arange(12) != COL].any())  # ... and column COL
    assert bool(changed[:, CHANNEL, ROW, COL].all())
    assert bool((res.x_adv[:, CHANNEL, ROW, COL] > 0.35).all())  # nearer 0.5 or 0.9 than 0.2
    assert res.eps == 3.0 and float(res.norms.max()) <= 3  # one pixel = three features (RGB)
    assert res.accuracy_at(res.eps) == 0.0 and res.norm == "l0"
    assert int(res.gradients.sum()) == 0


def test_targeted_on_the_constructed_model() -> None:
    clf, x, y = _pixel_problem()
    t = torch.full_like(y, 2)
    res = OnePixel(population=100, generations=30)(clf, x, y, target=t)
    assert bool(res.success.all()) and torch.equal(res.logits_adv.argmax(1), t)
    assert bool((res.x_adv[:, CHANNEL, ROW, COL] > 0.7).all())


def test_eps_caps_the_changed_features() -> None:
    """``eps=1`` on RGB: one channel of one pixel; the search scores the capped images."""
    clf, x, y = _pixel_problem()
    res = OnePixel(population=100, generations=30, eps=1)(clf, x, y)
    assert res.eps == 1.0 and bool(res.success.all())
    changed = _changed(res.x_adv, x)
    assert torch.equal(changed.flatten(1).sum(1), torch.ones(8, dtype=torch.long))
    assert bool(changed[:, CHANNEL, ROW, COL].all())
    assert torch.equal(res.norms, torch.ones(8))
    eps0 = OnePixel(population=10, generations=2, eps=0)(clf, x, y)
    assert torch.equal(eps0.x_adv, x) and not bool(eps0.success.any())


def test_chunking_does_not_change_the_search() -> None:
    clf, x, y = _pixel_problem(5)
    a = OnePixel(population=30, generations=10, seed=4)(clf, x, y)
    b = OnePixel(population=30, generations=10, seed=4, batch_size=7)(clf, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)


# ------------------------------------------------------------------ queries
def test_query_counts_are_exact_on_a_query_only_model(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 40)
    q = query_access(clf, "scores")
    pop, gens = 20, 5
    full = pop * (gens + 1) + 1  # initial population, every generation, the scoring query
    res = OnePixel(population=pop, generations=gens, skip_duplicates=False)(q, x, y)
    assert q.queries == int(res.queries.sum())  # every forward evaluation is counted
    assert int(res.gradients.sum()) == 0  # (and any gradient would have raised)
    assert bool(((res.queries - 1) % pop == 0).all())  # whole generations
    assert bool((res.queries[~res.success] == full).all())
    assert bool(res.success.any()) and int(res.queries[res.success].min()) < full
    q.reset_queries()
    skip = OnePixel(population=pop, generations=gens)(q, x, y)  # duplicates not re-queried
    assert q.queries == int(skip.queries.sum()) < int(res.queries.sum())
    assert int(skip.queries.max()) <= full
    # early_stop: one clean query each, misclassified inputs left unchanged with no search
    wrong = clf.predict(x) != y
    assert bool(wrong.any())
    q.reset_queries()
    es = OnePixel(population=pop, generations=gens, early_stop=True)(q, x, y)
    assert q.queries == int(es.queries.sum())
    assert bool((es.queries[wrong] == 1).all()) and torch.equal(es.x_adv[wrong], x[wrong])
    assert bool((es.queries[~wrong] >= 3).all())


class _LinearNet(nn.Module):
    """Class 0 always wins (logit 1000); class 1's logit is a fixed linear function of the
    image, computed in float64 so that it does not depend on the batch."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        w = torch.rand(1, 12, 12, generator=gen, dtype=torch.float64) * 2 - 1
        self.register_buffer("w", w)

    def forward(self, x: Tensor) -> Tensor:
        z1 = (x.double() * self.w).sum((1, 2, 3))
        return torch.stack([torch.full_like(z1, 1000.0), z1], 1).float()


def test_skipping_duplicates_changes_queries_not_the_search() -> None:
    """Never adversarial, so the population converges (to the pixel and values that raise
    class 1 most) and many children repeat an image already scored."""
    clf = Classifier(_LinearNet(), num_classes=2).eval()
    x = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(0))  # grey, as MNIST
    y = torch.zeros(4, dtype=torch.long)
    full = 40 * 81 + 1
    for k, most in ((1, 0.7 * full), (2, full)):  # measured: 1560-2026, 3228-3239 of 3241
        kw = {"pixels": k, "population": 40, "generations": 80, "seed": 2}
        skip = OnePixel(**kw)(clf, x, y)  # type: ignore[arg-type]
        every = OnePixel(skip_duplicates=False, **kw)(clf, x, y)  # type: ignore[arg-type]
        assert not bool(every.success.any())
        assert torch.equal(skip.x_adv, every.x_adv)
        assert bool((every.queries == full).all())
        assert int(skip.queries.max()) <= most and int(skip.queries.sum()) < 4 * full
    # the search found (nearly) the best single pixel: each channel at the end that helps most
    w = clf.net.w.float()  # type: ignore[union-attr]
    gain = torch.maximum(w * (1 - x), -w * x).sum(1).flatten(1).amax(1)  # (N,)
    res = OnePixel(population=40, generations=80, seed=2)(clf, x, y)
    found = ((res.x_adv - x) * w).sum((1, 2, 3))
    assert bool((found >= 0.95 * gain).all())


# ------------------------------------------------------------------ digits
def _brute_force_one_pixel(clf: Classifier, x: Tensor, y: Tensor) -> Tensor:
    """``(N,)`` bool: some single pixel set to one of 21 grey levels misclassifies the image."""
    n, _, h, w = x.shape
    levels = torch.linspace(0, 1, 21).view(21, 1)
    hit = torch.zeros(n, dtype=torch.bool)
    with torch.no_grad():
        for pos in range(h * w):
            xa = x.reshape(1, n, -1).repeat(21, 1, 1)  # (21, N, H·W): one copy per level
            xa[:, :, pos] = levels
            pred = clf.predict(xa.view(21 * n, *x.shape[1:])).view(21, n)
            hit |= (pred != y).any(0)
    return hit


def test_untargeted_on_digits_matches_a_brute_force_search(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 100)
    right = clf.predict(x) == y
    res = OnePixel(population=50, generations=15)(clf, x, y)
    rate = float(res.success[right].float().mean())
    brute = float(_brute_force_one_pixel(clf, x, y)[right].float().mean())
    assert rate >= brute - 0.03 and rate > 0.15  # measured: 0.287 for both
    assert float(res.norms.max()) <= 1 and res.eps == 1.0
    three = OnePixel(pixels=3, population=50, generations=15)(clf, x, y)
    assert float(three.success[right].float().mean()) > 0.65  # measured 0.745
    assert float(three.norms.max()) <= 3


def test_targeted_on_digits(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 60)
    res = OnePixel(pixels=3, population=100, generations=20)(clf, x, y, target="random")
    assert res.target is not None
    assert torch.equal(res.success, res.logits_adv.argmax(1) == res.target)
    assert float(res.success.float().mean()) > 0.25  # measured 0.38


# ------------------------------------------------------------------ contract details
def test_same_seed_same_result_other_seed_differs(digits_model: Digits) -> None:
    clf, _ = digits_model
    x, y = _batch(digits_model, 16)
    a = OnePixel(population=20, generations=4, seed=5)(clf, x, y)
    b = OnePixel(population=20, generations=4, seed=5)(clf, x, y)
    c = OnePixel(population=20, generations=4, seed=6)(clf, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert not torch.equal(a.x_adv, c.x_adv)


def test_per_feature_bounds(digits_model: Digits) -> None:
    clf, _ = digits_model
    low = torch.linspace(0.0, 0.2, 64).view(1, 8, 8)
    high = 1.0 - torch.linspace(0.0, 0.2, 64).flip(0).view(1, 8, 8)
    model = Classifier(clf.net, bounds=(low, high), num_classes=10).eval()
    x, y = _batch(digits_model, 24)
    x = torch.minimum(torch.maximum(x, low), high)
    x0 = x.clone()
    res = OnePixel(pixels=2, population=30, generations=5)(model, x, y, target="random")
    assert torch.equal(x, x0)
    assert bool((res.x_adv >= low).all()) and bool((res.x_adv <= high).all())
    assert float(res.norms.max()) <= 2
    # a changed feature sits at low + u·(high − low): many at the ends (clipped Gaussian)
    changed = res.x_adv != x
    at_end = (res.x_adv == low.expand_as(x)) | (res.x_adv == high.expand_as(x))
    assert bool(changed.any()) and bool(at_end[changed].any())


def test_init_and_mutation_follow_the_paper() -> None:
    clf, x, y = _pixel_problem(2)
    atk = OnePixel(population=4000, generations=0)
    with atk._problem(clf, x, y, None, "eval") as p:
        pop = atk._init_population(2, (3, 12, 12), p)  # (2, P, 1, 5)
        child = atk._mutate(pop, 12, 12, p.generator)
    assert pop.shape == (2, 4000, 1, 5) and pop.dtype == torch.float32
    rows, cols, vals = pop[..., 0], pop[..., 1], pop[..., 2:]
    assert float(rows.min()) >= 0 and float(rows.max()) < 12 and float(cols.max()) < 12
    assert abs(float(rows.mean()) - 6) < 0.3  # U(0, H)
    assert float(vals.min()) == 0.0 and float(vals.max()) == 1.0  # clipped N(128, 127)/255
    inside = vals[(vals > 0) & (vals < 1)]
    assert abs(float((vals == 0).float().mean()) - 0.157) < 0.02  # P(N < 0) for N(.502, .498)
    assert abs(float(inside.mean()) - 0.5) < 0.02
    assert float(child[..., :2].min()) >= 0 and float(child[..., 0].max()) < 12  # wrapped
    assert float(child[..., 2:].min()) >= 0 and float(child[..., 2:].max()) <= 1


def test_distinct_others() -> None:
    gen = torch.Generator().manual_seed(0)
    r = distinct_others(50, 6, gen, torch.device("cpu"))  # (50, 6, 3)
    i = torch.arange(6).view(1, 6, 1)
    assert r.shape == (50, 6, 3) and bool((r != i).all())
    assert bool((r[..., 0] != r[..., 1]).all() & (r[..., 1] != r[..., 2]).all())
    assert bool((r[..., 0] != r[..., 2]).all())
    assert int(r.min()) == 0 and int(r.max()) == 5
    counts = torch.bincount(r[:, 0, 0], minlength=6)  # member 0 picks 1..5 uniformly
    assert int(counts[0]) == 0 and int(counts[1:].min()) > 0
    r4 = distinct_others(1, 4, gen, torch.device("cpu"))[0]  # the smallest population
    assert all(sorted([*r4[k].tolist(), k]) == [0, 1, 2, 3] for k in range(4))


def test_first_of_kind() -> None:
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 3, (300, 3), generator=gen).float()
    rows[::7, 1] = -0.0  # equal to 0.0, as for images
    first = first_of_kind(rows)
    for i in range(300):
        same = (rows == rows[i]).all(1).nonzero().squeeze(1)
        assert int(first[i]) == int(same[0])


def test_hyperparameters_and_bad_args() -> None:
    atk = attacks.build("one-pixel", pixels=2, population=50, generations=7)
    assert isinstance(atk, OnePixel) and atk.name == "one-pixel"
    assert "pixels=2" in repr(atk) and "population=50" in repr(atk)
    d = OnePixel()
    assert (d.pixels, d.population, d.generations, d.scale) == (1, 400, 100, 0.5)
    assert d.norm == "l0" and d.eps == math.inf and d.features(3) == 3
    assert OnePixel(pixels=2, eps=4.5).features(3) == 4
    bad = [
        {"pixels": 0},
        {"population": 3},
        {"generations": -1},
        {"scale": 0.0},
        {"scale": 2.5},
        {"batch_size": 0},
        {"norm": "linf"},
        {"eps": -1.0},
        {"pixels": 1.5},
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            OnePixel(**kw)  # type: ignore[arg-type]


def test_images_required() -> None:
    flat = Classifier(nn.Linear(64, 10), num_classes=10).eval()
    x = torch.rand(4, 64)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        OnePixel(population=8, generations=1)(flat, x, torch.zeros(4, dtype=torch.long))
