"""The web demo's JSON API (``advlab serve``): lists, samples, attacks, curves, validation,
errors that never take the server down, latency, the model zoo's train-then-cache path, and the
defended models (MagNet, Defense-GAN: naive/adaptive views, the detector's verdicts)."""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import time
import warnings
from typing import Any

import pytest
import torch

from advlab import models
from advlab.attacks import Attack
from advlab.data import TensorData
from advlab.models import Classifier

if os.environ.get("CI") != "true":  # under CI the serve extra must be installed: fail, not skip
    pytest.importorskip("fastapi", reason="advlab[serve] (fastapi) is not installed")
    pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")

with warnings.catch_warnings():  # starlette >= 1.x asks for httpx2 instead of httpx
    warnings.filterwarnings("ignore", message=".*httpx.*deprecated")
    from fastapi.testclient import TestClient

from advlab.serve.app import create_app
from advlab.serve.attacks import MENU, AttackSpec
from advlab.serve.curves import CurveConfig
from advlab.serve.models import (
    DEFAULT_MODELS,
    ZOO,
    DemoModel,
    load_defense_gan_checkpoint,
    load_zoo,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*httpx.*deprecated")


@pytest.fixture(scope="module")
def quick_zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, DemoModel]]:
    """The default zoo on the digits at the quick budget, trained once (MagNet included)."""
    from advlab import data

    folder = tmp_path_factory.mktemp("zoo")
    train, test = data.load("digits", "train"), data.load("digits", "test")
    return folder, load_zoo(train, test, folder, quick=True)


@pytest.fixture(scope="module")
def served(
    digits_model: tuple[Classifier, TensorData], quick_zoo: tuple[Any, dict[str, DemoModel]]
) -> tuple[TestClient, TensorData]:
    clf, test = digits_model
    zoo = {
        "plain": DemoModel("plain", "Plain", "digits LeNet", clf, "digits", eps_max=0.5),
        "magnet": quick_zoo[1]["magnet"],
    }
    curve = CurveConfig(n=40, eps_step=0.25, pgd_steps=3, adaptive_steps=3)
    return TestClient(create_app(zoo, test, curve=curve)), test


@pytest.fixture(scope="module")
def client(served: tuple[TestClient, TensorData]) -> TestClient:
    return served[0]


def sample_image(client: TestClient, i: int = 0) -> list[list[float]]:
    image: list[list[float]] = client.get("/api/samples").json()["samples"][i]["image"]
    return image


def attack(client: TestClient, **kw: Any) -> Any:
    body = {"model": "plain", "attack": "fgsm", "eps": 0.5, "steps": 1} | kw
    if "image" not in body:
        body["image"] = sample_image(client)
    return client.post("/api/attack", json=body)


# ---------------------------------------------------------------------------------- lists
def test_models_and_attacks_are_listed(client: TestClient) -> None:
    body = client.get("/api/models").json()
    assert body["dataset"] == "digits"
    m, mag = body["models"]
    assert m["name"] == "plain" and m["input_shape"] == [1, 8, 8]
    assert m["eps"]["min"] == 0.0 and m["eps"]["max"] == 0.5
    assert m["defense"] is None and m["detects"] is False
    assert mag["name"] == "magnet" and mag["detects"] is True
    d = mag["defense"]
    assert d["name"] == "magnet" and d["detects"] is True and d["gradient"] == "exact"
    assert "LeNet alone" in d["naive"] and "detectors" in d["adaptive"]
    assert d["settings"]["fpr"] == 0.02 and d["settings"]["detectors"] == ["I:l2", "II:l1"]
    assert 0 <= mag["clean_rejected"] <= 1 and mag["clean_n"] == 359
    attacks = {a["name"]: a for a in client.get("/api/attacks").json()["attacks"]}
    assert {"fgsm", "pgd", "pgd-margin", "square", "deepfool"} <= set(attacks)
    assert attacks["fgsm"]["steps"] is None and attacks["pgd"]["steps"]["max"] == 200
    assert attacks["deepfool"]["uses_eps"] is False


