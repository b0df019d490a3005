"""Rendering robustness reports (Markdown, HTML, figures, CSV) from the JSON dict alone."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from _report_data import N, make_report
from advlab.cli.main import main
from advlab.reporting import load_report, plot_transfer_matrix, render
from advlab.reporting.samples import COLUMNS

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ("accuracy_vs_eps", "examples", "perturbation_sizes", "confusion", "transfer")


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Path]]:
    report = make_report()
    return report, render(report, tmp_path_factory.mktemp("full"))


def test_render_writes_every_file(full: tuple[dict[str, Any], dict[str, Path]]) -> None:
    _, written = full
    expected = {"report.md", "report.html", "samples.csv", "figures/accuracy_vs_eps.svg"}
    expected |= {f"figures/{f}.png" for f in FIGURES}
    assert set(written) == expected
    for name, path in written.items():
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes().startswith(PNG)
    assert b"<svg" in written["figures/accuracy_vs_eps.svg"].read_bytes()


def test_html_is_self_contained(full: tuple[dict[str, Any], dict[str, Path]]) -> None:
    html = full[1]["report.html"].read_text()
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "&lt;script&gt;" in html  # the flag message is escaped
    assert "<link" not in html and "<style>" in html
    images = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert len(images) == len(FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert 'class="flag flag-warning"' in html and 'class="flag flag-error"' in html


def test_markdown_has_numbers_flags_and_figures(
    full: tuple[dict[str, Any], dict[str, Path]],
) -> None:
    report, written = full
    md = written["report.md"].read_text()
    assert md.startswith("# Robustness report: tiny-mlp on synthetic/test, suite standard, Linf")
    assert "91.67% [64.61, 98.51] (11/12)" in md  # clean accuracy with its Wilson interval
    robust = report["per_eps"][-1]["robust"]
    assert f"| 0.3 | {100 * robust['accuracy']:.2f}% [" in md  # summary row at the largest eps
    assert "| 0.3 | apgd-ce | 11 | 4 | 36.36% | 21 | 20 | 0.5 |" in md  # per-attack details
    link = "(docs/flags.md#single-step-beats-iterative)"
    assert "- **single-step-beats-iterative** (warning): FGSM accuracy 0.41" in md and link in md
    assert "## Gradient-masking audit" in md and "| pgd-20 | 62.00% |" in md
    assert "| source \\ target | c | d |" in md and "| b | 80.00% | — |" in md
    for name in FIGURES:
        assert f"](figures/{name}.png)" in md
    assert md.index("## Configuration") < md.index("## Environment")
    assert "\\<script\\>" in md and "<script>" not in md


def test_samples_csv(full: tuple[dict[str, Any], dict[str, Path]]) -> None:
    report, written = full
    with written["samples.csv"].open(newline="") as fh:
        rows = list(csv.reader(fh))
    header = "index,label,clean_pred,clean_confidence,eps,adv_pred,adv_confidence,broken_by"
    assert rows[0] == [*header.split(","), "linf", "l2", "l1", "l0"] == list(COLUMNS)
    assert len(rows) - 1 == N * len(report["eps"])
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["index"] == "0" and first["eps"] == "0.1" and first["broken_by"] == "apgd-ce"
    last = dict(zip(rows[0], rows[-1], strict=True))
    assert last["index"] == str(N - 1) and last["broken_by"] == "clean"


def test_minimal_report_renders(tmp_path: Path) -> None:
    """Min-norm-only suite, one eps, nothing broken, no examples/transfer/curves/flags/audit."""
    report = make_report(minimal=True)
    written = render(report, tmp_path)
    assert {"report.md", "report.html", "samples.csv", "figures/accuracy_vs_eps.png"} <= set(
        written
    )
    for absent in ("examples", "perturbation_sizes", "transfer"):
        assert f"figures/{absent}.png" not in written
    md = written["report.md"].read_text()
    assert "No flags raised." in md and "## Transfer" not in md and "## Gradient-masking" not in md
    assert len(written["samples.csv"].read_text().splitlines()) == 1 + N


def test_bare_report_renders(tmp_path: Path) -> None:
    """Optional parts missing altogether or null; a re-render removes stale figures."""
    render(make_report(), tmp_path)
    report = make_report(minimal=True)
    for key in ("curves", "flags", "audit", "transfer", "examples", "samples"):
        report.pop(key)
    report["per_eps"][0]["confusion"] = None
    written = render(report, tmp_path)
    assert set(written) == {
        "report.md",
        "report.html",
        "samples.csv",
        "figures/accuracy_vs_eps.png",
        "figures/accuracy_vs_eps.svg",
    }
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "accuracy_vs_eps.png",
        "accuracy_vs_eps.svg",
    ]
    assert written["samples.csv"].read_text() == ",".join(COLUMNS) + "\n"


def test_render_accepts_an_object_with_to_dict(tmp_path: Path) -> None:
    class Report:
        def to_dict(self) -> dict[str, Any]:
            return make_report(minimal=True)

    assert render(Report(), tmp_path)["report.md"].is_file()
    with pytest.raises(TypeError, match="to_dict"):
        render(42, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version 2"),
        ({"schema_version": None}, "schema_version None"),
        ({"kind": "advlab-eval"}, "kind 'advlab-eval'"),
    ],
)
def test_load_report_rejects_unknown_formats(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    (tmp_path / "report.json").write_text(json.dumps(make_report(minimal=True) | change))
    with pytest.raises(ValueError, match=message) as info:
        load_report(tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=message):
        render(make_report(minimal=True) | change, tmp_path)


def test_load_report_rejects_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_report(tmp_path / "report.json")
    (tmp_path / "report.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        load_report(tmp_path)


def test_round_trip_json_load_render(tmp_path: Path) -> None:
    report = make_report()
    (tmp_path / "report.json").write_text(json.dumps(report))
    loaded = load_report(tmp_path / "report.json")
    assert loaded == report
    written = render(loaded, tmp_path / "out")
    assert "figures/transfer.png" in written


def test_plot_transfer_matrix_on_its_own(tmp_path: Path) -> None:
    path = plot_transfer_matrix(["a", "b", "c"], ["d"], [[0.5], [0.25], [None]], tmp_path / "t.png")
    assert path.read_bytes().startswith(PNG)
    with pytest.raises(ValueError, match="sources x targets"):
        plot_transfer_matrix(["a"], ["b", "c"], [[0.5]], tmp_path / "bad.png")


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps(make_report(minimal=True)))
    assert main(["-q", "report", str(run), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "out" / "report.html") in out.splitlines()
    assert (tmp_path / "out" / "report.md").is_file() and not (run / "report.md").exists()
    assert main(["-q", "report", str(run)]) == 0  # default: render beside report.json
    assert (run / "report.html").is_file() and (run / "figures" / "accuracy_vs_eps.png").is_file()

    capsys.readouterr()
    assert main(["-q", "report", str(tmp_path / "out")]) == 2  # a folder without report.json
    err = capsys.readouterr().err
    assert err.startswith("advlab report: error: no report found") and err.count("\n") == 1
