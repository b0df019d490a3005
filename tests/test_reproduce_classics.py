"""Reproductions tramer2018, papernot2016, carlini2017 and madry2018 (issue 8): fast tests of
the shared helpers and constants, slow-marked quick runs asserting the papers' orderings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from advlab.attacks import FGSM
from advlab.data import TensorData
from advlab.models import Classifier
from advlab.reproduce import (
    Context,
    carlini2017,
    madry2018,
    papernot2016,
    reproductions,
    run,
    tramer2018,
)
from advlab.reproduce._classics import (
    all_targets,
    attack_all,
    error_pct,
    finite,
    order_cell,
    target_stats,
)
from advlab.reproduce._distill_masking import (
    FGSM_EPS,
    GRAD,
    GradStats,
    NetResult,
    cw_attack,
    grad_stats,
    input_grad_norms,
    masking_cells,
)

NAMES = ("tramer2018", "papernot2016", "carlini2017", "madry2018")


def test_registered_with_titles_and_papers() -> None:
    for name in NAMES:
        repro = reproductions.build(name)
        assert repro.name == name and repro.title and repro.papers
        assert (type(repro).__doc__ or "").strip()


def test_all_targets_lists_every_other_class() -> None:
    y = torch.tensor([0, 3, 9])
    index, target = all_targets(y, 10)
    assert index.tolist() == [0] * 9 + [1] * 9 + [2] * 9
    assert bool((target != y[index]).all())
    for i in range(3):
        assert sorted([*target[index == i].tolist(), int(y[i])]) == list(range(10))


def test_target_stats_best_average_worst() -> None:
    success = torch.tensor([[True, True, True], [True, False, True]])
    norms = torch.tensor([[1.0, 2.0, 6.0], [3.0, 0.5, 5.0]])
    s = target_stats(success, norms)
    assert s.success == pytest.approx(100 * 5 / 6)
    assert s.best == pytest.approx((1.0 + 3.0) / 2)  # failed pairs never count as best
    assert s.average == pytest.approx((1 + 2 + 6 + 3 + 5) / 5)
    assert s.worst == pytest.approx(6.0)  # only images whose every target succeeded
    empty = target_stats(torch.zeros(2, 3, dtype=torch.bool), norms)
    assert empty.success == 0 and math.isnan(empty.best) and math.isnan(empty.worst)
    assert finite(empty.average) is None and finite(1.5) == 1.5
    with pytest.raises(ValueError, match="2-D shape"):
        target_stats(success.flatten(), norms.flatten())


def test_order_cell_holds_iff_our_gap_is_nonnegative() -> None:
    assert order_cell("t", "r", "c", 57.4, 12.0).status == "ok"
    assert order_cell("t", "r", "c", 57.4, 0.0).status == "ok"
    assert order_cell("t", "r", "c", 57.4, -0.5).status == "miss"


def test_attack_all_batches_like_one_call(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    x, y = test.x[:23], test.y[:23]
    whole = FGSM(eps=0.1)(clf, x, y)
    out = attack_all(FGSM(eps=0.1), clf, x, y, batch_size=7)
    assert torch.equal(out.x_adv, whole.x_adv)
    assert torch.equal(out.pred, whole.logits_adv.argmax(1))
    assert torch.equal(out.success, whole.success) and out.norms.shape == (23,)
    t = (y + 1) % 10
    targeted = attack_all(FGSM(eps=0.1), clf, x, y, target=t, batch_size=5)
    assert torch.equal(targeted.x_adv, FGSM(eps=0.1)(clf, x, y, target=t).x_adv)
    with pytest.raises(ValueError, match="batch size"):
        attack_all(FGSM(eps=0.1), clf, x, y, batch_size=0)
    with pytest.raises(ValueError, match="target must have shape"):
        attack_all(FGSM(eps=0.1), clf, x, y, target=t[:3])


def test_error_pct_restores_mode(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    clf.train()
    try:
        err = error_pct(clf, test.x, test.y)
        assert clf.training and 0 <= err < 10
    finally:
        clf.eval()


def _scaled(clf: Classifier, factor: float = 1000.0) -> Classifier:
    """``clf`` with its logits times ``factor`` (what a T = 100 student looks like at T = 1)."""

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = clf

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return factor * self.inner.logits(x, check=False)

    return Classifier(Scaled()).eval()


def test_saturation_and_jsma_on_a_scaled_model(
    digits_model: tuple[Classifier, TensorData], tmp_path: Path
) -> None:
    """Logits x1000 (what a T = 100 student looks like at T = 1) saturate the softmax and stop
    the softmax-saliency JSMA; the unscaled model is mostly attackable."""
    clf, test = digits_model
    hot = _scaled(clf)
    x, y = test.x[:40], test.y[:40]
    assert papernot2016.saturated_pct(hot, x) > 90
    assert papernot2016.saturated_pct(clf, x) < 50
    ctx = Context(tmp_path, tmp_path / "cache", True, torch.device("cpu"), 0, None, lambda m: None)
    assert papernot2016.jsma_success(ctx, "plain", clf, x, y) > 40
    assert papernot2016.jsma_success(ctx, "hot", hot, x, y) < 10


def test_grad_stats_vanish_on_a_saturated_model(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    """Scaled-up logits saturate the float32 softmax: the CE input gradient is exactly zero on
    most correctly classified inputs and its median orders of magnitude smaller; a normally
    trained model has no zero gradients."""
    clf, test = digits_model
    ok = clf.predict(test.x) == test.y
    x, y = test.x[ok][:200], test.y[ok][:200]
    normal, hot = grad_stats(clf, x, y), grad_stats(_scaled(clf), x, y)
    assert normal.n == hot.n == len(x)
    assert normal.zero_pct == 0 and normal.median > 0 and normal.p90 >= normal.median
    assert hot.zero_pct > 50 and hot.median <= 1e-3 * normal.median
    assert 0 <= hot.zero_pct <= 100 and hot.mean >= 0


def test_input_grad_norms_is_per_sample_and_leaves_the_model_alone(
    digits_model: tuple[Classifier, TensorData],
) -> None:
    clf, test = digits_model
    x, y = test.x[:30], test.y[:30]
    x0 = x.clone()
    clf.train()
    try:
        norms = input_grad_norms(clf, x, y, batch_size=7)
        assert clf.training  # mode restored
    finally:
        clf.eval()
    assert torch.equal(x, x0) and norms.shape == (30,) and norms.dtype == torch.float32
    assert all(p.requires_grad and p.grad is None for p in clf.parameters())
    assert torch.allclose(norms, input_grad_norms(clf, x, y), rtol=1e-4, atol=1e-7)
    xi = x[3:4].clone().requires_grad_(True)  # one sample alone: the same gradient
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(clf(xi), y[3:4]), xi)
    assert float(norms[3]) == pytest.approx(float(g.norm()), rel=1e-4, abs=1e-7)
    with torch.no_grad():  # works inside no_grad too
        assert input_grad_norms(clf, x[:2], y[:2]).shape == (2,)
    with pytest.raises(ValueError, match="as many samples"):
        input_grad_norms(clf, x, y[:3])
    with pytest.raises(ValueError, match="batch_size"):
        input_grad_norms(clf, x, y, batch_size=0)
    empty = grad_stats(clf, x[:0], y[:0])
    assert empty.n == 0 and math.isnan(empty.median) and math.isnan(empty.zero_pct)


def test_masking_cells_check_cw_on_the_distilled_net_only() -> None:
    g = GradStats(1e-2, 0.4, 0.1, 0.0, 180)
    results = {
        "no distillation": NetResult(97.0, 94.0, 100.0, g),
        "distilled, T = 100": NetResult(14.0, 0.6, 95.0, GradStats(0.0, 0.0, 0.3, 94.0, 170)),
    }
    cells = masking_cells(results, {"no distillation": 95.89, "distilled, T = 100": 0.5})
    by = {(c.row, c.column): c for c in cells}
    assert {c.row for c in cells} == set(results) and len(cells) == 14
    assert by["distilled, T = 100", "CW-L2 success"].status == "ok"
    assert by["no distillation", "CW-L2 success"].status == ""  # no target stated
    assert by["distilled, T = 100", f"FGSM success (eps {FGSM_EPS})"].paper is None
    assert by["distilled, T = 100", "JSMA success"].paper == 0.5
    assert by["distilled, T = 100", f"median {GRAD}"].ours == 0.0
    assert by["distilled, T = 100", "exactly zero gradients"].ours == 94.0
    results["distilled, T = 100"] = NetResult(14.0, 0.6, 80.0, g)
    cells = masking_cells(results, {})
    cw = next(c for c in cells if c.row == "distilled, T = 100" and c.column == "CW-L2 success")
    assert cw.status == "miss"


def test_paper_constants_have_the_orderings_the_tables_check() -> None:
    p = tramer2018.PAPER
    for e in (6, 12):
        for col in tramer2018.BLACK_BOX:
            i = tramer2018.COLUMNS.index(col)
            assert p[6, "A"][i] > p[e, "A_adv"][i] > p[e, "A_adv-ens"][i]
        assert p[e, "A_adv"][1] < p[e, "A_adv-ens"][1]  # A_adv best white-box
    assert all(r > f for f, r in tramer2018.PAPER_WB.values())
    assert papernot2016.PAPER_JSMA[1] > 90 and papernot2016.PAPER_JSMA[100] < 2
    assert madry2018.PAPER["PGD-100, 20 restarts", "A"] >= madry2018.FULL_TARGET
    for (net, norm), (best, avg, worst) in carlini2017.PAPER.items():
        assert best < avg < worst, (net, norm)


def test_quick_budgets_are_smaller_than_full() -> None:
    assert tramer2018.QUICK.test_n < tramer2018.FULL.test_n
    assert tramer2018.QUICK.adv_epochs[0] < tramer2018.QUICK.adv_epochs[1]
    assert papernot2016.QUICK.epochs < papernot2016.FULL.epochs
    assert set(papernot2016.QUICK_TEMPERATURES) <= set(papernot2016.TEMPERATURES)
    assert {1, 100} <= set(papernot2016.QUICK_TEMPERATURES)  # the second table's nets
    assert papernot2016.QUICK.cw_n < papernot2016.FULL.cw_n <= papernot2016.FULL.jsma_n
    q, f = cw_attack(True).config(), cw_attack(False).config()
    assert q["steps"] * q["binary_search_steps"] < f["steps"] * f["binary_search_steps"]
    assert madry2018.QUICK.restarts < madry2018.FULL.restarts == 20
    assert madry2018.FULL.train_steps == 40 and madry2018.FULL.train_step_size == 0.01
    quick, full = carlini2017.cw_attacks(True), carlini2017.cw_attacks(False)
    assert quick.keys() == full.keys() == {"L0", "L2", "Linf"}
    assert carlini2017.QUICK_IMAGES < carlini2017.FULL_IMAGES
    attacks = madry2018.attacks(2, 0)
    cw, cw_plus = (
        attacks["CW (PGD-40, margin loss)"][0],
        attacks["CW+ (PGD-40, high confidence)"][0],
    )
    assert cw.config()["early_stop"] and not cw_plus.config()["early_stop"]
    assert attacks["targeted PGD-40"][1] and not attacks["FGSM"][1]


# --------------------------------------------------------------------- quick runs (slow)
@pytest.fixture(scope="module")
def quick_cache(tmp_path_factory: pytest.TempPathFactory, mnist_root: Path) -> dict[str, Any]:
    """One model cache for the module, so carlini2017 reuses papernot2016's nets."""
    return {"cache": tmp_path_factory.mktemp("models"), "data_dir": str(mnist_root)}


