"""``advlab defend`` and evaluating defended checkpoints from the command line (issue 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advlab import models
from advlab.cli.main import main
from advlab.defenses import DefenseGAN, FeatureSqueezing, MagNet, ModelEnsemble


def _run(*argv: str) -> int:
    return main(["-q", *argv])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("ckpts")
    out = []
    for seed in (0, 1):
        folder = root / f"lenet{seed}"
        assert (
            _run(
                "train",
                "--model",
                "lenet",
                "--dataset",
                "digits",
                "--epochs",
                "3",
                "--seed",
                str(seed),
                "--device",
                "cpu",
                "--out",
                str(folder),
            )
            == 0
        )
        out.append(folder)
    return out


def test_defend_then_eval_reports_naive_and_adaptive(
    checkpoints: list[Path], tmp_path: Path
) -> None:
    defended = tmp_path / "jpeg"
    assert (
        _run(
            "defend",
            "jpeg",
            "--checkpoint",
            str(checkpoints[0]),
            "--set",
            "quality=50",
            "--out",
            str(defended),
        )
        == 0
    )
    meta = models.read_meta(defended)
    assert meta["defense"]["name"] == "jpeg" and meta["defense"]["args"]["quality"] == 50
    assert meta["dataset"] == "digits"
    out = tmp_path / "eval"
    assert (
        _run(
            "eval",
            "--checkpoint",
            str(defended),
            "--suite",
            "quick",
            "--eps",
            "0.3",
            "--n",
            "60",
            "--audit-n",
            "40",
            "--out",
            str(out),
            "--device",
            "cpu",
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    titles = [a["attack"] for a in report["per_eps"][0]["attacks"]]
    assert titles == ["fgsm", "pgd-20", "fgsm (adaptive)", "pgd-20 (adaptive)"]
    acc = {a["attack"]: a["accuracy"] for a in report["per_eps"][0]["attacks"]}
    assert acc["pgd-20 (adaptive)"] < acc["fgsm"] - 0.3  # BPDA breaks what zero gradients hid
    assert report["defense"]["gradient"] == "bpda"
    assert "zero-gradients" in {f["code"] for f in report["flags"]}
    assert "adaptive" in (out / "report.md").read_text()


def test_defend_ensemble_and_detector(checkpoints: list[Path], tmp_path: Path) -> None:
    ens = tmp_path / "ens"
    assert (
        _run(
            "defend",
            "ensemble",
            "--checkpoint",
            str(checkpoints[0]),
            "--checkpoint",
            str(checkpoints[1]),
            "--set",
            "combine='probs'",
            "--out",
            str(ens),
        )
        == 0
    )
    loaded = models.load(ens)
    assert isinstance(loaded, ModelEnsemble) and len(loaded.bases) == 2
    fs = tmp_path / "fs"
    assert (
        _run(
            "defend",
            "feature-squeezing",
            "--checkpoint",
            str(checkpoints[0]),
            "--set",
            "median=3",
            "--fpr",
            "0.1",
            "--fit-n",
            "300",
            "--out",
            str(fs),
        )
        == 0
    )
    det = models.load(fs)
    assert isinstance(det, FeatureSqueezing)
    assert models.read_meta(fs)["extra"]["fpr"] == 0.1


def test_defend_errors(
    checkpoints: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ck = str(checkpoints[0])
    assert _run("defend", "no-such", "--checkpoint", ck, "--out", str(tmp_path / "a")) == 2
    assert "known:" in capsys.readouterr().err
    assert _run("defend", "magnet", "--checkpoint", ck, "--out", str(tmp_path / "b")) == 2
    assert "advlab train --defense magnet" in capsys.readouterr().err
    assert (
        _run(
            "defend", "jpeg", "--checkpoint", ck, "--set", "quality=0", "--out", str(tmp_path / "c")
        )
        == 2
    )
    assert "quality" in capsys.readouterr().err
    assert (
        _run(
            "defend", "jpeg", "--checkpoint", ck, "--set", "colour=1", "--out", str(tmp_path / "d")
        )
        == 2
    )
    assert "quality" in capsys.readouterr().err  # names the options it takes


def test_train_magnet_then_eval(checkpoints: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "magnet"
    assert (
        _run(
            "train",
            "--defense",
            "magnet",
            "--base",
            str(checkpoints[0]),
            "--epochs",
            "3",
            "--set",
            "recipe_args={fpr=0.05}",
            "--device",
            "cpu",
            "--out",
            str(out),
        )
        == 0
    )
    meta = models.read_meta(out)
    assert meta["defense"]["name"] == "magnet" and meta["recipe"]["fpr"] == 0.05
    loaded = models.load(out)
    assert isinstance(loaded, MagNet)
    ev = tmp_path / "ev"
    assert (
        _run(
            "eval",
            "--checkpoint",
            str(out),
            "--suite",
            "quick",
            "--eps",
            "0.2",
            "--n",
            "40",
            "--no-audit",
            "--out",
            str(ev),
            "--device",
            "cpu",
        )
        == 0
    )
    report = json.loads((ev / "report.json").read_text())
    assert report["defense"]["detects"] is True
    assert 0.0 <= report["defense"]["clean_false_positive_rate"] <= 1.0
    adaptive = [a for a in report["suite"]["attacks"] if a.get("view") == "adaptive"]
    assert adaptive and all(a["config"].get("loss") == "margin" for a in adaptive)
    # against a detector each input keeps its first misclassified, undetected iterate
    assert all(a["config"]["early_stop"] is True for a in adaptive if "early_stop" in a["config"])
    assert any("early_stop" in a["config"] for a in adaptive)


def test_train_generative_errors(
    checkpoints: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("train", "--defense", "magnet", "--out", str(tmp_path / "x")) == 2
    assert "--base" in capsys.readouterr().err
    assert (
        _run(
            "train",
            "--defense",
            "magnet",
            "--base",
            str(checkpoints[0]),
            "--set",
            "recipe_args={colour=1}",
            "--out",
            str(tmp_path / "y"),
        )
        == 2
    )
    assert "fpr" in capsys.readouterr().err


def test_train_defense_gan_rec(checkpoints: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "dgan"
    options = (
        "recipe_args={gan_iterations=20, latent_dim=8, width=8, iterations=5, restarts=2, "
        'variant="rec", rec_train_n=64, classifier_epochs=1}'
    )
    assert (
        _run(
            "train",
            "--defense",
            "defense-gan",
            "--base",
            str(checkpoints[0]),
            "--set",
            options,
            "--device",
            "cpu",
            "--out",
            str(out),
        )
        == 0
    )
    loaded = models.load(out)
    assert isinstance(loaded, DefenseGAN) and loaded.variant == "rec"
    assert loaded.defense_args()["iterations"] == 5
    x = torch.rand(4, 1, 8, 8)
    assert loaded.predict(x).shape == (4,)


def test_train_magnet_resumes_after_a_kill(
    checkpoints: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def train_magnet(out: Path, *extra: str) -> int:
        argv = ["train", "--defense", "magnet", "--base", str(checkpoints[0]), "--epochs", "3"]
        return _run(*argv, "--device", "cpu", "--out", str(out), *extra)

    assert train_magnet(tmp_path / "whole") == 0
    real_step = torch.optim.Adam.step
    steps = {"n": 0}

    def dies_in_epoch_two(self: torch.optim.Adam, *a: object, **k: object) -> object:
        steps["n"] += 1
        if steps["n"] == 7:  # 5 batches of 256 digits per epoch
            raise KeyboardInterrupt
        return real_step(self, *a, **k)  # type: ignore[arg-type]

    out = tmp_path / "killed"
    monkeypatch.setattr(torch.optim.Adam, "step", dies_in_epoch_two)
    assert train_magnet(out) == 130  # interrupted: the CLI says finished epochs are saved
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert [p.name for p in out.iterdir()] == ["magnet.partial"]
    capsys.readouterr()
    assert train_magnet(out) == 2
    assert "--resume" in capsys.readouterr().err
    assert train_magnet(out, "--resume") == 0
    assert not (out / "magnet.partial").exists()
    whole, resumed = models.load(tmp_path / "whole"), models.load(out)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
