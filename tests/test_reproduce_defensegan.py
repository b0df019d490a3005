"""Reproduction defensegan2018 (issue 8): fast tests of its helpers and constants on 8x8 digits,
and a slow-marked quick run asserting the qualitative results."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from advlab.data import TensorData
from advlab.defenses import fit_magnet
from advlab.defenses.defense_gan import DefenseGAN, Projector
from advlab.defenses.gan import Generator, train_gan
from advlab.models import Classifier
from advlab.reproduce import Context, reproductions, run
from advlab.reproduce import _defensegan as h
from advlab.reproduce import defensegan2018 as dg18
from advlab.reproduce._defensegan_attacks import (
    adaptive_attacks,
    projected,
    rate,
    reformed,
    white_box_attacks,
)

# a generator budget small enough for 8x8 digits in well under a second
TINY = dataclasses.replace(
    h.QUICK, gan_iterations=3, gan_width=4, iterations=5, restarts=2, craft_iterations=3,
    pgd_steps=3, adaptive_n=8, latent_steps=10, latent_search=2,
)  # fmt: skip


def _ctx(tmp_path: Path, logs: list[str] | None = None) -> Context:
    sink = logs if logs is not None else []
    return Context(tmp_path, tmp_path / "models", True, torch.device("cpu"), 0, None, sink.append)


@pytest.fixture(scope="module")
def tiny_gen(digits_model: tuple[Classifier, TensorData]) -> Generator:
    _, test = digits_model
    return train_gan(test, iterations=20, width=8, latent_dim=16, n_critic=1, lr=1e-3,
                     device="cpu", progress=False)  # fmt: skip


def test_registered_and_paper_tables_complete() -> None:
    repro = reproductions.build("defensegan2018")
    assert repro.name == "defensegan2018" and repro.title and len(repro.papers) == 2
    for attack in ("FGSM", "RAND+FGSM", "CW-L2"):
        for m in "ABCD":
            paper = dg18.PAPER_WB[attack, m]
            assert len(paper) == len(dg18.WB_COLS)
            assert all(0 <= v <= 1 for v in paper)
            # the deck's two tables agree on the clean accuracy of each model
            assert paper[0] == pytest.approx(dg18.PAPER_BB[m][0], abs=6e-4)
    assert all(len(v) == len(dg18.BB_COLS) for v in dg18.PAPER_BB.values())
    assert (*dg18.WB_COLS[:3], "Defense-GAN-Orig", *dg18.WB_COLS[3:]) == dg18.BB_COLS


def test_budgets_full_is_the_papers_quick_is_smaller() -> None:
    full, quick = h.FULL, h.QUICK
    assert full.models == ("A", "B", "C", "D") and set(quick.models) <= set(full.models)
    assert "B" in quick.models  # the substitute architecture and the adaptive attack's model
    assert (full.iterations, full.restarts, full.gan_width) == (200, 10, 64)
    assert (full.gan_n_critic, full.gan_lr, full.gan_iterations) == (5, 1e-4, 200_000)
    assert full.rec_n is None and full.train_n is None and full.cw
    for f in ("test_n", "gan_iterations", "iterations", "restarts", "magnet_epochs"):
        assert getattr(quick, f) <= getattr(full, f), f
    for b in (full, quick):
        assert len(b.epochs) == len(b.rec_epochs) == len(b.models)
    assert quick.epochs_of("D") == (6, 15) and full.epochs_of("A") == (6, 6)
    with pytest.raises(ValueError):
        quick.epochs_of("A")  # not in the quick run


def test_cells_carry_tolerances_by_column() -> None:
    assert dg18.cell("t", "r", "no attack", 0.99, 0.98).status == "ok"
    assert dg18.cell("t", "r", "Defense-GAN-Rec", 0.988, 0.9).status == "miss"
    assert dg18.cell("t", "r", "MagNet", 0.191, 0.3).tolerance == 0.15
    c = dg18.cell("t", "r", "Defense-GAN-Rec", None, 0.5)
    assert c.tolerance is None and c.status == "" and c.unit == "rate"
    assert list(white_box_attacks(False, 0)) == ["FGSM", "RAND+FGSM"]
    assert list(white_box_attacks(True, 0)) == ["FGSM", "RAND+FGSM", "CW-L2"]


def test_generator_cache_round_trip(
    tmp_path: Path, digits_model: tuple[Classifier, TensorData]
) -> None:
    _, test = digits_model
    logs: list[str] = []
    ctx = _ctx(tmp_path, logs)
    gen, info = h.generator(ctx, TINY, test)
    key = h.gan_key(ctx, TINY, len(test))
    assert key == f"dg18-wgan-w4-c2-it3-n{len(test)}-s0"
    assert info["arch"] == gen.arch() and info["history"]["iterations_done"] == 3
    again, info2 = h.generator(ctx, TINY, test)
    assert logs[-1] == f"[cache] {key}" and info2["arch"] == info["arch"]
    z = torch.randn(4, gen.latent_dim)
    assert torch.equal(gen(z), again(z)) and bool(again.fitted) and not again.training
    # missing, unreadable or untrained checkpoints are not loaded
    assert h.load_generator(tmp_path / "nothing", ctx.device) is None
    (tmp_path / "models" / key / "generator.pt").write_bytes(b"garbage")
    assert h.load_generator(tmp_path / "models" / key, ctx.device) is None
    h.save_generator(Generator(16, 8, 1, 4), tmp_path / "untrained")
    assert h.load_generator(tmp_path / "untrained", ctx.device) is None


def test_cached_classifier_trains_once(
    tmp_path: Path, digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, test = digits_model
    calls: list[int] = []

    def make() -> Classifier:
        calls.append(1)
        return clf

    ctx = _ctx(tmp_path)
    first = h.cached(ctx, "k", make)
    second = h.cached(ctx, "k", make)
    assert calls == [1] and not second.training
    assert torch.equal(first.predict(test.x), second.predict(test.x))


def test_projection_and_reformer_accuracies(
    digits_model: tuple[Classifier, TensorData], tiny_gen: Generator
) -> None:
    clf, test = digits_model
    x, y = test.x[:30], test.y[:30]
    before = x.clone()
    proj = Projector(tiny_gen, iterations=5, restarts=2)
    dg = DefenseGAN(clf, tiny_gen, iterations=5, restarts=2)
    # one projection classified by the model == the defended model's own predictions
    assert rate(clf, projected(proj, x), y) == pytest.approx(
        float((dg.predict(x) == y).float().mean())
    )
    assert rate(clf, x[:0], y[:0]) == 0.0 and 0 <= rate(clf, x, y) <= 1
    mag = fit_magnet(clf, test.x[:200], test.x[200:300], epochs=1, device="cpu", progress=False)
    r = reformed(mag, x, batch_size=7)
    assert r.shape == x.shape and float(r.min()) >= 0 and float(r.max()) <= 1
    # the reformer output does not depend on the classifier: MagNet's own logits agree
    assert torch.allclose(clf.logits(r), mag.logits(x), atol=1e-5)
    assert torch.equal(x, before)


def test_adaptive_attacks_report_rates(
    tmp_path: Path, digits_model: tuple[Classifier, TensorData], tiny_gen: Generator
) -> None:
    clf, test = digits_model
    dg = DefenseGAN(clf, tiny_gen, iterations=5, restarts=2, variant="rec")
    ad = adaptive_attacks(_ctx(tmp_path), TINY, dg, test.x[:8], test.y[:8])
    for v in (ad.naive, ad.bpda_fgsm, ad.bpda_pgd, ad.latent_success, ad.latent_accuracy):
        assert 0.0 <= v <= 1.0
    assert ad.clean_mse > 0 and ad.latent_min_mse > 0


@pytest.mark.slow
def test_defensegan2018_quick(tmp_path: Path, mnist_root: Path) -> None:
    doc = run(
        "defensegan2018", tmp_path, quick=True, device="cpu", data_dir=str(mnist_root),
        log=lambda m: None,
    )  # fmt: skip
    cells = {(c["table"], c["row"], c["column"]): c["ours"] for c in doc["cells"]}
    assert {c["table"] for c in doc["cells"]} == {dg18.T_WB, dg18.T_BB, dg18.T_AD}
    for m in h.QUICK.models:
        row = f"FGSM eps 0.3, model {m}"
        assert cells[dg18.T_WB, row, "no attack"] > 0.8
        assert cells[dg18.T_WB, row, "no defense"] < 0.3  # undefended FGSM accuracy is low
        # FGSM adversarial training helps against FGSM on itself
        assert cells[dg18.T_WB, row, "adv. tr. eps 0.3"] > cells[dg18.T_WB, row, "no defense"]
    # the adaptive (BPDA) attack is at least as strong as crafting on the classifier alone
    naive = cells[dg18.T_AD, "FGSM eps 0.3 on the classifier (paper's threat model)",
                  "Defense-GAN-Rec accuracy"]  # fmt: skip
    pgd = cells[
        dg18.T_AD, f"BPDA-PGD eps 0.3, {h.QUICK.pgd_steps} steps", "Defense-GAN-Rec accuracy"
    ]
    assert pgd <= naive + 6.0  # 50 images: three images of slack
    table = (tmp_path / "table.md").read_text()
    assert "Defense-GAN" in table and "Quick mode" in table
