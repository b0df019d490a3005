"""``advlab reproduce`` framework (issue 8): cells, tables, outputs, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from _helpers import InterruptAt
from advlab import data
from advlab.attacks import PGD
from advlab.cli.main import main
from advlab.data import TensorData
from advlab.defenses.training import Standard, TrainConfig
from advlab.models import Classifier
from advlab.reproduce import Cell, Context, Outcome, Reproduction, reproductions, run


def test_cell_status_and_difference() -> None:
    assert Cell("t", "r", "c", 10.0, 12.0, tolerance=3).status == "ok"
    assert Cell("t", "r", "c", 10.0, 14.0, tolerance=3).status == "miss"
    assert Cell("t", "r", "c", 17.9, 5.0, tolerance=0, bound="max").status == "ok"
    assert Cell("t", "r", "c", 17.9, 18.5, tolerance=0, bound="max").status == "miss"
    assert Cell("t", "r", "c", 90.0, 95.0, tolerance=0, bound="min").status == "ok"
    assert Cell("t", "r", "c", None, 1.0, tolerance=1).status == ""
    assert Cell("t", "r", "c", 1.0, 2.5).difference == pytest.approx(1.5)


class _Tiny(Reproduction):
    """A two-cell reproduction used by the tests."""

    name = "test-tiny"
    title = "Tiny"
    papers = ("Nobody 2026",)

    def run(self, ctx: Context) -> Outcome:
        cells = [
            Cell("Table 1", "model", "error", 50.0, 52.0 if ctx.quick else 70.0, tolerance=5),
            Cell("Table 1", "model", "confidence", 0.9, 0.8, unit="rate", note="explained"),
        ]
        return Outcome(cells, ["a note"], [], {"quick": ctx.quick})


@pytest.fixture
def tiny() -> Iterator[None]:
    reproductions.register("test-tiny", _Tiny)
    try:
        yield
    finally:
        reproductions._items.pop("test-tiny")


def test_run_writes_results_and_a_table_that_shows_misses(tiny: None, tmp_path: Path) -> None:
    doc = run("test-tiny", tmp_path / "a", quick=False, device="cpu", log=lambda m: None)
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["cells"] == doc["cells"] and saved["schema_version"] == 1
    assert [c["status"] for c in saved["cells"]] == ["miss", ""]
    table = (tmp_path / "a" / "table.md").read_text()
    assert "| model | error | 50.0% | 70.0% | +20.0 pt | **no** (±5) |  |" in table
    assert "| model | confidence | 0.900 | 0.800 | -0.1 |  | explained |" in table
    assert "1 of 1 compared cells are outside their tolerance" in table
    assert "- a note" in table


class _Dies(_Tiny):
    """Reports its first cell as finished, then is killed before the second."""

    name = "test-dies"

    def run(self, ctx: Context) -> Outcome:
        cell = super().run(ctx).cells[0]
        ctx.partial([cell])
        raise KeyboardInterrupt


def test_partial_results_survive_a_kill_and_go_when_the_run_ends(
    tiny: None, tmp_path: Path
) -> None:
    reproductions.register("test-dies", _Dies)
    try:
        with pytest.raises(KeyboardInterrupt):
            run("test-dies", tmp_path, device="cpu", log=lambda m: None)
    finally:
        reproductions._items.pop("test-dies")
    saved = json.loads((tmp_path / "partial.json").read_text())
    assert saved["partial"] is True and saved["name"] == "test-dies"
    assert [c["ours"] for c in saved["cells"]] == [70.0]
    table = (tmp_path / "partial.md").read_text()
    assert "**In progress**: 1 cell(s) finished so far" in table and " s so far on CPU" in table
    assert "| model | error | 50.0% | 70.0% | +20.0 pt | **no** (±5) |  |" in table
    assert not (tmp_path / "table.md").exists()
    run("test-tiny", tmp_path, device="cpu", log=lambda m: None)  # a finished run: no leftovers
    assert (tmp_path / "table.md").is_file()
    assert not (tmp_path / "partial.json").exists() and not (tmp_path / "partial.md").exists()


def test_cli_lists_and_runs(tiny: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "goodfellow2015" in listed and "test-tiny" in listed
    assert (
        main(["reproduce", "test-tiny", "--quick", "--out", str(tmp_path), "--device", "cpu"]) == 0
    )
    assert "1/1 cells within tolerance" in capsys.readouterr().out
    assert main(["reproduce", "no-such-table", "--out", str(tmp_path)]) == 2
    assert "known:" in capsys.readouterr().err
    assert main(["reproduce"]) == 2


@pytest.mark.slow
def test_goodfellow2015_quick(tmp_path: Path) -> None:
    doc = run("goodfellow2015", tmp_path, quick=True, device="cpu", log=lambda m: None)
    cells = {(c["row"], c["column"]): c["ours"] for c in doc["cells"]}
    assert cells[("shallow softmax", "FGSM error")] > 90.0
    assert cells[("maxout", "FGSM error")] > 70.0
    # adversarial training helps against FGSM on itself, the noise controls much less
    adv = cells[("maxout, adversarially trained", "FGSM error on itself")]
    assert adv < cells[("maxout", "FGSM error")] - 20
    assert adv < cells[("control: ±eps sign noise training", "FGSM error")]
    assert (tmp_path / "table.md").is_file()


@pytest.mark.slow
def test_magnet2017_quick(tmp_path: Path) -> None:
    doc = run("magnet2017", tmp_path, quick=True, device="cpu", log=lambda m: None)
    cells = {(c["row"], c["column"]): c["ours"] for c in doc["cells"]}
    # attacks crafted on the classifier alone are stopped; the white-box attack gets through
    assert cells[("Carlini L2", "no defense")] < cells[("Carlini L2", "with MagNet")] - 20
    adaptive = cells[("PGD Linf eps 0.3, margin loss, knows AEs + detectors", "with MagNet")]
    assert adaptive < cells[("Carlini L2", "with MagNet")] - 10
    # gray-box: the attacked member falls, a randomly drawn member mostly holds
    same = cells[("CW-L2 on member 0", "defended by member 0")]
    assert same < cells[("CW-L2 on member 0", "defended by a random member")] - 20


def test_context_model_resumes_a_killed_training_run(tmp_path: Path) -> None:
    """ctx.model checkpoints every epoch: after a kill in epoch 2 the next call resumes and
    ends with the weights of an uninterrupted run; the partial folder goes once it is saved."""
    train_set = data.load("digits", "train").subset(range(640))  # 10 batches of 64
    cfg = TrainConfig(epochs=3, batch_size=64, lr=3e-3, seed=1)
    logs: list[str] = []
    ctx = Context(tmp_path, tmp_path / "cache", True, torch.device("cpu"), 0, None, logs.append)
    args = {"input_shape": (1, 8, 8), "num_classes": 10}
    with pytest.raises(KeyboardInterrupt):
        ctx.model("m", "lenet", train_set, cfg, InterruptAt(Standard(), at=15), **args)
    assert (tmp_path / "cache" / "m.partial").is_dir()
    counter = InterruptAt(Standard(), at=-1)  # never fires; counts the batches
    resumed = ctx.model("m", "lenet", train_set, cfg, counter, **args)
    assert counter.seen == 20  # epochs 2 and 3 only: epoch 1 finished before the kill
    assert "[train] m: resuming from m.partial" in logs
    assert not (tmp_path / "cache" / "m.partial").exists()
    fresh_ctx = Context(tmp_path, tmp_path / "fresh", True, torch.device("cpu"), 0, None, print)
    fresh = fresh_ctx.model("m", "lenet", train_set, cfg, **args)
    for a, b in zip(resumed.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a partial run with other settings is discarded, not resumed or reported as an error
    with pytest.raises(KeyboardInterrupt):
        ctx.model("n", "lenet", train_set, cfg, InterruptAt(Standard(), at=15), **args)
    other = TrainConfig(epochs=3, batch_size=64, lr=1e-3, seed=1)
    ctx.model("n", "lenet", train_set, other, **args)
    assert any("discarding n.partial" in m for m in logs)


def test_context_attacked_keeps_finished_batches_and_resumes(
    tmp_path: Path, digits_model: tuple[Classifier, TensorData], monkeypatch: pytest.MonkeyPatch
) -> None:
    clf, test = digits_model
    x, y = test.x[:10], test.y[:10]
    logs: list[str] = []
    ctx = Context(tmp_path, tmp_path / "cache", True, torch.device("cpu"), 0, None, logs.append)
    pgd = PGD(eps=0.1, steps=5, step_size=0.03)
    whole = torch.cat([pgd(clf, x[i : i + 4], y[i : i + 4]).x_adv for i in (0, 4, 8)])
    calls = {"n": 0}
    real = PGD.__call__

    def dies_on_the_second_batch(self: PGD, *a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(PGD, "__call__", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        ctx.attacked("pgd", pgd, clf, x, y, batch=4)
    monkeypatch.setattr(PGD, "__call__", real)
    assert torch.equal(ctx.attacked("pgd", pgd, clf, x, y, batch=4).x_adv, whole)
    assert "[cache] pgd: 4 of 10 inputs done" in logs
    # finished: read back without crafting; another attack or other inputs craft again
    monkeypatch.setattr(PGD, "__call__", dies_on_the_second_batch)
    calls["n"] = -100
    assert torch.equal(ctx.attacked("pgd", pgd, clf, x, y, batch=4).x_adv, whole)
    assert calls["n"] == -100
    monkeypatch.setattr(PGD, "__call__", real)
    other = PGD(eps=0.05, steps=5, step_size=0.03)
    assert not torch.equal(ctx.attacked("pgd", other, clf, x, y, batch=4).x_adv, whole)
    assert any("from another run" in m for m in logs)
    (tmp_path / "cache" / "pgd.pt").write_bytes(b"garbage")
    assert torch.equal(ctx.attacked("pgd", pgd, clf, x, y, batch=4).x_adv, whole)
    assert any("unreadable" in m for m in logs)


def test_context_attacked_keeps_targets_successes_and_norms(
    tmp_path: Path, digits_model: tuple[Classifier, TensorData]
) -> None:
    clf, test = digits_model
    x, y = test.x[:9], test.y[:9]
    target = (y + 1) % 10
    ctx = Context(tmp_path, tmp_path / "cache", True, torch.device("cpu"), 0, None, lambda m: None)
    pgd = PGD(eps=0.1, steps=10, step_size=0.02, random_start=False)  # batch-invariant
    ref = pgd(clf, x, y, target=target)
    out = ctx.attacked("t", pgd, clf, x, y, target=target, batch=4)
    for got in (out, ctx.attacked("t", pgd, clf, x, y, target=target, batch=4)):
        assert torch.equal(got.x_adv, ref.x_adv)
        assert torch.equal(got.success, ref.success)
        assert torch.equal(got.norms, ref.norms)
        assert torch.equal(got.pred, ref.logits_adv.argmax(1))
    assert 0 < int(out.success.sum()) < 9  # some targets are reached, not all
    other = ctx.attacked("t", pgd, clf, x, y, target=(y + 2) % 10, batch=4)
    assert torch.equal(other.success, pgd(clf, x, y, target=(y + 2) % 10).success)
    with pytest.raises(ValueError, match="target must have shape"):
        ctx.attacked("t", pgd, clf, x, y, target=target[:3])
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        ctx.attacked("t", pgd, clf, x, y, batch=0)
    with pytest.raises(ValueError, match="no inputs"):
        ctx.attacked("t", pgd, clf, x[:0], y[:0])