def test_samples_cover_the_classes(client: TestClient) -> None:
    body = client.get("/api/samples").json()
    assert body["shape"] == [8, 8] and len(body["samples"]) == 20
    assert {s["label"] for s in body["samples"]} == set(range(10))
    pixels = torch.tensor([s["image"] for s in body["samples"]])
    assert pixels.shape == (20, 8, 8) and 0 <= float(pixels.min()) <= float(pixels.max()) <= 1
    assert len(client.get("/api/samples?n=3").json()["samples"]) == 3
    assert client.get("/api/samples?n=1000").status_code == 422


def test_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../models.py").status_code == 404
    spec = client.get("/openapi.json").json()
    assert "/api/attack" in spec["paths"] and "AttackRequest" in spec["components"]["schemas"]


# -------------------------------------------------------------------------------- attacks
def test_fgsm_at_large_eps_changes_the_prediction(client: TestClient) -> None:
    image = sample_image(client)
    r = attack(client, image=image, eps=0.5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] and body["pred_after"] != body["pred_before"]
    assert body["top3_after"][0]["cls"] == body["pred_after"]
    assert abs(sum(p["prob"] for p in body["top3_before"]) - 1) < 0.5
    x, x_adv, delta = (torch.tensor(body[k]) for k in ("x", "x_adv", "perturbation"))
    assert x.shape == x_adv.shape == delta.shape == (8, 8)
    assert torch.allclose(x, torch.tensor(image), atol=1e-3)  # rounded to 4 decimals
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert body["linf"] <= 0.5 + 1e-5 and float(delta.abs().max()) <= 0.5 + 1e-3
    assert body["config"]["eps"] == 0.5 and body["gradients"] == 1


@pytest.mark.parametrize("name", list(MENU))
def test_every_menu_attack_answers(client: TestClient, name: str) -> None:
    spec = MENU[name]
    steps = 1 if spec.steps is None else min(spec.steps[2], 50)
    r = attack(client, attack=name, eps=0.3, steps=steps)
    assert r.status_code == 200, r.text
    assert r.json()["linf"] <= (0.3 + 1e-5 if spec.uses_eps else 1.0)


def test_targeted_attack(client: TestClient) -> None:
    body = attack(client, attack="pgd", eps=0.5, steps=20, target=3).json()
    assert body["target"] == 3 and body["success"] == (body["pred_after"] == 3)


def test_larger_images_are_reduced_and_png_is_accepted(client: TestClient) -> None:
    from PIL import Image

    big = torch.zeros(280, 280)
    big[60:220, 120:160] = 1.0  # a "1"
    r = attack(client, image=big.tolist())
    assert r.status_code == 200, r.text
    assert torch.tensor(r.json()["x"]).shape == (8, 8)
    small = torch.nn.functional.interpolate(big[None, None], size=(28, 28), mode="area")[0, 0]
    png = io.BytesIO()
    Image.fromarray((small * 255).round().byte().numpy(), mode="L").save(png, format="PNG")
    b64 = base64.b64encode(png.getvalue()).decode()
    for image in (b64, "data:image/png;base64," + b64):
        r = attack(client, image=image)
        assert r.status_code == 200, r.text
    x_png = torch.tensor(r.json()["x"])
    x_grid = torch.tensor(attack(client, image=small.tolist()).json()["x"])
    assert torch.allclose(x_png, x_grid, atol=3e-3)


def test_fgsm_and_pgd20_answer_in_under_a_second() -> None:
    """One 28x28 image on a LeNet (the MNIST demo's size); timing does not depend on the
    weights, so the net is untrained. Generous bound: typically 5-50 ms on 2 CPU cores."""
    torch.manual_seed(0)
    clf = models.build("lenet", input_shape=(1, 28, 28), num_classes=10).eval()
    data = TensorData(x=torch.rand(20, 1, 28, 28), y=torch.arange(20) % 10, num_classes=10)
    client = TestClient(create_app({"m": DemoModel("m", "m", "", clf, "synthetic")}, data))
    image = data.x[0, 0].tolist()
    for name, steps in (("fgsm", 1), ("pgd", 20)):
        body = {"image": image, "model": "m", "attack": name, "eps": 0.3, "steps": steps}
        client.post("/api/attack", json=body)  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = client.post("/api/attack", json=body)
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200
        assert min(times) < 1.0, f"{name}: {times}"
        assert r.json()["gradients"] == steps


