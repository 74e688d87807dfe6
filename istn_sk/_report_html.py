"""The markup of :mod:`istn_sk.report`: one self-contained HTML page, escaped text, inline CSS.

Nothing here reads files or fits models; every function turns plain values
(mappings, tables, PNG bytes) into HTML strings. Images are embedded as
base64 ``data:`` URIs, so the page needs no other file, no network and no
JavaScript.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

#: The page's style sheet (inline, so the report is one file).
CSS = """
:root { --ink: #1f2933; --muted: #52606d; --line: #d9e2ec; --band: #f5f7fa; --accent: #2b6cb0; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
header { padding: 1.4rem 2rem 1rem; border-bottom: 3px solid var(--accent);
         background: var(--band); }
header h1 { margin: 0 0 .2rem; font-size: 1.6rem; }
header p { margin: 0; color: var(--muted); }
nav { padding: .5rem 2rem; border-bottom: 1px solid var(--line); font-size: .9rem; }
nav a { color: var(--accent); margin-right: 1.1rem; text-decoration: none; }
main { padding: 0 2rem 2rem; max-width: 76rem; }
section { margin-top: 1.8rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: 1.02rem; margin: 1.1rem 0 .4rem; }
p.note { color: var(--muted); margin: .3rem 0 .8rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid var(--line); padding: .28rem .6rem; text-align: left;
         vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.settings td:first-child { font-family: ui-monospace, Menlo, Consolas, monospace;
                                white-space: nowrap; }
table.settings td:last-child { font-family: ui-monospace, Menlo, Consolas, monospace;
                               overflow-wrap: break-word; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
div.columns { display: flex; flex-wrap: wrap; gap: 0 1.6rem; align-items: flex-start; }
div.columns table { flex: 0 1 auto; }
figure { margin: .6rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .88rem; margin-top: .3rem; max-width: 60rem; }
details summary { cursor: pointer; color: var(--accent); margin: .3rem 0; }
footer { padding: 1rem 2rem; color: var(--muted); font-size: .8rem;
         border-top: 1px solid var(--line); }
"""


@dataclass
class Section:
    """One part of the page: an anchor ``key``, its heading and its (HTML) body."""

    key: str
    heading: str
    body: str


def text(value: Any) -> str:
    """``value`` as escaped text (quotes too, so it is safe inside attributes)."""
    return escape(str(value), quote=True)


def note(message: str) -> str:
    """A muted paragraph."""
    return f'<p class="note">{text(message)}</p>'


def _cell(value: Any) -> str:
    """A settings value: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def mapping_table(values: Mapping[str, Any], *, css: str = "settings",
                  headers: tuple[str, str] = ("setting", "value")) -> str:
    """A two-column table of ``values``' keys and values."""
    rows = "".join(f"<tr><td>{text(key)}</td><td>{text(_cell(value))}</td></tr>"
                   for key, value in values.items())
    head = "".join(f"<th>{text(name)}</th>" for name in headers)
    return f'<table class="{text(css)}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def mapping_tables(values: Mapping[str, Any], *, short: int = 18) -> str:
    """:func:`mapping_table`, or two side-by-side halves when longer than ``short`` rows
    (read top to bottom, left to right)."""
    items = list(values.items())
    size = len(items) if len(items) <= short else -(-len(items) // 2)
    tables = "".join(mapping_table(dict(items[start:start + size]))
                     for start in range(0, len(items), size or 1))
    return f'<div class="columns">{tables}</div>'


def frame_table(frame, *, digits: int = 4) -> str:
    """A :class:`pandas.DataFrame` as an escaped table; numbers right-aligned, NaN empty."""
    import numpy as np

    head = "".join(f"<th>{text(column)}</th>" for column in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for value in record:
            if isinstance(value, (bool, np.bool_)):
                cells.append(f"<td>{text(value)}</td>")
            elif isinstance(value, (int, float, np.integer, np.floating)):
                shown = "" if np.isnan(float(value)) else f"{value:.{digits}g}"
                cells.append(f'<td class="num">{text(shown)}</td>')
            else:
                shown = "" if value is None or value != value else value   # NaN != NaN
                cells.append(f"<td>{text(shown)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="data"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def figure_png(figure, *, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def image(png: bytes, caption: str, *, alt: str) -> str:
    """A ``<figure>`` holding ``png`` as a ``data:`` URI, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{text(alt)}">'
            f"<figcaption>{text(caption)}</figcaption></figure>")


def collapsible(summary: str, body: str, *, open_: bool = False) -> str:
    """A ``<details>`` block (opens without JavaScript)."""
    return (f"<details{' open' if open_ else ''}><summary>{text(summary)}</summary>"
            f"{body}</details>")


def page(title: str, subtitle: str, sections: Iterable[Section], footer: str) -> str:
    """The whole document."""
    sections = list(sections)
    links = "".join(f'<a href="#{text(s.key)}">{text(s.heading)}</a>' for s in sections)
    parts = "".join(f'<section id="{text(s.key)}"><h2>{text(s.heading)}</h2>{s.body}</section>'
                    for s in sections)
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{text(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{text(title)}</h1><p>{text(subtitle)}</p></header>"
            f"<nav>{links}</nav><main>{parts}</main>"
            f"<footer>{text(footer)}</footer></body></html>\n")
