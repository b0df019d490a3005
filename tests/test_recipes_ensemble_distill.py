"""Ensemble adversarial training and defensive distillation: behaviour on digits, rotation,
errors, gradient masking, exact resume."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from _helpers import InterruptAt
from advlab import attacks, data, models
from advlab.data import TensorData
from advlab.defenses.training import Recipe, TrainConfig, build_recipe, recipes, train
from advlab.defenses.training.distill import Distill, SoftmaxT, defensive_distillation
from advlab.defenses.training.ensemble import IN_MEMORY, Ensemble
from advlab.models import Classifier

logger = logging.getLogger(__name__)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny 8x8 models: extra intra-op threads only add contention (7 s vs 45 s CPU time for
    the ensemble test on a busy 2-core machine). Session fixtures are set up before this one,
    so the tests here train their own models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _synthetic() -> tuple[TensorData, TensorData]:
    full = data.load("synthetic", "train", n=384, num_classes=3, seed=1)
    return data.train_val_split(full, 0.25, seed=0)  # 288 train: 9 batches of 32


def _small(name: str = "mlp", seed: int = 0, classes: int = 3) -> Classifier:
    torch.manual_seed(seed)
    return models.build(name, input_shape=(1, 8, 8), num_classes=classes)


def _lenet() -> Classifier:
    return models.build("lenet", input_shape=(1, 8, 8), num_classes=10)


SYN = TrainConfig(epochs=3, batch_size=32, lr=0.05, optimizer="sgd", device="cpu", seed=3)
DIGITS = TrainConfig(epochs=12, batch_size=64, lr=3e-3, schedule="cosine", device="cpu")


def _accuracy(clf: Classifier, x: Tensor, y: Tensor, eps: float) -> float:
    if eps == 0:
        with torch.no_grad():
            return float((clf.logits(x).argmax(1) == y).float().mean())
    return float((~attacks.build("fgsm", eps=eps)(clf, x, y).success).float().mean())


# ----------------------------------------------------------------------------- ensemble
def test_ensemble_training_beats_plain_training_under_fgsm() -> None:
    tr, test = data.load("digits", "train"), data.load("digits", "test")
    torch.manual_seed(0)
    plain = _lenet()
    train(plain, tr, None, DIGITS)
    source = _small("mlp", seed=1, classes=10)
    train(source, tr, None, TrainConfig(**{**DIGITS.to_dict(), "epochs": 6}))
    torch.manual_seed(0)
    clf = _lenet()
    train(clf, tr, None, DIGITS, recipe=Ensemble(sources=[source], eps=0.15))
    assert _accuracy(clf, test.x, test.y, 0) > 0.85
    for eps in (0.1, 0.15):  # measured: 0.457 -> 0.627 and 0.173 -> 0.404
        a_plain, a_ens = (_accuracy(m, test.x, test.y, eps) for m in (plain, clf))
        logger.info("FGSM eps %.2f accuracy: plain %.3f, ensemble %.3f", eps, a_plain, a_ens)
        assert a_ens > a_plain + 0.1, (eps, a_plain, a_ens)


class _Recording(Ensemble):
    """Counts loss calls; ``calls`` is the 0-based global batch number during a call."""

    calls = -1

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.calls += 1
        out = super().loss(model, x, y)
        assert model.training  # crafting restored the train mode
        return out


def test_ensemble_rotates_round_robin_restarting_each_epoch() -> None:
    tr, _ = _synthetic()
    sources = [_small("mlp", seed=s) for s in (1, 2)]
    sources[0].train()  # in-memory sources keep their mode; crafting uses eval mode
    sources[1].eval()
    recipe = _Recording(sources=sources, eps=0.1)
    used: list[list[int]] = [[], []]
    for i, src in enumerate(sources):
        src.net.register_forward_hook(lambda *_, i=i: used[i].append(recipe.calls))
    cfg = TrainConfig(**{**SYN.to_dict(), "epochs": 2, "batch_size": 36})
    train(_small(), tr, None, cfg, recipe=recipe)
    per_epoch = 8  # not a multiple of 3: the count restarts at each epoch
    for i in (0, 1):
        batches = sorted(set(used[i]))
        expected = [b for b in range(2 * per_epoch) if (b % per_epoch) % 3 == i + 1]
        assert batches == expected, (i, batches)
    assert sources[0].training and not sources[1].training
    assert all(p.requires_grad for s in sources for p in s.parameters())
    assert recipe.config()["sources"] == [IN_MEMORY, IN_MEMORY]


def test_ensemble_sources_from_checkpoints_and_the_cli_builder(tmp_path: Path) -> None:
    models.save(_small("mlp", seed=1), tmp_path / "a")
    recipe = build_recipe("ensemble", {"sources": [str(tmp_path / "a")], "eps": 0.2, "alpha": 0.3})
    cfg = recipe.config()
    assert cfg["sources"] == [str(tmp_path / "a")] and cfg["eps"] == 0.2 and cfg["alpha"] == 0.3
    pgd = Ensemble(sources=tmp_path / "a", attack="pgd", steps=3, attack_args={"step_size": 0.05})
    assert pgd.config()["attack_args"] == {"step_size": 0.05, "steps": 3}
    tr, _ = _synthetic()
    loss, logits = pgd.loss(_small(), tr.x[:8], tr.y[:8])
    assert loss.ndim == 0 and logits.shape == (8, 3)
    assert "ensemble" in recipes.names() and "distill" in recipes.names()


def test_ensemble_with_alpha_one_equals_standard_training() -> None:
    tr, _ = _synthetic()
    cfg = TrainConfig(**{**SYN.to_dict(), "epochs": 1})
    a, b = _small("maxout"), _small("maxout")
    train(a, tr, None, cfg)
    train(b, tr, None, cfg, recipe=Ensemble(sources=[_small("mlp", seed=1)], alpha=1.0))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "needs static source models"),
        ({"sources": []}, ValueError, "needs static source models"),
        (
            {"sources": ["/nonexistent/run"]},
            ValueError,
            r"source 1 '/nonexistent/run'.*model\.json",
        ),
        ({"sources": [3]}, TypeError, "checkpoint folder .* or an advlab Classifier"),
        ({"alpha": 1.5}, ValueError, r"alpha must be a number in \[0, 1\]"),
        ({"attack": "cw-l2"}, ValueError, "attack must be one of fgsm, rand-fgsm, pgd"),
        ({"craft_mode": "test"}, ValueError, "craft_mode must be one of"),
        ({"eps": -0.1}, ValueError, "eps must be a number >= 0"),
        ({"steps": 5}, ValueError, "steps applies to attack='pgd' only"),
        ({"attack_args": {"eps": 0.1}}, ValueError, "attack_args may not set eps"),
        ({"attack_args": {"foo": 1}}, ValueError, "no hyperparameter 'foo'"),
    ],
)
def test_ensemble_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    if "sources" not in kwargs and kwargs:
        kwargs = {"sources": [_small("mlp", seed=1)], **kwargs}
    with pytest.raises(error, match=match):
        Ensemble(**kwargs)


def test_ensemble_missing_or_mismatched_sources(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty.*not a loadable checkpoint"):
        Ensemble(sources=[_small("mlp", seed=1), tmp_path / "empty"])
    tr, _ = _synthetic()
    x, y = tr.x[:6], tr.y[:6]
    # every source is checked at the first batch, although that batch crafts on the current model
    for source, match in [
        (_small("mlp", classes=4), "source 1 '<in-memory Classifier>' has 4 classes; .* has 3"),
        (
            models.build("mlp", input_shape=(1, 4, 4), num_classes=3),
            r"takes inputs of shape \(1, 4, 4\); the trained model gets \(1, 8, 8\)",
        ),
        (
            models.build("mlp", input_shape=(1, 8, 8), num_classes=3, bounds=(-1.0, 1.0)),
            "has bounds",
        ),
    ]:
        recipe, clf = Ensemble(sources=[source]), _small()
        with pytest.raises(ValueError, match=match):
            recipe.loss(clf, x, y)


# ------------------------------------------------------------------------- distillation
def _input_grad_norms(clf: Classifier, x: Tensor, y: Tensor) -> Tensor:
    """``(N,)`` L2 norms of ∇_x CE(clf(x), y) at T = 1 (the deployed model)."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(clf.logits(x), y, reduction="sum"), x)
    return g.flatten(1).norm(dim=1)