# ------------------------------------------------------------------------- defended models
def test_rejected_field_is_null_for_plain_and_boolean_for_magnet(client: TestClient) -> None:
    plain = attack(client, attack="fgsm", eps=0.3).json()
    assert plain["rejected"] is None and plain["view"] == "model" and plain["defense"] is None
    assert plain["adaptive"] is False
    for adaptive in (False, True):
        r = attack(client, model="magnet", attack="pgd", eps=0.3, steps=10, adaptive=adaptive)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["view"] == ("adaptive" if adaptive else "naive")
        assert body["defense"] == "magnet" and body["adaptive"] is adaptive
        rej = body["rejected"]
        assert set(rej) == {"clean", "adversarial"}
        assert all(isinstance(v, bool) for v in rej.values())
        if rej["adversarial"]:
            assert body["success"] is False  # a rejected adversarial input counts as defended
        else:
            assert body["success"] == (body["pred_after"] != body["pred_before"])
        assert body["linf"] <= 0.3 + 1e-5
        assert body["config"]["early_stop"] is adaptive  # adaptive on a detector: first success


def test_rejection_matches_the_defense_and_naive_targets_the_lenet(
    served: tuple[TestClient, TensorData],
) -> None:
    client = served[0]
    m = client.app.state.models["magnet"]  # type: ignore[attr-defined]
    body = attack(client, model="magnet", attack="fgsm", eps=0.5).json()
    x, x_adv = (torch.tensor(body[k])[None, None] for k in ("x", "x_adv"))
    with torch.no_grad():
        assert bool(m.clf.reject(x_adv)[0]) == body["rejected"]["adversarial"]
        assert bool(m.clf.reject(x)[0]) == body["rejected"]["clean"]
        assert int(m.clf.predict(x)[0]) == body["pred_before"]
    assert m.view(False) is m.clf.base and m.view(True) is m.view(True)


DEFENDED_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("adaptive on an undefended model", {"adaptive": True}, "has no defense"),
    ("adaptive as a string", {"model": "magnet", "adaptive": "yes"}, "adaptive"),
    ("adaptive as a number", {"model": "magnet", "adaptive": 1}, "adaptive"),
    ("adaptive null", {"model": "magnet", "adaptive": None}, "adaptive"),
    ("magnet, eps above max", {"model": "magnet", "adaptive": True, "eps": 0.9}, "eps must be"),
    ("magnet, wrong size", {"model": "magnet", "image": [[0.0] * 9] * 9}, "image must be"),
    ("magnet, steps too large", {"model": "magnet", "attack": "pgd", "steps": 500}, "steps"),
]


@pytest.mark.parametrize(
    ("what", "change", "message"), DEFENDED_BAD, ids=[b[0] for b in DEFENDED_BAD]
)
def test_adaptive_flag_and_bad_input_on_magnet_get_422(
    client: TestClient, what: str, change: dict[str, Any], message: str
) -> None:
    r = attack(client, **change)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def test_magnet_curve_counts_rejections_as_defended(client: TestClient) -> None:
    body = client.get("/api/curve?model=magnet").json()
    assert set(body["curves"]) == {"fgsm", "pgd", "pgd-adaptive"}
    assert body["labels"] == {
        "fgsm": "FGSM naive",
        "pgd": "PGD-3 naive",
        "pgd-adaptive": "PGD-3 adaptive",
    }
    assert "rejected adversarial input counts as defended" in body["note"]
    for acc in body["curves"].values():  # the per-sample worst case: never rises with eps
        assert all(a >= b for a, b in itertools.pairwise(acc))
    plain = client.get("/api/curve?model=plain").json()
    assert plain["note"] is None and plain["labels"]["pgd-margin"] == "PGD-3 margin"


