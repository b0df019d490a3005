"""advlab.reporting.visualize and ``advlab visualize``: every compute_* returns the right shapes
and meaningful values, every plot_* a labelled Figure that saves to a non-empty PNG, models are
left in their mode and inputs unmutated, and the command writes its files."""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

import advlab.cli.main as cli_main
from _report_data import make_report
from advlab import attacks, models
from advlab.cli import visualize as vis_cli
from advlab.data import TensorData
from advlab.evaluation.report import RobustnessReport
from advlab.models import Classifier
from advlab.reporting import visualize as vis
from advlab.reporting.plots import save_figure

Model = tuple[Classifier, TensorData]


@pytest.fixture(scope="module")
def batch(digits_model: Model) -> tuple[torch.Tensor, torch.Tensor]:
    _, test = digits_model
    return test.x[:4].clone(), test.y[:4].clone()


@contextmanager
def untouched(clf: Classifier, *tensors: torch.Tensor) -> Iterator[None]:
    """The body leaves the model's mode, parameter flags/grads and the tensors as they were."""
    mode = [m.training for m in clf.modules()]
    flags = [p.requires_grad for p in clf.parameters()]
    copies = [t.clone() for t in tensors]
    yield
    assert [m.training for m in clf.modules()] == mode
    assert [p.requires_grad for p in clf.parameters()] == flags
    assert all(p.grad is None for p in clf.parameters())
    for t, c in zip(tensors, copies, strict=True):
        assert torch.equal(t, c), "an input was mutated"


def check_figure(fig: Figure, tmp_path: Path, name: str, *, line: bool = False) -> None:
    """A Figure with a title and labelled axes that saves to a non-empty PNG."""
    assert isinstance(fig, Figure)
    axes = [a for a in fig.axes if a.axison]
    titles = [fig.get_suptitle()] + [a.get_title() for a in axes]
    assert any(titles), "no title"
    assert any(a.get_xlabel() for a in axes) and any(a.get_ylabel() for a in axes)
    if line:  # the plot axis itself is labelled on both axes
        assert any(a.get_xlabel() and a.get_ylabel() for a in axes)
    path = save_figure(fig, tmp_path / f"{name}.png")
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def roundtrip(data: dict[str, Any], tmp_path: Path, name: str) -> dict[str, Any]:
    """Save and load the figure data (the plots must work from saved data)."""
    return vis.load_data(vis.save_data(data, tmp_path / name))


# ------------------------------------------------------------------------------- network
def test_filters(digits_model: Model, tmp_path: Path) -> None:
    clf, _ = digits_model
    with untouched(clf):
        data = vis.compute_filters(clf)
    assert data["layer"] == "features.0" and data["type"] == "Conv2d"
    assert torch.equal(data["weights"], clf.net.features[0].weight.detach())
    check_figure(vis.plot_filters(roundtrip(data, tmp_path, "f.pt")), tmp_path, "filters")
    mlp = models.build("mlp", input_shape=(1, 8, 8), num_classes=10)
    w = vis.compute_filters(mlp)["weights"]  # a dense first layer shows as input-shaped images
    assert w.shape[1:] == (1, 8, 8)
    with pytest.raises(ValueError, match="no layer"):
        vis.compute_filters(clf, layer="nope")


def test_activations(digits_model: Model, batch: Any, tmp_path: Path) -> None:
    clf, _ = digits_model
    x, _ = batch
    with untouched(clf, x):
        data = vis.compute_activations(clf, x)
    acts = data["activations"]
    assert data["layers"][0] == "features.0" and acts["features.0"].shape == (4, 6, 8, 8)
    assert not any("Dropout" in t or "Flatten" in t for t in data["types"].values())
    last = data["layers"][-1]
    assert torch.allclose(acts[last], clf(x).detach(), atol=1e-5)  # the last layer: the logits
    assert torch.equal(data["logits"].argmax(1), data["pred"])
    some = ["features.0", "features.3", last]  # a map, a deeper map, a dense layer (faster)
    fig = vis.plot_activations(roundtrip(data, tmp_path, "a.pt"), index=1, layers=some)
    check_figure(fig, tmp_path, "activations")
    with pytest.raises(ValueError, match="unknown layer"):
        vis.compute_activations(clf, x, layers=["nope"])