def _success(clf: Classifier, name: str, x: Tensor, y: Tensor, **kw: Any) -> float:
    return float(attacks.build(name, **kw)(clf, x, y).success.float().mean())


def test_distillation_masks_gradients_but_cw_still_succeeds(tmp_path: Path) -> None:
    tr, test = data.load("digits", "train"), data.load("digits", "test")
    cfg = TrainConfig(epochs=30, batch_size=64, lr=1e-2, device="cpu")
    torch.manual_seed(0)
    plain = _lenet()
    train(plain, tr, None, cfg)
    teacher, student = defensive_distillation(_lenet, tr, None, cfg, 100, out=tmp_path)
    with torch.no_grad():
        ok = (plain.logits(test.x).argmax(1) == test.y) & (
            student.logits(test.x).argmax(1) == test.y
        )
        scale = [float(m.logits(test.x).abs().max()) for m in (plain, student)]
    assert float(ok.float().mean()) > 0.85  # measured: plain 96.9%, distilled 93.3%
    assert scale[1] > 10 * scale[0]  # deployed at T = 1: logits are not divided by T
    x, y = test.x[ok], test.y[ok]  # inputs both models classify correctly

    # medians and the share of exactly-zero gradients: the mean is dominated by the few inputs
    # within a few logits of the boundary (measured: 2 of 332 with norms 68 and 20)
    norms = [_input_grad_norms(m, x, y) for m in (plain, student)]
    med_plain, med_dist = (float(n.median()) for n in norms)
    zero_plain, zero_dist = (float((n == 0).float().mean()) for n in norms)
    ratio = med_plain / med_dist if med_dist > 0 else math.inf
    fgsm = [_success(m, "fgsm", x, y, eps=0.1) for m in (plain, student)]
    jsma = [_success(m, "jsma", x[:50], y[:50]) for m in (plain, student)]
    cw = _success(student, "cw-l2", x[:8], y[:8], steps=100, binary_search_steps=5)
    logger.info(
        "distillation T=100: median grad norm %.3g -> %.3g (shrink %.3g), exactly 0 %.3f -> %.3f;"
        " FGSM 0.1 success %.3f -> %.3f; JSMA %.3f -> %.3f; CW-L2 on distilled %.3f",
        med_plain,
        med_dist,
        ratio,
        zero_plain,
        zero_dist,
        *fgsm,
        *jsma,
        cw,
    )
    # measured: median 1.2e-4 -> 0 (exactly 0 for 0% -> 98% of inputs), FGSM 0.43 -> 0.04,
    # JSMA 0.62 -> 0.0
    assert ratio > 1e3 and zero_plain < 0.1 and zero_dist > 0.5, (med_plain, med_dist, zero_dist)
    assert fgsm[0] > 0.3 and fgsm[1] < 0.1, fgsm
    assert jsma[0] > 0.4 and jsma[1] < 0.1, jsma
    assert cw >= 0.85  # logit-space attacks are not fooled (Carlini & Wagner 2017)

    meta = models.read_meta(tmp_path / "student")
    assert meta["recipe"] == {
        "name": "distill",
        "teacher": str(tmp_path / "teacher"),
        "temperature": 100.0,
    }
    assert models.read_meta(tmp_path / "teacher")["recipe"]["name"] == "softmax-t"
    again = defensive_distillation(_lenet, tr, None, cfg, 100, out=tmp_path, resume=True)
    for new, old in zip(again, (teacher, student), strict=True):  # finished runs: reloaded
        for a, b in zip(new.state_dict().values(), old.state_dict().values(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("t", [0, -1.0, math.nan, math.inf, True, "100"])
def test_temperature_must_be_a_positive_number(t: Any) -> None:
    with pytest.raises(ValueError, match="temperature must be"):
        SoftmaxT(temperature=t)
    with pytest.raises(ValueError, match="temperature must be"):
        Distill(teacher=_small(), temperature=t)
    with pytest.raises(ValueError, match="temperature must be"):
        defensive_distillation(_small, _synthetic()[0], None, SYN, t)


def test_distill_needs_a_loadable_matching_teacher(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distill needs teacher="):
        Distill()
    with pytest.raises(ValueError, match=r"distillation teacher .*missing"):
        build_recipe("distill", {"teacher": str(tmp_path / "missing")})
    tr, _ = _synthetic()
    with pytest.raises(ValueError, match=r"teacher .* has 4 classes"):
        Distill(teacher=_small(classes=4)).loss(_small(), tr.x[:4], tr.y[:4])


def test_softmax_t_at_temperature_one_is_standard_training() -> None:
    tr, _ = _synthetic()
    cfg = TrainConfig(**{**SYN.to_dict(), "epochs": 1})
    a, b = _small("maxout"), _small("maxout")
    train(a, tr, None, cfg)
    train(b, tr, None, cfg, recipe=SoftmaxT(temperature=1))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q)


# ------------------------------------------------------------------------------ resume


def _ensemble(tmp: Path) -> Recipe:
    if not (tmp / "src").exists():
        models.save(_small("mlp", seed=1), tmp / "src")
    return Ensemble(sources=[tmp / "src", _small("mlp", seed=2)], eps=0.1, attack="rand-fgsm")


def _distill(tmp: Path) -> Recipe:
    return Distill(teacher=_small("mlp", seed=1), temperature=20)


def _softmax_t(tmp: Path) -> Recipe:
    return SoftmaxT(temperature=20)


@pytest.mark.parametrize("make", [_ensemble, _distill, _softmax_t])
def test_resume_after_interrupt_reaches_the_same_weights(
    tmp_path: Path, make: Callable[[Path], Recipe]
) -> None:
    tr, va = _synthetic()
    ref = _small("maxout")  # dropout: the resumed run must replay the same masks
    train(ref, tr, va, SYN, recipe=make(tmp_path))

    recipe = make(tmp_path)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # 9 batches per epoch: stops mid epoch 2
        train(_small("maxout"), tr, va, SYN, recipe=InterruptAt(recipe, at=15), out=run)
    resumed = _small("maxout")
    res = train(resumed, tr, va, SYN, recipe=recipe, out=run, resume=True)  # same object
    assert [r["epoch"] for r in res.history] == [1.0, 2.0, 3.0]
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