def test_defense_gan_opt_in_caps_adaptive_steps_and_loads_checkpoints(
    quick_zoo: tuple[Any, dict[str, DemoModel]], tmp_path: Any
) -> None:
    from advlab import data
    from advlab.defenses import DefenseGAN

    folder, zoo = quick_zoo
    train, test = data.load("digits", "train"), data.load("digits", "test")
    assert "defense-gan" not in DEFAULT_MODELS and "magnet" in DEFAULT_MODELS
    dg = load_zoo(train, test, folder, quick=True, names=["defense-gan"])["defense-gan"]
    assert isinstance(dg.clf, DefenseGAN) and dg.clf.projector.iterations == 5
    assert "DEMO QUALITY" in dg.description and dg.adaptive_max_steps == 20
    client = TestClient(create_app({"defense-gan": dg}, test))
    info = client.get("/api/models").json()["models"][0]
    assert info["detects"] is False and info["defense"]["gradient"] == "bpda"
    image = sample_image(client)
    body = {"image": image, "model": "defense-gan", "attack": "pgd", "eps": 0.3}
    r = client.post("/api/attack", json=body | {"steps": 21, "adaptive": True})
    assert r.status_code == 422 and "at most 20" in r.json()["detail"]
    r = client.post("/api/attack", json=body | {"steps": 21})  # naive: crafted on the LeNet
    assert r.status_code == 200 and r.json()["view"] == "naive"
    r = client.post("/api/attack", json=body | {"steps": 3, "adaptive": True})
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] is None and r.json()["view"] == "adaptive"
    curve = client.get("/api/curve?model=defense-gan").json()
    assert curve["n"] == 20 and "rejected" not in curve["note"]  # its limits; no detector
    # a checkpoint as `advlab train --defense defense-gan` writes it: served with a bounded L, R
    big = DefenseGAN(dg.clf.base, dg.clf.generator, iterations=200, restarts=10)
    models.save(big, tmp_path / "ckpt", dataset="digits")
    served = load_defense_gan_checkpoint(tmp_path / "ckpt", train, test, tmp_path / "cache")
    assert served.name == "defense-gan" and served.clean_accuracy is not None
    assert served.clf.projector.iterations == 25 and served.clf.projector.restarts == 4
    assert "L = 200, R = 10" in served.description
    with pytest.raises(ValueError, match="not a Defense-GAN"):
        load_defense_gan_checkpoint(zoo["plain"].folder, train, test, tmp_path / "cache")
    with pytest.raises(ValueError, match="cannot load"):
        load_defense_gan_checkpoint(tmp_path / "nope", train, test, tmp_path / "cache")


# ------------------------------------------------------------------------- bad input: 4xx
def _nan_body(client: TestClient) -> str:
    image = sample_image(client)
    image[0][0] = float("nan")
    body = {"image": image, "model": "plain", "attack": "fgsm", "eps": 0.1}
    return json.dumps(body)  # json.dumps writes NaN, which is not JSON but Python reads it


BAD: list[tuple[str, dict[str, Any], int, str]] = [
    ("wrong size", {"image": [[0.0] * 9] * 9}, 422, "image must be"),
    ("ragged rows", {"image": [[0.0] * 8] * 7 + [[0.0] * 7]}, 422, "same length"),
    ("out of range", {"image": [[1.5] * 8] * 8}, 422, "in [0, 1]"),
    ("3-D image", {"image": [[[0.0] * 8] * 8] * 8}, 422, "image"),
    ("not base64", {"image": "%%%"}, 422, "base64"),
    ("base64 not png", {"image": base64.b64encode(b"GIF89a....").decode()}, 422, "PNG"),
    ("eps above model max", {"eps": 0.9}, 422, "eps must be in [0, 0.5]"),
    ("negative eps", {"eps": -0.1}, 422, "eps"),
    ("eps infinite", {"eps": "inf"}, 422, "eps"),
    ("steps too large for pgd", {"attack": "pgd", "steps": 500}, 422, "steps must be in"),
    ("steps above global max", {"steps": 10**6}, 422, "steps"),
    ("steps zero", {"attack": "pgd", "steps": 0}, 422, "steps"),
    ("unknown model", {"model": "nope"}, 422, "unknown model 'nope'; known: plain"),
    ("unknown attack", {"attack": "nope"}, 422, "unknown attack 'nope'; known: fgsm"),
    ("model as a path", {"model": "../../etc/passwd"}, 422, "model"),
    ("extra field", {"path": "/etc/passwd"}, 422, "path"),
    ("target out of range", {"attack": "pgd", "steps": 5, "target": 10}, 422, "target"),
    ("target on untargeted", {"attack": "deepfool", "steps": 5, "target": 1}, 422, "untargeted"),
]


