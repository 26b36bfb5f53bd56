"""Render a report, given as a list of blocks, to Markdown and to a self-contained HTML page.

Blocks: ("h1"|"h2"|"h3", text), ("p", text), ("list", [text, ...]), ("table", DataFrame, fmt),
("figure", file name, png bytes, caption). Text may hold `code` spans. In HTML, figures are
embedded as base64 data URIs, so the page opens offline and refers to nothing outside itself.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

import pandas as pd

Block = tuple[Any, ...]

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
figure { margin: 1em 0; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _cell(value: Any, fmt: str) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else fmt.format(value)
    return str(value)


def _rows(frame: pd.DataFrame, fmt: str) -> tuple[list[str], list[list[str]]]:
    header = [frame.index.name or ""] + [str(c) for c in frame.columns]
    body = [[str(i)] + [_cell(v, fmt) for v in row] for i, row in frame.iterrows()]
    return header, body


def markdown_table(frame: pd.DataFrame, fmt: str = "{:.3f}") -> str:
    header, body = _rows(frame, fmt)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def html_table(frame: pd.DataFrame, fmt: str = "{:.3f}") -> str:
    header, body = _rows(frame, fmt)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def anchor(title: str) -> str:
    """A heading's anchor: lowercase, punctuation dropped, spaces to hyphens (GitHub's rule, so
    `[text](#anchor)` links work in report.md as in report.html)."""
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def _inline(text: str) -> str:
    """Escaped text with `code` spans and in-page links [text](#anchor)."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))
    return re.sub(r"\[([^\]]+)\]\(#([\w-]+)\)", r'<a href="#\2">\1</a>', out)


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + args[0])
        elif kind == "p":
            out.append(args[0])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in args[0]))
        elif kind == "table":
            out.append(markdown_table(*args))
        elif kind == "figure":
            name, _, caption = args
            out.append(f"![{caption}]({name})")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[Block], title: str) -> str:
    out = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f'<{kind} id="{anchor(args[0])}">{_inline(args[0])}</{kind}>')
        elif kind == "p":
            out.append(f"<p>{_inline(args[0])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in args[0]) + "</ul>")
        elif kind == "table":
            out.append(html_table(*args))
        elif kind == "figure":
            name, png, caption = args
            data = base64.b64encode(png).decode("ascii")
            out.append(
                f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline(caption)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(out)
        + "\n</body></html>\n"
    )
