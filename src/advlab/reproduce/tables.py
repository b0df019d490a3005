"""``table.md`` of a reproduction: paper | ours | difference, one Markdown table per paper table."""

from __future__ import annotations

from typing import Any


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "rate":
        return f"{value:.3f}"
    return f"{value:.3g}"


def _diff(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "%":
        return f"{value:+.1f} pt"
    return f"{value:+.3g}"


def render_table(doc: dict[str, Any]) -> str:
    """Markdown for a ``results.json`` document."""
    hw = doc["hardware"]
    where = hw.get("gpu") or f"CPU ({hw.get('cpu_count')} cores, {hw.get('torch_threads')} threads)"
    so_far = " so far" if doc.get("partial") else ""
    lines = [
        f"# {doc['title']}",
        "",
        f"Reproduction `{doc['name']}`{' (quick mode)' if doc['quick'] else ''}: "
        f"{doc['seconds']:.0f} s{so_far} on {where}, seed {doc['seed']}, "
        f"advlab {doc['advlab_version']}.",
        "",
        "Papers: " + "; ".join(doc["papers"]),
        "",
    ]
    if doc.get("partial"):
        lines += [
            f"**In progress**: {len(doc['cells'])} cell(s) finished so far (written "
            f"{doc['created']}); the run has not ended, and its notes come at the end.",
            "",
        ]
    tables: dict[str, list[dict[str, Any]]] = {}
    for cell in doc["cells"]:
        tables.setdefault(cell["table"], []).append(cell)
    for title, cells in tables.items():
        lines += [
            f"## {title}",
            "",
            "| row | column | paper | ours | difference | within tolerance | note |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in cells:
            status = ""
            tol = c["tolerance"]
            if tol is not None and c["status"]:
                band = {"max": f"≤ paper + {tol:g}", "min": f"≥ paper − {tol:g}"}.get(
                    c.get("bound", ""), f"±{tol:g}"
                )
                status = f"yes ({band})" if c["status"] == "ok" else f"**no** ({band})"
            lines.append(
                f"| {c['row']} | {c['column']} | {_fmt(c['paper'], c['unit'])} | "
                f"{_fmt(c['ours'], c['unit'])} | {_diff(c['difference'], c['unit'])} | {status} | "
                f"{c['note']} |"
            )
        lines.append("")
    misses = [c for c in doc["cells"] if c["status"] == "miss"]
    lines.append(
        f"{len(misses)} of {sum(1 for c in doc['cells'] if c['status'])} compared cells are "
        "outside their tolerance."
        + (" Quick mode trains smaller budgets; compare full runs." if doc["quick"] else "")
    )
    if doc["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    if doc["figures"]:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in doc["figures"]]
    return "\n".join(lines) + "\n"
