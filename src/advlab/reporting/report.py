"""Load a saved robustness report and render it: Markdown, HTML, figures, per-sample CSV.

Everything here is a pure function of the report dict (docs/report-format.md), so a report
can be re-rendered without re-running any attack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advlab.reporting.document import build_document
from advlab.reporting.figures import CAPTIONS, write_figures
from advlab.reporting.html import to_html
from advlab.reporting.markdown import to_markdown
from advlab.reporting.samples import samples_csv
from advlab.utils.files import atomic_write_text

KIND = "advlab-robustness-report"
SCHEMA_VERSIONS = (1,)  # the versions this reader understands
REPORT_FILE = "report.json"


def check_report(report: object, source: str = "report") -> dict[str, Any]:
    """Return ``report`` as a dict after checking it is a robustness report of a known
    ``schema_version``; raise ``ValueError`` (one line, naming ``source``) if not."""
    if not isinstance(report, Mapping):
        raise ValueError(f"{source} is not a JSON object (got {type(report).__name__})")
    if report.get("kind") != KIND:
        raise ValueError(f"{source} has kind {report.get('kind')!r}; expected {KIND!r}")
    version = report.get("schema_version")
    if version not in SCHEMA_VERSIONS:
        known = ", ".join(map(str, SCHEMA_VERSIONS))
        raise ValueError(
            f"{source} has schema_version {version!r}; this advlab reads version(s) {known}"
        )
    return dict(report)


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``report.json`` (the file, or a folder holding it) and check its ``kind`` and
    ``schema_version``. A missing file or invalid JSON raises ``ValueError`` too."""
    file = Path(path)
    if file.is_dir():
        file = file / REPORT_FILE
    if not file.is_file():
        raise ValueError(f"no report found: {file} does not exist")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{file} is not valid JSON: {e.msg} at line {e.lineno}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {file}: {e}") from None
    return check_report(data, str(file))


def _as_dict(report: object) -> dict[str, Any]:
    to_dict = getattr(report, "to_dict", None)
    if not isinstance(report, Mapping) and callable(to_dict):
        report = to_dict()
    if not isinstance(report, Mapping):
        raise TypeError(
            f"render expects a report dict or an object with to_dict(); got {type(report).__name__}"
        )
    return check_report(report)


def render(report: object, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` (self-contained), ``samples.csv`` and
    ``figures/*.png`` (plus ``figures/accuracy_vs_eps.svg``) into ``out_dir``.

    ``report``: the report dict, or an object with ``to_dict()`` returning it. Returns the
    written files, keyed by their path relative to ``out_dir`` (``"figures/confusion.png"``).
    Files are written atomically; parts the report lacks (examples, transfer, ...) are left out.
    """
    data = _as_dict(report)
    out = Path(out_dir)
    figures = {f"figures/{name}": p for name, p in write_figures(data, out / "figures").items()}
    blocks = build_document(data, {Path(k).name: k for k in figures}, CAPTIONS)
    images = {k: p.read_bytes() for k, p in figures.items() if k.endswith(".png")}
    written = {
        "report.md": atomic_write_text(out / "report.md", to_markdown(blocks)),
        "report.html": atomic_write_text(out / "report.html", to_html(blocks, images)),
        "samples.csv": atomic_write_text(out / "samples.csv", samples_csv(data)),
    }
    return written | figures