def _quick(name: str, out: Path, env: dict[str, Any]) -> dict[tuple[str, str], float]:
    doc = run(name, out, quick=True, device="cpu", log=lambda m: None, **env)
    assert (out / "table.md").is_file()
    return {(c["row"], c["column"]): c["ours"] for c in doc["cells"]}


@pytest.mark.slow
def test_tramer2018_quick(tmp_path: Path, quick_cache: dict[str, Any]) -> None:
    c = _quick("tramer2018", tmp_path, quick_cache)
    for col in tramer2018.BLACK_BOX:  # A >> A_adv-ens on every transferred attack
        assert c["A", col] > c["A_adv-ens (6 epochs)", col] + 10, col
        assert c["A", col] > c["A_adv-ens (12 epochs)", col] + 10, col
    for e in (6, 12):  # FGSM training helps white-box, and A_adv is best there
        assert c[f"A_adv ({e} epochs)", "FGSM"] < c["A", "FGSM"] - 20
        assert c[f"A_adv ({e} epochs)", "FGSM"] < c[f"A_adv-ens ({e} epochs)", "FGSM"]
    assert c["A_adv-ens (6 epochs)", "FGSM_B"] < c["A_adv (6 epochs)", "FGSM_B"]


@pytest.mark.slow
def test_papernot2016_and_carlini2017_quick(tmp_path: Path, quick_cache: dict[str, Any]) -> None:
    p = _quick("papernot2016", tmp_path / "p", quick_cache)
    assert p["distilled, T = 1", "JSMA success"] > 70
    assert p["distilled, T = 100", "JSMA success"] < 5
    fgsm = f"FGSM success (eps {FGSM_EPS})"  # second table: gradient masking (issue 4)
    assert p["distilled, T = 100", fgsm] < p["no distillation", fgsm] - 40
    assert p["distilled, T = 100", "CW-L2 success"] >= 90
    assert (
        p["distilled, T = 100", f"median {GRAD}"] <= 1e-2 * p["no distillation", f"median {GRAD}"]
    )
    assert p["distilled, T = 100", "exactly zero gradients"] > 50
    c = _quick("carlini2017", tmp_path / "c", quick_cache)
    assert c["distilled, T = 100, CW L2", "success"] >= 90  # distillation does not stop CW
    assert 0.5 < c["distilled, T = 100, CW L2", "mean L2 (average case)"] < 5


@pytest.mark.slow
def test_madry2018_quick(tmp_path: Path, quick_cache: dict[str, Any]) -> None:
    c = _quick("madry2018", tmp_path, quick_cache)
    assert c["natural net", "clean"] > 85
    pgd40 = c["PGD-40, 1 restart", "A"]
    assert c["PGD-100, 20 restarts", "A"] <= pgd40 <= c["FGSM", "A"]  # stronger attack, lower
    assert c["FGSM", "A"] > c["natural net", "FGSM"]  # PGD training helps