def test_saliency(digits_model: Model, batch: Any, tmp_path: Path) -> None:
    clf, _ = digits_model
    x, y = batch
    with untouched(clf, x, y):
        data = vis.compute_saliency(clf, x, y, n=8, sigma=0.1, seed=3)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(clf(xg).gather(1, y[:, None]).sum(), xg)
    clf.zero_grad(set_to_none=True)
    assert data["gradient"].shape == x.shape
    assert torch.allclose(data["gradient"], grad, atol=1e-6)
    assert torch.allclose(data["gradient_x_input"], grad * x, atol=1e-6)
    again = vis.compute_saliency(clf, x, y, n=8, sigma=0.1, seed=3)["smoothgrad"]
    assert torch.equal(data["smoothgrad"], again)  # seeded
    assert not torch.allclose(data["smoothgrad"], data["gradient"])  # the noise matters
    no_noise = vis.compute_saliency(clf, x, y, n=2, sigma=0.0)["smoothgrad"]
    assert torch.allclose(no_noise, grad, atol=1e-6)  # sigma 0: SmoothGrad = the gradient
    state = torch.random.get_rng_state()
    vis.compute_saliency(clf, x, n=2)
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG used"
    fig = vis.plot_saliency(roundtrip(data, tmp_path, "s.pt"), max_rows=2)
    check_figure(fig, tmp_path, "saliency")
    with pytest.raises(ValueError, match="n "):
        vis.compute_saliency(clf, x, n=0)


def test_layer_shift(digits_model: Model, batch: Any, tmp_path: Path) -> None:
    clf, _ = digits_model
    x, y = batch
    with untouched(clf, x):
        same = vis.compute_layer_shift(clf, x, x.clone())
    assert same["layers"][0] == "input" and same["relative"].shape == (len(same["layers"]), 4)
    assert torch.equal(same["relative"], torch.zeros_like(same["relative"]))
    assert all(float(d.abs().max()) == 0 for d in same["diff"].values())
    x_adv = attacks.build("fgsm", eps=0.2)(clf, x, y).x_adv
    with untouched(clf, x, x_adv):
        data = vis.compute_layer_shift(clf, x, x_adv)
    delta = (x_adv - x).flatten(1)
    expected = delta.norm(dim=1) / x.flatten(1).norm(dim=1)
    assert torch.allclose(data["relative"][0], expected, atol=1e-6)
    assert bool((data["relative"][-1] > 0).all())  # the logits move
    loaded = roundtrip(data, tmp_path, "shift.pt")
    check_figure(vis.plot_layer_shift(loaded), tmp_path, "shift", line=True)
    some = vis.compute_layer_shift(clf, x, x_adv, layers=["features.3", "head.4"])
    assert some["layers"] == ["input", "features.3", "head.4"]
    assert torch.equal(some["relative"], data["relative"][[0, 4, -1]])
    check_figure(vis.plot_shift_maps(some, index=2), tmp_path, "shift_maps")
    with pytest.raises(ValueError, match="must match"):
        vis.compute_layer_shift(clf, x, x_adv[:2])


# -------------------------------------------------------------------------------- attacks
def test_triptych(digits_model: Model, batch: Any, tmp_path: Path) -> None:
    clf, _ = digits_model
    x, y = batch
    with untouched(clf, x, y):
        data = vis.compute_triptych(clf, x, y, attacks.build("fgsm", eps=0.2))
    assert data["x_adv"].shape == x.shape and data["eps"] == 0.2 and data["attack"] == "fgsm"
    assert float((data["x_adv"] - x).abs().max()) <= 0.2 + 1e-6
    assert torch.equal(data["pred"], clf.predict(x))
    assert torch.equal(data["pred_adv"], clf.predict(data["x_adv"]))
    assert bool(((data["confidence"] > 0) & (data["confidence"] <= 1)).all())
    check_figure(vis.plot_triptych(roundtrip(data, tmp_path, "t.pt")), tmp_path, "triptych")
    with pytest.raises(TypeError, match="Attack"):
        vis.compute_triptych(clf, x, y, "fgsm")  # type: ignore[arg-type]


def test_eps_grid(digits_model: Model, batch: Any, tmp_path: Path) -> None:
    clf, _ = digits_model
    x, y = batch
    eps = [0.0, 0.1, 0.3]
    with untouched(clf, x, y):
        data = vis.compute_eps_grid(clf, x, y, "bim", eps, attack_kwargs={"steps": 5})
    assert data["x_adv"].shape == (4, 3, *x.shape[1:]) and data["pred"].shape == (4, 3)
    assert torch.equal(data["x_adv"][:, 0], x)  # eps 0 leaves the input alone
    for j, e in enumerate(eps):
        assert float((data["x_adv"][:, j] - x).abs().max()) <= e + 1e-6
    wrong = (data["pred"] != y[:, None]).float().mean(0)
    assert wrong[2] >= wrong[1] >= wrong[0]  # more eps, more errors
    check_figure(vis.plot_eps_grid(roundtrip(data, tmp_path, "g.pt")), tmp_path, "eps_grid")
    with pytest.raises(ValueError, match="eps"):
        vis.compute_eps_grid(clf, x, y, "fgsm", [])