@pytest.mark.parametrize(("what", "change", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_4xx_with_a_message(
    client: TestClient, what: str, change: dict[str, Any], status: int, message: str
) -> None:
    r = attack(client, **change)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and message in detail, detail
    assert len(r.text) < 5000  # never echoes the image back


def test_nan_non_json_and_huge_bodies(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    r = client.post("/api/attack", content=_nan_body(client), headers=headers)
    assert r.status_code == 422 and "NaN" in r.json()["detail"]
    r = client.post("/api/attack", content=b"{not json", headers=headers)
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = client.post("/api/attack", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and r.json()["detail"]
    r = client.post("/api/attack", content=b"[" + b"0.5," * 2_000_000 + b"0]", headers=headers)
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks() -> Any:  # no Content-Length: counted while read
        for _ in range(100):
            yield b" " * 65536

    r = client.post("/api/attack", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert client.get("/api/models").status_code == 200  # still serving


class _Broken(Attack):
    name = "broken"

    def _attack(self, p: Any) -> Any:
        raise RuntimeError("boom inside the attack")


def test_an_exception_inside_an_attack_is_a_500_and_the_server_lives(
    served: tuple[TestClient, TensorData],
) -> None:
    old, test = served
    m = old.app.state.models  # type: ignore[attr-defined]
    menu = dict(MENU) | {"fgsm": AttackSpec("fgsm", "broken", "", lambda e, s: _Broken())}
    client = TestClient(create_app(m, test, attacks=menu))
    image = sample_image(client)
    r = client.post(
        "/api/attack", json={"image": image, "model": "plain", "attack": "fgsm", "eps": 0.1}
    )
    assert r.status_code == 500 and "boom inside the attack" in r.json()["detail"]
    r = client.post(
        "/api/attack", json={"image": image, "model": "plain", "attack": "pgd", "eps": 0.1}
    )
    assert r.status_code == 200
    clf = m["plain"].clf
    assert not clf.training and all(p.grad is None for p in clf.parameters())


# --------------------------------------------------------------------------------- curves
def test_curve_is_computed_once_and_cached(client: TestClient) -> None:
    r = client.get("/api/curve?model=plain")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["eps"] == [0.0, 0.25, 0.5] and body["n"] == 40
    for name in ("fgsm", "pgd", "pgd-margin"):
        acc = body["curves"][name]
        assert len(acc) == 3 and acc[0] > 0.6 and acc[2] <= acc[0]
    t0 = time.perf_counter()
    assert client.get("/api/curve?model=plain").json() == body
    assert time.perf_counter() - t0 < 0.5
    r = client.get("/api/curve?model=nope")
    assert r.status_code == 404 and "unknown model" in r.json()["detail"]


# ---------------------------------------------------------------------------------- zoo
def test_zoo_trains_then_loads_from_cache(quick_zoo: tuple[Any, dict[str, DemoModel]]) -> None:
    from advlab import data
    from advlab.defenses import MagNet

    folder, first = quick_zoo
    train, test = data.load("digits", "train"), data.load("digits", "test")
    assert list(first) == list(DEFAULT_MODELS) == [n for n in ZOO if n != "defense-gan"]
    for m in first.values():
        assert m.folder is not None and (m.folder / "serve.json").is_file()
        assert m.input_shape == (1, 8, 8) and m.clean_accuracy is not None
    assert first["plain"].clean_accuracy > 0.5  # type: ignore[operator]
    mag = first["magnet"].clf
    assert isinstance(mag, MagNet) and bool(mag.magnet.trained)
    base = first["plain"].clf.state_dict()  # MagNet wraps the plain model's weights
    assert all(torch.equal(base[k], v) for k, v in mag.base.state_dict().items())
    t0 = time.perf_counter()
    again = load_zoo(train, test, folder, quick=True, names=["magnet", "distilled"])
    assert time.perf_counter() - t0 < 5
    assert list(again) == ["magnet", "distilled"]  # the base was loaded, not served
    for name, m in again.items():
        a, b = first[name].clf.state_dict(), m.clf.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="unknown demo model"):
        load_zoo(train, test, folder, names=["nope"])


def test_cli_parser_defaults_to_localhost() -> None:
    from advlab.cli import serve

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--data", "digits"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.data == "digits"
    assert args.run is serve.run and args.defense_gan_checkpoint is None
    args = parser.parse_args(["serve", "--defense-gan-checkpoint", "runs/dg"])
    assert str(args.defense_gan_checkpoint) == "runs/dg"
