"""The report's content as a list of blocks, written out by ``markdown.py`` and ``html.py``.

Keeping the content here (and only the syntax there) means the Markdown and the HTML say the
same thing. Every string is plain text; the writers escape it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from advlab.reporting.fmt import (
    DASH,
    Report,
    accuracy_cell,
    github_anchor,
    items,
    norm_name,
    num,
    pct,
    size_unit,
    table,
)

FLAGS_DOC = "docs/flags.md"  # each flag code is a heading there


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str
    strong: str = ""  # bold lead-in, e.g. "Clean accuracy:"


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Flag:
    code: str
    severity: str
    message: str
    link: str  # FLAGS_DOC + "#" + GitHub anchor of the code
    evidence: str = ""  # compact JSON, or ""


@dataclass(frozen=True)
class FlagList:
    flags: list[Flag] = field(default_factory=list)


@dataclass(frozen=True)
class Figure:
    caption: str
    path: str  # PNG, relative to the report folder (posix)
    vector: str = ""  # SVG beside it, or ""


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Para | Table | FlagList | Figure | Code


def _attack_names(report: Report) -> list[str]:
    """Attacks named in ``per_eps``, in order of first appearance (the suite order)."""
    names: list[str] = []
    for entry in items(report.get("per_eps")):
        for a in items(entry.get("attacks")):
            if str(a.get("attack")) not in names:
                names.append(str(a.get("attack")))
    return names


def _header(report: Report) -> list[Block]:
    model, data, suite = (table(report.get(k)) for k in ("model", "data", "suite"))
    norm = report.get("norm")
    dataset = str(data.get("name") or "?") + (f"/{data['split']}" if data.get("split") else "")
    title = (
        f"Robustness report: {model.get('name') or '?'} on {dataset}, "
        f"suite {suite.get('name') or '?'}, {norm_name(norm)}"
    )
    eps = ", ".join(num(e) for e in items(report.get("eps"))) or DASH
    mode = "cascade" if suite.get("cascade") else "each attack on all samples"
    clean = table(report.get("clean"))
    return [
        Heading(1, title),
        Para(
            f"{data.get('n', DASH)} samples; threat model {norm_name(norm)} with eps {eps} "
            f"({size_unit(norm)}); suite {suite.get('name', '?')} ({mode}); "
            f"created {report.get('created', DASH)}."
        ),
        Para(
            f"{accuracy_cell(clean)} ({clean.get('correct', DASH)}/{clean.get('n', DASH)}); "
            f"mean confidence {num(clean.get('mean_confidence'), 3)}.",
            strong="Clean accuracy:",
        ),
    ]


def _summary(report: Report) -> list[Block]:
    norm = str(report.get("norm"))
    names = _attack_names(report)
    headers = [
        "eps",
        "robust accuracy [95% CI]",
        *names,
        "mean confidence (adversarial)",
        f"median perturbation ({norm_name(norm)})",
    ]
    rows = []
    for entry in items(report.get("per_eps")):
        by_name = {str(a.get("attack")): a for a in items(entry.get("attacks"))}
        median = table(table(entry.get("perturbation")).get(norm)).get("median")
        rows.append(
            [
                num(entry.get("eps")),
                accuracy_cell(entry.get("robust")),
                *(pct(table(by_name.get(n)).get("accuracy")) for n in names),
                num(entry.get("mean_confidence_adv"), 3),
                num(median),
            ]
        )
    cascade = table(report.get("suite")).get("cascade")
    note = (
        "Attack columns: accuracy after that attack and every earlier one (cascade)."
        if cascade
        else "Attack columns: accuracy under that attack alone."
    )
    if not rows:
        return [Heading(2, "Summary"), Para("No eps was evaluated.")]
    return [Heading(2, "Summary"), Table(headers, rows), Para(note)]


def _attacks(report: Report) -> list[Block]:
    headers = [
        "eps",
        "attack",
        "attacked",
        "broken",
        "success rate",
        "queries / sample",
        "gradients / sample",
        "seconds",
    ]
    rows = [
        [
            num(entry.get("eps")),
            str(a.get("attack", DASH)),
            num(a.get("attacked")),
            num(a.get("broken")),
            pct(a.get("success_rate")),
            num(a.get("queries_mean")),
            num(a.get("gradients_mean")),
            num(a.get("seconds"), 3),
        ]
        for entry in items(report.get("per_eps"))
        for a in items(entry.get("attacks"))
    ]
    return [Heading(2, "Attacks"), Table(headers, rows)] if rows else []


def _flags(report: Report) -> list[Block]:
    flags = [
        Flag(
            code=str(f.get("code", "?")),
            severity=str(f.get("severity", "info")),
            message=str(f.get("message", "")),
            link=f"{FLAGS_DOC}#{github_anchor(str(f.get('code', '')))}",
            evidence=json.dumps(f["evidence"], sort_keys=True) if f.get("evidence") else "",
        )
        for f in items(report.get("flags"))
    ]
    body: Block = FlagList(flags) if flags else Para("No flags raised.")
    return [Heading(2, "Flags"), body]


def _audit(report: Report) -> list[Block]:
    audit = table(report.get("audit"))
    probes = table(audit.get("probes"))
    if not probes:
        return []
    rows = [[str(k), pct(v) if isinstance(v, int | float) else str(v)] for k, v in probes.items()]
    return [
        Heading(2, "Gradient-masking audit"),
        Para(f"Accuracy under single probe attacks on {audit.get('n', DASH)} samples."),
        Table(["probe", "accuracy"], rows),
    ]


def _transfer(report: Report) -> list[Block]:
    t = table(report.get("transfer"))
    sources, targets = items(t.get("sources")), items(t.get("targets"))
    if not sources or not targets:
        return []
    acc = items(t.get("accuracy"))
    rows = [
        [str(s), *(pct(v) for v in (items(acc[i]) if i < len(acc) else []))]
        for i, s in enumerate(sources)
    ]
    return [
        Heading(2, "Transfer"),
        Para(
            f"Accuracy of each target model (columns) on adversarial examples crafted on each "
            f"source model (rows) with {t.get('attack', '?')} at eps {num(t.get('eps'))}, "
            f"{t.get('n', DASH)} samples."
        ),
        Table(["source \\ target", *map(str, targets)], rows),
    ]


def _figures(figures: Mapping[str, str], captions: Mapping[str, str]) -> list[Block]:
    """``figures``: file name -> path relative to the report folder."""
    blocks: list[Block] = []
    for name, rel in figures.items():
        stem = name.rsplit(".", 1)[0]
        if name.endswith(".png"):
            vector = figures.get(f"{stem}.svg", "")
            blocks.append(Figure(captions.get(stem, stem), rel, vector))
    return [Heading(2, "Figures"), *blocks] if blocks else []


def _config(report: Report) -> list[Block]:
    attacks = items(table(report.get("suite")).get("attacks"))
    rows = [
        [str(a.get("name")), str(a.get("kind", DASH)), json.dumps(a.get("config"), sort_keys=True)]
        for a in attacks
    ]
    model = table(report.get("model"))
    env: dict[str, Any] = dict(table(report.get("environment")))
    env |= {
        "model checkpoint": model.get("checkpoint"),
        "model bounds": model.get("bounds"),
        "input shape": model.get("input_shape"),
        "total seconds": table(report.get("timing")).get("seconds"),
        "schema_version": report.get("schema_version"),
    }
    blocks: list[Block] = [Heading(2, "Configuration")]
    if rows:
        blocks.append(Table(["attack", "kind", "config"], rows))
    blocks.append(Code(json.dumps(report.get("config") or {}, indent=2, sort_keys=True)))
    env_rows = [[str(k), DASH if v is None else str(v)] for k, v in env.items()]
    return [*blocks, Heading(2, "Environment"), Table(["key", "value"], env_rows)]


def build_document(
    report: Report, figures: Mapping[str, str], captions: Mapping[str, str]
) -> list[Block]:
    """The whole report as blocks. ``figures``: file name -> relative path of written figures;
    ``captions``: figure stem -> caption."""
    return [
        *_header(report),
        *_summary(report),
        *_attacks(report),
        *_flags(report),
        *_audit(report),
        *_transfer(report),
        *_figures(figures, captions),
        *_config(report),
    ]