def test_fooling_images(digits_model: Model, tmp_path: Path) -> None:
    clf, _ = digits_model
    with untouched(clf):
        data = vis.compute_fooling_images(clf, seed=1)
    k = 10
    assert data["x_fool"].shape == (k, 1, 8, 8) and torch.equal(data["target"], torch.arange(k))
    assert float(data["x_fool"].min()) >= 0 and float(data["x_fool"].max()) <= 1
    assert torch.equal(data["pred"], data["target"])  # every class reached ...
    assert bool((data["target_confidence"] > 0.5).all())  # ... with confidence > 0.5
    gauss = vis.compute_fooling_images(clf, classes=[3], noise="gaussian", per_class=2)
    assert gauss["x_noise"].shape == (2, 1, 8, 8) and gauss["target"].tolist() == [3, 3]
    again = vis.compute_fooling_images(clf, classes=[0, 1], seed=1)  # seeded
    assert torch.equal(again["x_noise"], data["x_noise"][:2])
    check_figure(vis.plot_fooling_images(roundtrip(data, tmp_path, "f.pt")), tmp_path, "fooling")
    with pytest.raises(ValueError, match="classes"):
        vis.compute_fooling_images(clf, classes=[10])


def test_linearity(digits_model: Model, batch: Any, tmp_path: Path) -> None:
    clf, _ = digits_model
    x, y = batch
    with untouched(clf, x, y):
        data = vis.compute_linearity(clf, x, y, eps=0.4, n_points=21)
    assert data["logits"].shape == (4, 21, 10) and data["eps"].shape == (21,)
    assert float(data["eps"][10]) == 0.0 and float(data["eps"][-1]) == pytest.approx(0.4)
    assert torch.allclose(data["logits"][:, 10], clf(x).detach(), atol=1e-5)  # eps 0 = clean
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(clf(xg), y, reduction="sum"), xg)
    assert torch.equal(data["direction"], g.sign())
    # along +sign(grad) the loss of the true class goes up: its logit falls relative to the rest
    z = data["logits"]
    lse = torch.logsumexp(z, 2)
    loss = lse - z.gather(2, y[:, None, None].expand(-1, 21, 1)).squeeze(2)
    assert bool((loss[:, -1] > loss[:, 10]).all())
    # a linear model's logits are exactly linear in eps (Goodfellow et al.'s point)
    lin = models.build("softmax", input_shape=(1, 8, 8), num_classes=10)
    zl = vis.compute_linearity(lin, x, y, eps=0.5, n_points=5)["logits"]
    assert torch.allclose(zl[:, 2:] - zl[:, 1:-1], zl[:, 1:-1] - zl[:, :-2], atol=1e-5)
    clipped = vis.compute_linearity(clf, x, y, eps=0.4, n_points=21, clip=True)
    assert clipped["clip"] and torch.allclose(clipped["logits"][:, 10], z[:, 10])
    check_figure(
        vis.plot_linearity(roundtrip(data, tmp_path, "l.pt"), index=1), tmp_path, "lin", line=True
    )
    with pytest.raises(ValueError, match="odd"):
        vis.compute_linearity(clf, x, n_points=20)


