"""Document blocks (headings, paragraphs, tables, bullets, images), rendered as Markdown, as one
self-contained HTML page, or as plain text for stdout."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    right: int = 1
    """Columns from this index on are right-aligned."""


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Image:
    file: str
    alt: str


Block = Heading | Para | Table | Bullets | Image


def render_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            lines.append(b.text)
        elif isinstance(b, Table):
            lines.append("| " + " | ".join(_md_escape(c) for c in b.header) + " |")
            lines.append("|" + "|".join(["---"] * b.right + ["---:"] * (len(b.header) - b.right)) + "|")
            lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in b.rows]
        elif isinstance(b, Bullets):
            lines += [f"- {item}" for item in b.items]
        else:
            lines.append(f"![{b.alt}]({b.file})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _inline_html(text: str) -> str:
    """Escape, then the two Markdown marks the summary uses: ``**bold**`` and ``code``."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", out)


HTML_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td.r{text-align:right}img{max-width:100%;border:1px solid #eee}
figure{margin:1.5em 0}figcaption{color:#555;font-size:0.9em}code{background:#f5f5f5;padding:0 3px}"""


def _html_block(b: Block) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>"
    if isinstance(b, Para):
        return f"<p>{_inline_html(b.text)}</p>"
    if isinstance(b, Table):
        head = "".join(f"<th>{_inline_html(c)}</th>" for c in b.header)
        cls = [' class="r"' if i >= b.right else "" for i in range(len(b.header))]
        body = "".join("<tr>" + "".join(f"<td{k}>{_inline_html(c)}</td>" for k, c in zip(cls, row, strict=True))
                       + "</tr>" for row in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>"
    src = html.escape(b.file, quote=True)
    return (f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(b.alt, quote=True)}"></a>'
            f"<figcaption>{_inline_html(b.alt)}</figcaption></figure>")


def render_html(blocks: Sequence[Block], title: str = "evo report") -> str:
    """One page that opens from disk: inline CSS, images by relative path, no external URL."""
    body = "\n".join(_html_block(b) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def render_text_table(t: Table) -> str:
    """A table as aligned plain text (for stdout)."""
    widths = [max(len(r[i]) for r in [t.header, *t.rows]) for i in range(len(t.header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i >= t.right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(t.header), "  ".join("-" * w for w in widths), *(line(r) for r in t.rows)])
