"""``advlab attack`` and the attack part of ``advlab demo``, in-process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from advlab.cli.main import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt")
    code = main(
        [
            "-q",
            "train",
            "--model",
            "lenet",
            "--dataset",
            "digits",
            "--epochs",
            "12",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return out


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_attack_writes_everything(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys,
        "attack",
        "--checkpoint",
        str(checkpoint),
        "--attack",
        "pgd",
        "--eps",
        "0.2",
        "--steps",
        "10",
        "--step-size",
        "0.04",
        "--n",
        "100",
        "--set",
        "early_stop=true",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert "pgd on 100 digits images" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["attack"] == "pgd" and summary["n"] == 100
    assert summary["config"]["early_stop"] is True and summary["config"]["steps"] == 10
    assert summary["accuracy_under_attack"] < summary["clean_accuracy"]
    assert summary["perturbation"]["linf"]["max"] <= 0.2 + 1e-6
    rows = list(csv.DictReader((tmp_path / "samples.csv").open()))
    assert len(rows) == 100 and {"l0", "l2", "linf", "confidence_adv"} <= set(rows[0])
    tensors = load_file(str(tmp_path / "adversarial.safetensors"))
    assert tensors["x_adv"].shape == (100, 1, 8, 8)
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_targeted_class_skips_that_class(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(
        capsys,
        "attack",
        "--checkpoint",
        str(checkpoint),
        "--attack",
        "bim",
        "--eps",
        "0.3",
        "--steps",
        "10",
        "--step-size",
        "0.05",
        "--target",
        "3",
        "--n",
        "50",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["targeted"] and summary["n"] < 50
    rows = list(csv.DictReader((tmp_path / "samples.csv").open()))
    assert all(r["target"] == "3" and r["label"] != "3" for r in rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--attack", "pgdd"], "unknown attack 'pgdd'; known:"),
        (["--attack", "pgd", "--set", "stepz=3"], "pgd has no hyperparameter 'stepz'"),
        (["--attack", "pgd", "--eps", "-1"], "eps must be a number >= 0"),
        (["--attack", "fgsm", "--norm", "l2"], "fgsm supports norm linf"),
        (["--attack", "pgd", "--target", "seven"], "--target must be"),
        (["--attack", "pgd", "--n", "0"], "--n must be >= 1"),
    ],
)
def test_attack_errors(
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    code, _, err = _run(
        capsys,
        "attack",
        "--checkpoint",
        str(checkpoint),
        *argv,
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
    )
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_list_attacks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "list", "attacks")
    assert code == 0 and "fgsm" in out and "pgd" in out


def test_black_box_transfer_and_eot_options(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["attack", "--checkpoint", str(checkpoint), "--n", "30", "--device", "cpu"]
    code, _, err = _run(
        capsys,
        *base,
        "--attack",
        "square",
        "--eps",
        "0.2",
        "--queries",
        "200",
        "--access",
        "scores",
        "--out",
        str(tmp_path / "sq"),
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "sq" / "summary.json").read_text())
    assert summary["config"]["n_queries"] == 200 and summary["gradients_mean"] == 0
    assert summary["model_queries"] >= 30 and summary["access"] == "scores"
    code, _, err = _run(
        capsys,
        *base,
        "--attack",
        "pgd",
        "--eps",
        "0.2",
        "--access",
        "labels",
        "--out",
        str(tmp_path / "pgd"),
    )
    assert code == 2 and "query-only" in err
    code, _, err = _run(
        capsys,
        *base,
        "--attack",
        "fgsm",
        "--eps",
        "0.2",
        "--surrogate",
        str(checkpoint),
        "--access",
        "labels",
        "--out",
        str(tmp_path / "tr"),
    )
    assert code == 0, err
    code, _, err = _run(
        capsys,
        *base,
        "--attack",
        "pgd",
        "--eps",
        "0.2",
        "--steps",
        "3",
        "--eot",
        "2",
        "--print-photo",
        "--out",
        str(tmp_path / "eot"),
    )
    assert code == 0, err
    assert json.loads((tmp_path / "eot" / "summary.json").read_text())["eot"] == 2
    code, _, err = _run(
        capsys, *base, "--attack", "pgd", "--queries", "5", "--out", str(tmp_path / "x")
    )
    assert code == 2 and "--queries" in err