def test_robustness_curves(tmp_path: Path) -> None:
    report = make_report()
    path = RobustnessReport(report).to_json(tmp_path / "a" / "report.json")
    other = copy.deepcopy(report)
    other["model"]["name"] = "robust"
    raw = {"label": "raw", "eps": [0.0, 0.2], "accuracy": [0.9, 0.5], "norm": "linf"}
    data = vis.compute_robustness_curves([path, RobustnessReport(other), report, raw])
    curves = data["curves"]
    assert [c["label"] for c in curves] == ["tiny-mlp", "robust", "tiny-mlp (2)", "raw"]
    r = RobustnessReport(report)
    assert curves[0]["eps"] == [0.0, 0.1, 0.3]
    assert curves[0]["accuracy"] == [r.clean_accuracy, r.robust_accuracy(0.1), r.robust_accuracy()]
    assert curves[3]["accuracy"] == [0.9, 0.5]
    renamed = vis.compute_robustness_curves([path], labels=["mine"])
    assert renamed["curves"][0]["label"] == "mine"
    loaded = roundtrip(data, tmp_path, "c.json")
    assert json.loads((tmp_path / "c.json").read_text()) == data
    check_figure(vis.plot_robustness_curves(loaded), tmp_path, "curves", line=True)
    with pytest.raises(ValueError, match="labels"):
        vis.compute_robustness_curves([path], labels=["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        vis.compute_robustness_curves([])


def test_train_mode_model_is_left_in_train_mode(digits_model: Model, batch: Any) -> None:
    clf, _ = digits_model
    x, y = batch
    clf.train()
    try:
        calls: list[Callable[[], Any]] = [
            lambda: vis.compute_activations(clf, x),
            lambda: vis.compute_saliency(clf, x, y, n=2),
            lambda: vis.compute_linearity(clf, x, y),
            lambda: vis.compute_layer_shift(clf, x, x),
            lambda: vis.compute_triptych(clf, x, y, attacks.build("fgsm", eps=0.1)),
        ]
        for call in calls:
            with untouched(clf, x, y):
                call()
            assert clf.training
    finally:
        clf.eval()


# ------------------------------------------------------------------------------------ CLI
def _main(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    """``advlab.cli.main.main`` with a parser that has the visualize subcommand (until the lead
    wires it into main.build_parser, after which this adds nothing)."""
    original = cli_main.build_parser

    def build() -> argparse.ArgumentParser:
        p = original()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        if "visualize" not in sub.choices:
            vis_cli.add_parser(sub)
        return p

    monkeypatch.setattr(cli_main, "build_parser", build)
    return cli_main.main(["-q", *argv])


def test_cli(
    digits_model: Model,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clf, _ = digits_model
    ckpt = models.save(clf, tmp_path / "ckpt", dataset="digits")
    out = tmp_path / "trip"
    argv = ["visualize", "triptych", "--checkpoint", str(ckpt), "--eps", "0.2", "--n", "2"]
    assert _main(monkeypatch, [*argv, "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.split()
    assert {Path(p).name for p in printed} == {"data.pt", "triptych.png"}
    assert (out / "triptych.png").stat().st_size > 1000
    data = vis.load_data(out / "data.pt")
    assert data["kind"] == "triptych" and data["x"].shape == (2, 1, 8, 8) and data["eps"] == 0.2

    redraw = tmp_path / "redraw"
    assert _main(monkeypatch, ["visualize", "triptych", "--from", str(out / "data.pt"),
                               "--out", str(redraw)]) == 0  # fmt: skip
    assert (redraw / "triptych.png").stat().st_size > 1000 and not (redraw / "data.pt").exists()

    lin = tmp_path / "lin"
    code = _main(
        monkeypatch,
        ["visualize", "linearity", "--checkpoint", str(ckpt), "--index", "3", "--eps", "0.3",
         "--set", "n_points=11", "--out", str(lin), "--device", "cpu"],
    )  # fmt: skip
    assert code == 0 and (lin / "linearity.svg").exists()
    assert vis.load_data(lin / "data.pt")["logits"].shape == (1, 11, 10)

    report = RobustnessReport(make_report()).to_json(tmp_path / "r.json")
    curves = tmp_path / "curves"
    code = _main(monkeypatch, ["visualize", "curves", "--reports", str(report), str(report),
                               "--labels", "a", "b", "--out", str(curves)])  # fmt: skip
    assert code == 0 and (curves / "curves.png").exists()
    assert [c["label"] for c in json.loads((curves / "data.json").read_text())["curves"]] == [
        "a",
        "b",
    ]
    capsys.readouterr()


def test_cli_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "o"), "--device", "cpu"]
    assert _main(monkeypatch, ["visualize", "triptych", *out]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert _main(monkeypatch, ["visualize", "curves", *out]) == 2
    assert "--reports" in capsys.readouterr().err
    code = _main(monkeypatch, ["visualize", "filters", "--model", "lenet", "--set", "x=1", *out])
    assert code == 2 and "unknown option" in capsys.readouterr().err
    # an untrained preset works as a demo
    assert _main(monkeypatch, ["visualize", "filters", "--model", "lenet", *out]) == 0
    assert (tmp_path / "o" / "filters.png").exists()
    plt.close("all")
