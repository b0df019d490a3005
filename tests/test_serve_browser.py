"""The web demo's page in a real browser: uvicorn in a thread on a free port, Chromium driven by
Playwright. Skipped (with the reason) only when the ``playwright`` package or Chromium is not
installed; CI installs both (``pip install playwright``, ``apt-get install chromium``)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from advlab.data import TensorData
from advlab.models import Classifier

CHROMIUM = os.environ.get("ADVLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
pytest.importorskip("fastapi", reason="advlab[serve] (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="advlab[serve] (uvicorn) is not installed")
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set ADVLAB_CHROMIUM)",
        allow_module_level=True,
    )

import uvicorn  # noqa: E402

from advlab.serve.app import create_app  # noqa: E402
from advlab.serve.curves import CurveConfig  # noqa: E402
from advlab.serve.models import DemoModel, load_zoo  # noqa: E402


@pytest.fixture(scope="module")
def server(
    digits_model: tuple[Classifier, TensorData], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from advlab import data

    clf, test = digits_model
    train = data.load("digits", "train")
    magnet = load_zoo(train, test, tmp_path_factory.mktemp("zoo"), names=["magnet"], quick=True)
    zoo = {
        "plain": DemoModel("plain", "Plain LeNet", "digits LeNet", clf, "digits", eps_max=0.5),
        "magnet": magnet["magnet"],
    }
    app = create_app(
        zoo, test, curve=CurveConfig(n=40, eps_step=0.25, pgd_steps=3, adaptive_steps=3)
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port, held by us until uvicorn takes the socket
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.errors = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
        page.on(
            "response",
            lambda r: (
                page.errors.append(f"{r.status} {r.url}")  # type: ignore[attr-defined]
                if r.status >= 400
                else None
            ),
        )
        page.goto(server)
        yield page
        browser.close()


def set_range(page: Any, selector: str, value: float) -> None:
    page.eval_on_selector(
        selector,
        "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input')); }",
        value,
    )


def canvas_ink(page: Any, selector: str) -> float:
    """Mean brightness of a canvas, in [0, 1]."""
    return float(
        page.eval_on_selector(
            selector,
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i];
                      return s / (255 * d.length / 4); }""",
        )
    )


def test_page_loads_lists_and_curve(page: Any) -> None:
    page.wait_for_selector("#samples canvas >> nth=19")
    assert page.locator("#samples canvas").count() == 20
    page.wait_for_selector(
        "#model option", state="attached"
    )  # models and samples load independently
    assert page.locator("#model option").count() == 2
    assert page.is_hidden("#defense-box")  # the plain model has no defense
    assert "fgsm" in page.locator("#attack option").evaluate_all("os => os.map(o => o.value)")
    page.wait_for_selector("#curve polyline")  # the accuracy-vs-eps curve came
    assert page.locator("#curve polyline").count() == 3
    assert "digits" in page.inner_text("#subtitle")


def test_click_a_digit_and_fool_the_model_with_fgsm(page: Any, tmp_path: Path) -> None:
    page.wait_for_selector("#samples canvas >> nth=19")
    page.locator("#samples canvas").nth(3).click()
    assert "test image" in page.inner_text("#input-note")
    page.select_option("#attack", "fgsm")
    assert page.is_disabled("#steps")
    set_range(page, "#eps", 0.5)
    assert page.inner_text("#eps-value") == "0.50"
    page.click("#attack-btn")
    page.wait_for_function("!document.getElementById('result').classList.contains('empty')")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')")
    before, after = page.inner_text("#pred-before"), page.inner_text("#pred-after")
    assert before.split()[0] != after.split()[0], (before, after)
    assert "changed" in (page.get_attribute("#pred-after", "class") or "")
    assert canvas_ink(page, "#img-adv") > 0.05  # the adversarial image is drawn
    assert page.locator("#bars-after .bar").count() == 3
    assert "fooled" in page.inner_text("#stats")
    page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
    assert page.errors == []  # type: ignore[attr-defined]


def test_draw_a_digit_and_attack_it_with_pgd(page: Any) -> None:
    page.click("#clear")
    box = page.locator("#draw").bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + 140, y0 + 40)
    page.mouse.down()
    for t in range(1, 21):  # a vertical stroke: a "1"
        page.mouse.move(x0 + 140, y0 + 40 + 10 * t)
    page.mouse.up()
    assert "your drawing" in page.inner_text("#input-note")
    page.select_option("#attack", "pgd")
    assert not page.is_disabled("#steps")
    set_range(page, "#steps", 10)
    set_range(page, "#eps", 0.5)
    page.click("#attack-btn")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')")
    assert canvas_ink(page, "#img-x") > 0.02  # the drawing, as the model saw it
    assert "pgd on plain" in page.inner_text("#stats")
    assert page.errors == []  # type: ignore[attr-defined]


def test_server_errors_are_shown(page: Any) -> None:
    page.select_option("#attack", "pgd")
    page.eval_on_selector("#steps", "el => { el.max = '100000'; el.value = '100000'; }")
    page.click("#attack-btn")
    page.wait_for_function("document.getElementById('status').classList.contains('error')")
    assert "steps" in page.inner_text("#status")


def test_magnet_result_shows_the_detector_verdict(page: Any) -> None:
    page.errors.clear()  # type: ignore[attr-defined]  # the previous test's 422 was on purpose
    page.select_option("#model", "magnet")
    assert page.is_visible("#defense-box") and "Naive" in page.inner_text("#view-desc")
    assert "detector" in page.inner_text("#model-desc")
    page.wait_for_function("document.getElementById('curve-desc').textContent.includes('rejected')")
    page.locator("#samples canvas").nth(3).click()
    page.select_option("#attack", "fgsm")
    set_range(page, "#eps", 0.5)
    page.click("#attack-btn")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')")
    assert page.is_visible("#detector")
    verdict = page.inner_text("#detector")
    assert verdict.startswith(("Rejected by the detector", "Accepted by the detector")), verdict
    if verdict.startswith("Rejected"):
        assert "rejected" in page.inner_text("#pred-after") and "caught" in page.inner_text(
            "#stats"
        )
    assert "fgsm on magnet (naive" in page.inner_text("#stats")
    page.check("#adaptive")
    assert "Adaptive" in page.inner_text("#view-desc")
    page.select_option("#model", "plain")
    assert page.is_hidden("#defense-box")
    assert page.errors == []  # type: ignore[attr-defined]
