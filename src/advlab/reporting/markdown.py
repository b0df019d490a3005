"""Blocks (``document.py``) -> GitHub-flavoured Markdown."""

from __future__ import annotations

from collections.abc import Sequence

from advlab.reporting.document import Block, Code, Figure, FlagList, Heading, Para, Table


def _text(text: str) -> str:
    """Plain text for Markdown: raw HTML tags are escaped, so a message cannot inject markup."""
    return text.replace("<", "\\<").replace(">", "\\>")


def _cell(text: str) -> str:
    return _text(" ".join(text.split())).replace("|", "\\|") or " "


def _table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in t.headers) + " |"]
    lines.append("|" + "|".join("---" for _ in t.headers) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return lines


def _block(b: Block) -> list[str]:
    if isinstance(b, Heading):
        return ["#" * b.level + " " + _text(b.text)]
    if isinstance(b, Para):
        return [f"**{_text(b.strong)}** {_text(b.text)}" if b.strong else _text(b.text)]
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, FlagList):
        return [
            f"- **{_text(f.code)}** ({_text(f.severity)}): {_text(f.message)} "
            f"([{_text(f.code)}]({f.link}))"
            + (f" — evidence: `{f.evidence}`" if f.evidence else "")
            for f in b.flags
        ]
    if isinstance(b, Figure):
        line = f"![{b.caption}]({b.path})"
        return [line + (f" ([SVG]({b.vector}))" if b.vector else "")]
    if isinstance(b, Code):
        fence = "````" if "```" in b.text else "```"
        return [f"{fence}json", b.text, fence]
    raise TypeError(f"unknown block {type(b).__name__}")


def to_markdown(blocks: Sequence[Block]) -> str:
    """The document as Markdown, one blank line between blocks."""
    return "\n\n".join("\n".join(_block(b)) for b in blocks) + "\n"
