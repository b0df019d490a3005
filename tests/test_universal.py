"""Universal adversarial perturbations (Moosavi-Dezfooli et al. 2017) and ``advlab universal``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from advlab import data, models
from advlab.attacks.universal import UniversalPerturbation
from advlab.cli.main import main
from advlab.data import TensorData
from advlab.models import Classifier
from advlab.reporting.universal import plot_perturbation

Model = tuple[Classifier, TensorData]


@pytest.fixture(scope="module")
def fit_x() -> torch.Tensor:
    """300 unlabeled training images (the test split stays held out)."""
    return data.load("digits", "train").x[:300]


def _check_ball(uap: UniversalPerturbation, clf: Classifier, x: torch.Tensor) -> None:
    v = uap.perturbation
    assert v.shape == x.shape[1:]
    assert float(uap.lp.size(v[None])[0]) <= uap.eps * (1 + 1e-6)
    xa = uap.apply(x)
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0  # the model's bounds
    assert bool((uap.lp.size(xa - x) <= uap.eps * (1 + 1e-6)).all())


# measured on digits_model over seeds 0-2 (fit on 300 train images, 359 test images):
# l2 1.5 deepfool 0.44-0.54 vs noise 0.10-0.11; linf 0.2 deepfool 0.33-0.36 vs 0.11-0.12;
# linf 0.2 sgd 0.37-0.54 vs 0.11-0.12
@pytest.mark.parametrize(
    ("norm", "eps", "method", "ratio", "points"),
    [
        ("l2", 1.5, "deepfool", 3.0, 0.25),
        ("linf", 0.2, "deepfool", 2.0, 0.15),
        ("linf", 0.2, "sgd", 2.0, 0.20),
    ],
)
def test_fools_far_more_than_noise(
    digits_model: Model,
    fit_x: torch.Tensor,
    norm: str,
    eps: float,
    method: str,
    ratio: float,
    points: float,
) -> None:
    clf, test = digits_model
    uap = UniversalPerturbation(norm=norm, eps=eps, method=method, max_epochs=5, seed=0)
    assert uap.fit(clf, fit_x) is uap
    fool, noise = uap.fooling_rate(clf, test.x), uap.noise_fooling_rate(clf, test.x)
    assert fool >= ratio * noise and fool >= noise + points, (fool, noise)
    assert 1 <= len(uap.history) <= 5 and max(uap.history) == pytest.approx(
        uap.fooling_rate(clf, fit_x)
    )
    _check_ball(uap, clf, test.x)
    # the noise baseline has exactly the perturbation's norm
    size = uap.lp.size(uap.perturbation[None])
    assert torch.allclose(uap.lp.size(uap.noise(5)), size.expand(5), rtol=1e-5)


def test_nothing_hidden_changes(digits_model: Model, fit_x: torch.Tensor) -> None:
    clf, test = digits_model
    x = fit_x[:64].clone()
    flags = [p.requires_grad for p in clf.parameters()]
    clf.train()
    try:
        uap = UniversalPerturbation(eps=0.2, method="sgd", max_epochs=2).fit(clf, x)
        UniversalPerturbation(eps=0.2, max_epochs=1).fit(clf, x)
        uap.fooling_rate(clf, x)
        assert clf.training
    finally:
        clf.eval()
    assert torch.equal(x, fit_x[:64])
    assert [p.requires_grad for p in clf.parameters()] == flags
    assert all(p.grad is None for p in clf.parameters())
    xa = uap.apply(test.x[:5])
    assert torch.equal(xa, uap.apply(test.x[:5])) and not torch.equal(xa, test.x[:5])


@pytest.mark.parametrize("method", ["deepfool", "sgd"])
def test_seed_determinism(digits_model: Model, fit_x: torch.Tensor, method: str) -> None:
    clf, _ = digits_model
    x = fit_x[:64]

    def fit(seed: int) -> torch.Tensor:
        kw: dict[str, Any] = {"norm": "linf", "eps": 0.2, "method": method, "seed": seed}
        return UniversalPerturbation(max_epochs=2, batch_size=16, **kw).fit(clf, x).perturbation

    assert torch.equal(fit(3), fit(3))
    assert not torch.equal(fit(3), fit(4))


def test_stops_at_target_and_sequential_batch(digits_model: Model, fit_x: torch.Tensor) -> None:
    clf, _ = digits_model
    uap = UniversalPerturbation(eps=0.3, method="sgd", target_fooling_rate=0.05, max_epochs=10)
    uap.fit(clf, fit_x[:100])
    assert len(uap.history) == 1 and uap.history[0] >= 0.05
    # batch_size=1 is the paper's one-image-at-a-time Algorithm 1
    seq = UniversalPerturbation(norm="l2", eps=1.0, batch_size=1, max_epochs=1).fit(clf, fit_x[:16])
    assert float(seq.perturbation.norm()) > 0
    _check_ball(seq, clf, fit_x[:16])


def test_save_load_round_trip(digits_model: Model, fit_x: torch.Tensor, tmp_path: Path) -> None:
    clf, test = digits_model
    uap = UniversalPerturbation(norm="l2", eps=1.0, method="sgd", max_epochs=2, lr=0.2)
    uap.fit(clf, fit_x[:100])
    folder = uap.save(tmp_path / "uap")
    meta = json.loads((folder / "perturbation.json").read_text())
    assert meta["config"]["lr"] == 0.2 and meta["shape"] == [1, 8, 8]
    back = UniversalPerturbation.load(folder / "perturbation.safetensors")
    assert torch.equal(back.perturbation, uap.perturbation)
    assert back.config() == uap.config() and back.history == uap.history
    assert torch.equal(back.apply(test.x), uap.apply(test.x))
    assert back.fooling_rate(clf, test.x) == uap.fooling_rate(clf, test.x)

    with pytest.raises(FileNotFoundError, match="no universal perturbation"):
        UniversalPerturbation.load(tmp_path / "nowhere")
    meta["config"]["eps"] = 0.1  # the stored perturbation no longer fits the ball
    (folder / "perturbation.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="exceeds eps"):
        UniversalPerturbation.load(folder)
    meta["schema_version"] = 99
    (folder / "perturbation.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="schema_version"):
        UniversalPerturbation.load(folder)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": 0.2, "norm": "l1"}, "norm must be one of linf, l2"),
        ({"eps": 0.0}, "eps must be a finite number > 0"),
        ({"eps": -1.0}, "eps must be a number >= 0"),
        ({"eps": 0.2, "target_fooling_rate": 1.5}, r"target_fooling_rate must be in \(0, 1\]"),
        ({"eps": 0.2, "max_epochs": 0}, "max_epochs must be an integer >= 1"),
        ({"eps": 0.2, "method": "pgd"}, "method must be one of deepfool, sgd"),
        ({"eps": 0.2, "loss": "dlr"}, "loss must be one of ce, margin"),
        ({"eps": 0.2, "lr": 0.0}, "lr must be a finite number > 0"),
        ({"eps": 0.2, "batch_size": 2.5}, "batch_size must be an integer >= 1"),
        ({"eps": 0.2, "seed": "x"}, "seed must be an int or None"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        UniversalPerturbation(**kwargs)


def test_bad_calls(digits_model: Model) -> None:
    clf, test = digits_model
    uap = UniversalPerturbation(eps=0.2)
    with pytest.raises(RuntimeError, match="not fitted"):
        uap.apply(test.x)
    with pytest.raises(RuntimeError, match="not fitted"):
        uap.fooling_rate(clf, test.x)
    with pytest.raises(TypeError, match="Classifier"):
        uap.fit(clf.net, test.x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside the model's bounds"):
        uap.fit(clf, test.x * 2 + 0.5)
    with pytest.raises(ValueError, match="empty batch"):
        uap.fit(clf, test.x[:0])
    uap.fit(clf, test.x[:8])
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        uap.apply(test.x[:, :, :4])
    with pytest.raises(ValueError, match="n must be an integer"):
        uap.noise(-1)


def test_plot_perturbation(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    path = plot_perturbation(torch.randn(3, 6, 6, generator=g) * 0.1, tmp_path / "rgb.png", "t")
    assert path.stat().st_size > 500
    assert plot_perturbation(torch.zeros(1, 4, 4), tmp_path / "zero.png").is_file()
    with pytest.raises(ValueError, match="non-empty"):
        plot_perturbation(torch.zeros(0), tmp_path / "x.png")


def test_cli_writes_files(
    digits_model: Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clf, _ = digits_model
    ckpt = models.save(clf, tmp_path / "ckpt", dataset="digits")
    out = tmp_path / "out"
    argv = ["-q", "universal", "--checkpoint", str(ckpt), "--eps", "0.2", "--device", "cpu"]
    code = main([*argv, "--method", "sgd", "--n", "200", "--n-test", "150", "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "universal perturbation (sgd, linf eps=0.2) on digits" in printed
    summary = json.loads((out / "universal.json").read_text())
    assert summary["n_fit"] == 200 and summary["n_test"] == 150
    assert summary["fooling_rate_test"] > summary["noise_fooling_rate_test"]
    assert summary["perturbation_norms"]["linf"] <= 0.2 + 1e-6
    assert summary["accuracy_perturbed_test"] < summary["clean_accuracy_test"]
    assert (out / "perturbation.png").stat().st_size > 500
    back = UniversalPerturbation.load(out)
    assert back.method == "sgd" and back.perturbation.shape == (1, 8, 8)

    for bad, match in (
        (["--n", "0"], "--n must be >= 1"),
        (["--set", "bogus=1"], "unknown option"),
        (["--target-fooling-rate", "2"], "target_fooling_rate"),
    ):
        assert main([*argv, *bad, "--out", str(tmp_path / "bad")]) == 2
        assert match in capsys.readouterr().err
