"""Reporting: render a report's sections as markdown and as one self-contained HTML page.

A report is a list of :class:`Section` (paragraphs, tables, figures), built by
:mod:`benchmark.report.sections`; the two renderers here write the same content, with
every string escaped.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate


@dataclass
class Table:
    headers: list[str]
    rows: list[list]
    caption: str = ""


@dataclass
class Figure:
    path: Path  # a PNG inside the run folder
    caption: str


@dataclass
class Code:
    """Text shown verbatim (a shell command): a fenced block in markdown, ``<pre>`` in HTML, so that what
    is copied from either is exactly ``text`` (a paragraph would be HTML-escaped and read as markdown)."""

    text: str


@dataclass
class Section:
    title: str  # numbered when rendered, in order
    parts: list = field(default_factory=list)  # str (a paragraph), Table, Figure or Code


def _md(value, cell: bool = False) -> str:
    """Text safe in markdown: HTML-escaped (a forge renders raw HTML), ``|`` escaped inside tables."""
    text = html.escape(str(value), quote=False)
    return text.replace("|", "\\|") if cell else text


def to_markdown(sections: list[Section], title: str, base: Path) -> str:
    out = [f"# {_md(title)}"]
    for i, s in enumerate(sections, 1):
        out.append(f"## {i}. {_md(s.title)}")
        for part in s.parts:
            if isinstance(part, Table):
                rows = [[_md(c, cell=True) for c in row] for row in part.rows]
                headers = [_md(h, cell=True) for h in part.headers]
                out.append(
                    (f"{_md(part.caption)}\n\n" if part.caption else "")
                    + tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)
                )
            elif isinstance(part, Figure):
                out.append(f"![{_md(part.caption)}]({part.path.relative_to(base).as_posix()})")
            elif isinstance(part, Code):
                out.append(_fenced(part.text))
            else:
                out.append(_md(part))
    return "\n\n".join(out) + "\n"


def _fenced(text: str) -> str:
    """A fenced code block whose fence is longer than any run of backticks in ``text`` (so none closes it)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:1em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;white-space:nowrap}
th{background:#f3f3f3}td.num{text-align:right}
caption{caption-side:top;text-align:left;font-style:italic;padding:.3em 0}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;white-space:pre-wrap}
nav ul{columns:3;font-size:.9em;padding-left:1.2em}
img{max-width:100%;height:auto}figure{margin:1em 0}figcaption{font-style:italic;font-size:.9em}
@media print{body{max-width:none}h2{page-break-after:avoid}img{page-break-inside:avoid}}
"""


def _cell(value) -> str:
    text = str(value)
    numeric = bool(text) and (text[0].isdigit() or text[0] in "+-") and text != "-"
    if not numeric:
        return f"<td>{html.escape(text)}</td>"
    value, _, interval = text.partition(" [")  # a confidence interval goes on a second, smaller line
    second = f"<br><small>[{html.escape(interval)}</small>" if interval else ""
    return f"<td class='num'>{html.escape(value)}{second}</td>"


def to_html(sections: list[Section], title: str) -> str:
    """One self-contained page: inline CSS, images as base64 PNG, every string escaped."""
    esc = html.escape
    out = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
    ]
    out.append(
        "<nav><ul>"
        + "".join(f"<li><a href='#section-{i}'>{i}. {esc(s.title)}</a></li>" for i, s in enumerate(sections, 1))
        + "</ul></nav>"
    )
    for i, s in enumerate(sections, 1):
        out.append(f"<section id='section-{i}'><h2>{i}. {esc(s.title)}</h2>")
        for part in s.parts:
            if isinstance(part, Table):
                head = "".join(f"<th>{esc(str(h))}</th>" for h in part.headers)
                body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in part.rows)
                caption = f"<caption>{esc(part.caption)}</caption>" if part.caption else ""
                out.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(part, Figure):
                data = base64.b64encode(part.path.read_bytes()).decode("ascii")
                out.append(
                    f"<figure><img alt='{esc(part.caption, quote=True)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{esc(part.caption)}</figcaption></figure>"
                )
            elif isinstance(part, Code):
                out.append(f"<pre><code>{esc(part.text)}</code></pre>")
            else:
                out.append(f"<p>{esc(str(part))}</p>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
