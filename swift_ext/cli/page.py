"""The HTML the shareable pages are made of (`review`'s report.html, `score --html`): one look, one table.

Numbers are formatted for people (``fmt``); tables are real tables, sortable by clicking a header
(``SORT_JS``, a few lines of plain JavaScript that sort by each cell's ``data-v`` key); every text
from a log or a result file goes through ``esc``. Pages are self-contained: no file or network fetch.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from .text import visible

CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1180px;margin:auto;padding:0 16px;
color:#222;background:#fafafa}h1{margin-bottom:2px}h2{margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0;background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;
font-size:13px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;background:#f0f0f0}table.sortable th:after{content:' \\2195';color:#aaa}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:14px}.facts dt{color:#666}
.facts dd{margin:0}.warn{color:#8a4b00}.problems li{color:#8a1f11}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(500px,1fr));gap:12px}
.plots figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}.plots img{max-width:100%}
figcaption{font-size:13px;color:#555}details pre{background:#f4f4f4;padding:8px;overflow-x:auto}"""

SORT_JS = """document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], i = th.cellIndex;
    var asc = th.getAttribute('data-dir') !== 'asc';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    var key = function (row) { var c = row.cells[i]; return c.getAttribute('data-v') || c.textContent; };
    Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    }).forEach(function (row) { body.appendChild(row); });
  });
});"""


def fmt(value: Any) -> str:
    """A number as a person reads it: ``12,845``, ``186.5``, ``0.229``; ``-`` for nothing."""
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, int):
        return f'{value:,}'
    if isinstance(value, float):
        if value != value:
            return 'NaN'
        if abs(value) >= 1000:
            return f'{value:,.0f}'
        if abs(value) >= 100:
            return f'{value:.1f}'
        if value == int(value):
            return str(int(value))
        return f'{value:.3g}'
    return str(value)


def esc(value: Any) -> str:
    """Text for an HTML page: ``& < > " '`` escaped, and control characters and lone surrogates shown as
    escapes (``text.visible``), so the page is valid UTF-8 and reads as the terminal does."""
    return html.escape(visible(value))


def cell(value: Any) -> str:
    """A table cell: numbers right-aligned with a sort key, sizes (``WxH``) sorted by pixel count."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="n" data-v="{value!r}">{esc(fmt(value))}</td>'
    if isinstance(value, str) and 'x' in value:
        w, _, h = value.partition('x')
        if w.isdigit() and h.isdigit():
            return f'<td class="n" data-v="{int(w) * int(h)}">{esc(value)}</td>'
    return f'<td>{esc(fmt(value) if value is not None else "-")}</td>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], sortable: bool = True) -> str:
    head = ''.join(f'<th>{esc(h)}</th>' for h in headers)
    body = ''.join('<tr>' + ''.join(cell(v) for v in row) + '</tr>' for row in rows)
    cls = ' class="sortable"' if sortable else ''
    return f'<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def facts(pairs: Sequence[tuple[str, Any]]) -> str:
    """A ``<dl>`` of label / value pairs (values formatted with ``fmt``; None left out)."""
    items = ''.join(f'<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>' for k, v in pairs if v is not None)
    return f'<dl class="facts">{items}</dl>'


def page(title: str, body: str, css: str = '') -> str:
    """A whole self-contained page: the shared style (and ``css``), ``body``, the table sorter."""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>
<style>{CSS}
{css}</style></head><body>
{body}
<script>{SORT_JS}</script>
</body></html>"""
