"""Text formatting shared by the figures, the Markdown/HTML document and the CSV."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Report = Mapping[str, Any]  # a robustness report as a JSON dict (docs/report-format.md)

DASH = "—"  # shown for missing / null values
NORM_NAMES = {"linf": "Linf", "l2": "L2", "l1": "L1", "l0": "L0"}


def norm_name(norm: object) -> str:
    """``"linf"`` -> ``"Linf"``; unknown names pass through."""
    return NORM_NAMES.get(str(norm), str(norm))


def size_unit(norm: object) -> str:
    """Unit of a perturbation size / eps in ``norm``: pixel units, or changed features for L0."""
    return "changed features" if norm == "l0" else "pixel units"


def eps_axis_label(norm: object) -> str:
    """``"eps (Linf, pixel units)"``."""
    return f"eps ({norm_name(norm)}, {size_unit(norm)})"


def pct(x: object, digits: int = 2) -> str:
    """Fraction -> ``"95.00%"``; ``None`` -> a dash."""
    return f"{100.0 * float(x):.{digits}f}%" if isinstance(x, int | float) else DASH


def ci(interval: object) -> str:
    """``[0.935, 0.962]`` -> ``"[93.50, 96.20]"`` (percent); anything else -> empty string."""
    if isinstance(interval, Sequence) and len(interval) == 2 and not isinstance(interval, str):
        lo, hi = interval
        if isinstance(lo, int | float) and isinstance(hi, int | float):
            return f"[{100.0 * lo:.2f}, {100.0 * hi:.2f}]"
    return ""


def num(x: object, digits: int = 4) -> str:
    """A number in ``digits`` significant figures (ints as they are); ``None`` -> a dash."""
    if isinstance(x, bool) or x is None:
        return DASH if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def accuracy_cell(entry: object) -> str:
    """``{"accuracy": .95, "ci": [...]}`` -> ``"95.00% [93.50, 96.20]"``."""
    if not isinstance(entry, Mapping):
        return DASH
    text = pct(entry.get("accuracy"))
    interval = ci(entry.get("ci"))
    return f"{text} {interval}" if interval else text


def class_name(report: Report, k: object) -> str:
    """Class index -> its name from ``data.class_names`` when there is one, else the index."""
    names = (report.get("data") or {}).get("class_names") or []
    if isinstance(k, int) and 0 <= k < len(names):
        return str(names[k])
    return DASH if k is None else str(k)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped (except ``-``
    and ``_``), spaces -> ``-``. ``"single-step-beats-iterative"`` stays as it is."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def items(x: object) -> list[Any]:
    """``x`` as a list: ``None`` / missing -> ``[]``."""
    return list(x) if isinstance(x, Sequence) and not isinstance(x, str) else []


def table(x: object) -> Mapping[str, Any]:
    """``x`` as a mapping: ``None`` / missing -> ``{}``."""
    return x if isinstance(x, Mapping) else {}
