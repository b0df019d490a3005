"""Blocks (``document.py``) -> one self-contained HTML page: CSS inline, figures embedded as
base64 PNG, no scripts and no external URLs. Every string goes through ``html.escape``."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape

from advlab.reporting.document import Block, Code, Figure, FlagList, Heading, Para, Table

CSS = """
body { font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; padding: 0 1rem;
       color: #111; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #eee; } tr:nth-child(even) td { background: #f8f8f8; }
ul.flags { list-style: none; padding: 0; }
li.flag { margin: 0.4rem 0; padding: 0.4rem 0.7rem; border-left: 0.4rem solid; }
li.flag-info { background: #e8f1fb; border-color: #3b73b9; border-left-style: dotted; }
li.flag-warning { background: #fff4d6; border-color: #b7800b; border-left-style: dashed; }
li.flag-error { background: #fde4e4; border-color: #b32020; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9rem; color: #444; }
pre { background: #f4f4f4; padding: 0.7rem; overflow-x: auto; font-size: 0.85rem; }
code { font-size: 0.85rem; }
"""


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in t.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _flags(b: FlagList) -> str:
    lis = []
    for f in b.flags:
        severity = f.severity if f.severity in ("info", "warning", "error") else "info"
        evidence = f" <code>{escape(f.evidence)}</code>" if f.evidence else ""
        lis.append(
            f'<li class="flag flag-{severity}"><strong>{escape(f.code)}</strong> '
            f"({escape(f.severity)}): {escape(f.message)} "
            f'<a href="{escape(f.link)}">{escape(f.code)}</a>{evidence}</li>'
        )
    return '<ul class="flags">' + "".join(lis) + "</ul>"


def _figure(b: Figure, images: Mapping[str, bytes]) -> str:
    data = images.get(b.path)
    if data is None:  # not embedded: say so rather than link outside the page
        return f"<p>[figure {escape(b.caption)}: {escape(b.path)}]</p>"
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img alt="{escape(b.caption)}" src="{src}">'
        f"<figcaption>{escape(b.caption)}</figcaption></figure>"
    )


def _block(b: Block, images: Mapping[str, bytes]) -> str:
    if isinstance(b, Heading):
        level = min(max(b.level, 1), 6)
        return f"<h{level}>{escape(b.text)}</h{level}>"
    if isinstance(b, Para):
        strong = f"<strong>{escape(b.strong)}</strong> " if b.strong else ""
        return f"<p>{strong}{escape(b.text)}</p>"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, FlagList):
        return _flags(b)
    if isinstance(b, Figure):
        return _figure(b, images)
    if isinstance(b, Code):
        return f"<pre><code>{escape(b.text)}</code></pre>"
    raise TypeError(f"unknown block {type(b).__name__}")


def to_html(blocks: Sequence[Block], images: Mapping[str, bytes]) -> str:
    """The document as one HTML page. ``images``: figure path (as in ``Figure.path``) -> PNG
    bytes to embed; the page title is the first heading."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "advlab report")
    body = "\n".join(_block(b, images) for b in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
