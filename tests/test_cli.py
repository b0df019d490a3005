"""The ``advlab`` command line, run in-process: list, train, eval, demo, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advlab.cli.main import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "list", "models")
    assert code == 0
    for name in ("softmax", "maxout", "lenet", "madry-mnist", "tramer-a", "wide-resnet"):
        assert name in out
    code, out, _ = _run(capsys, "list", "datasets")
    assert code == 0 and "mnist" in out and "digits" in out


def test_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "run"
    code, out, err = _run(
        capsys,
        "train",
        "--model",
        "mlp",
        "--dataset",
        "synthetic",
        "--epochs",
        "2",
        "--out",
        str(out_dir),
        "--device",
        "cpu",
        "--set",
        "lr=0.003",
        "--set",
        "model_args={hidden=[32]}",
    )
    assert code == 0, err
    assert "test acc" in out
    config = json.loads((out_dir / "config.json").read_text())
    assert config["lr"] == 0.003 and config["model_args"] == {"hidden": [32]}
    assert (out_dir / "weights.safetensors").exists()

    code, out, err = _run(
        capsys, "eval", "--checkpoint", str(out_dir), "--suite", "none", "--device", "cpu"
    )
    assert code == 0, err
    report = json.loads((out_dir / "eval.json").read_text())
    assert report["dataset"] == "synthetic" and report["n"] > 0
    assert len(report["confusion"]) == 3 and sum(map(sum, report["confusion"])) == report["n"]
    assert report["accuracy"] > 0.8

    # the same folder again without --resume is refused; with --resume it is a no-op continue
    code, _, err = _run(
        capsys,
        "train",
        "--model",
        "mlp",
        "--dataset",
        "synthetic",
        "--epochs",
        "2",
        "--out",
        str(out_dir),
        "--device",
        "cpu",
        "--set",
        "lr=0.003",
        "--set",
        "model_args={hidden=[32]}",
    )
    assert code == 2 and "--resume" in err
    code, _, err = _run(
        capsys,
        "train",
        "--model",
        "mlp",
        "--dataset",
        "synthetic",
        "--epochs",
        "3",
        "--out",
        str(out_dir),
        "--device",
        "cpu",
        "--resume",
        "--set",
        "lr=0.003",
        "--set",
        "model_args={hidden=[32]}",
    )
    assert code == 0, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--model", "resnet9000", "--dataset", "synthetic", "--out", "{tmp}"],
            "unknown model 'resnet9000'; known: ",
        ),
        (["train", "--dataset", "imagenet", "--out", "{tmp}"], "unknown dataset"),
        (["train", "--dataset", "synthetic", "--epochs", "0", "--out", "{tmp}"], "epochs"),
        (["train", "--dataset", "synthetic", "--set", "lr", "--out", "{tmp}"], "KEY=VALUE"),
        (
            ["train", "--dataset", "synthetic", "--set", "lrr=1", "--out", "{tmp}"],
            "unknown option(s) lrr",
        ),
        (["train", "--dataset", "synthetic", "--device", "tpu", "--out", "{tmp}"], "device"),
        (["eval", "--checkpoint", "{tmp}/missing"], "no checkpoint"),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = _run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_argparse_errors_exit_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "two", "--out", "x"])
    assert exc.value.code == 2


def test_train_and_eval_on_real_mnist(
    mnist_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(
        capsys,
        "train",
        "--model",
        "lenet",
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_root),
        "--limit",
        "5000",
        "--epochs",
        "2",
        "--lr",
        "0.003",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
    )
    assert code == 0, err
    code, _, err = _run(
        capsys,
        "eval",
        "--checkpoint",
        str(tmp_path),
        "--n",
        "1000",
        "--suite",
        "none",
        "--data-dir",
        str(mnist_root),
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] > 0.8


def test_demo_falls_back_to_digits_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys,
        "demo",
        "--offline",
        "--data-dir",
        str(tmp_path / "empty"),
        "--out",
        str(tmp_path / "demo"),
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert "lenet on digits: clean test error" in out and "FGSM eps=0.25" in out
    folder = tmp_path / "demo" / "lenet-digits"
    assert json.loads((folder / "eval.json").read_text())["accuracy"] >= 0.95
    fgsm = json.loads((folder / "fgsm.json").read_text())
    pgd = json.loads((folder / "pgd.json").read_text())
    assert pgd["accuracy_under_attack"] <= fgsm["accuracy_under_attack"] + 0.02
    assert (folder / "fgsm.png").stat().st_size > 1000
