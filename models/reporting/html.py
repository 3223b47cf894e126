"""One self-contained HTML page from headings, text, tables and PNG figures (pure: no I/O).

Figures are embedded as base64 data URIs, so the page is one file that opens anywhere: a
browser, an MLflow artefact view, an e-mail attachment. Tables show their figures as people read
them (``models/reporting/columns.py``: percentages, integers, the unit in the heading, the description on
hover) and sort on a click on a heading, by the raw value, with a few lines of inline script (no
CDN, nothing fetched).
"""

import base64
import html
import json
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from models.reporting.columns import Column, cell, display, once_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1400px;color:#1d2330;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #dde;padding-bottom:.2rem}p.meta{color:#667}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0;display:block;overflow-x:auto}
th,td{padding:.25rem .55rem;border-bottom:1px solid #eef;text-align:right;white-space:nowrap}
th{background:#f4f5fa}td:first-child,th:first-child{text-align:left}
figure{margin:.8rem 0}img{max-width:100%;border:1px solid #eef}
th.sortable{cursor:pointer;user-select:none}th.sortable:hover{background:#e8eaf4}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:.7em}
th[aria-sort=descending]::after{content:" \\25BC";font-size:.7em}p.once{font-size:.85rem;margin:.2rem 0}
figcaption{font-size:.8rem;color:#667}pre{background:#f7f7fa;padding:.7rem;font-size:.78rem;
overflow-x:auto}nav a{margin-right:.8rem;font-size:.85rem}
"""


@dataclass(frozen=True)
class Section:
    """A heading with its blocks: ``str`` (a paragraph), ``pl.DataFrame`` (a table),
    ``Figure`` or ``Preformatted``."""

    title: str
    blocks: tuple


@dataclass(frozen=True)
class Figure:
    png: bytes
    caption: str


@dataclass(frozen=True)
class Preformatted:
    text: str


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


# Sorts a table by the clicked column: numbers by the raw value in data-v, text as text; a second
# click reverses. Written by hand: a dozen lines, and the report must not fetch a library.
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var c = row.cells[col], v = c.getAttribute("data-v");
        return v === null ? c.textContent : v === "" ? null : parseFloat(v);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return x === y ? 0 : x === null ? 1 : -1; }
        var d = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return asc ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _raw(value) -> str | None:
    """The data-v attribute of a numeric cell: its unrounded value ("" for a missing one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return repr(float(value)) if value == value and abs(value) != float("inf") else ""


def html_table(frame: pl.DataFrame) -> str:
    """A sortable table, each column described and shown for people (``models/reporting/columns.py``);
    the figures that are one per table (PBO) on a line above it instead of on every row."""
    shown = display(frame)
    head = "".join(
        f'<th title="{html.escape(column.description)}">{html.escape(heading)}</th>'
        for _, heading, column in shown.columns
    )
    kinds: list[Column] = [column for _, _, column in shown.columns]

    def td(raw, value, column: Column) -> str:
        v = _raw(raw)
        attr = "" if v is None else f' data-v="{v}"'
        return f"<td{attr}>{html.escape(cell(value, column))}</td>"

    body = "".join(
        "<tr>" + "".join(td(r, v, c) for r, v, c in zip(raw, row, kinds, strict=True)) + "</tr>"
        for raw, row in zip(shown.raw.rows(), shown.shown.rows(), strict=True)
    )
    once = (
        f'<p class="once" title="{html.escape("; ".join(c.description for _, c, _ in shown.once))}">'
        f"For the whole table: {html.escape(once_text(shown.once))}</p>"
        if shown.once
        else ""
    )
    return (
        f'{once}<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _block(block) -> str:
    if isinstance(block, pl.DataFrame):
        return html_table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode()
        caption = html.escape(block.caption)
        return (
            f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    if isinstance(block, Preformatted):
        return f"<pre>{html.escape(block.text)}</pre>"
    return f"<p>{html.escape(str(block))}</p>"


def html_report(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{_anchor(s.title)}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{_anchor(s.title)}"><h2>{html.escape(s.title)}</h2>'
        + "".join(_block(b) for b in s.blocks)
        + "</section>"
        for s in sections
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="meta">{html.escape(subtitle)}</p>'
        f"<nav>{nav}</nav>{body}<script>{SORT_JS}</script></body></html>"
    )


def report_json(sections: list[Section]) -> str:
    """The data behind every table of the report as JSON (figures by caption)."""

    def default(value):
        if isinstance(value, date | datetime):
            return value.isoformat()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    def finite(frame: pl.DataFrame) -> list[dict]:  # NaN and inf are not JSON: null
        floats = [c for c, t in frame.schema.items() if t.is_float()]
        return frame.with_columns(
            pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c in floats
        ).to_dicts()

    out = {
        s.title: [
            finite(b)
            if isinstance(b, pl.DataFrame)
            else {"figure": b.caption}
            if isinstance(b, Figure)
            else {"text": b.text}
            if isinstance(b, Preformatted)
            else {"text": str(b)}
            for b in s.blocks
        ]
        for s in sections
    }
    return json.dumps(out, indent=1, default=default, allow_nan=False)


def to_markdown(frame: pl.DataFrame, floatfmt: str = ".4f") -> str:
    """Polars' own markdown rendering, every row and column shown."""
    digits = int(floatfmt.strip(".f"))
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        float_precision=digits,
        tbl_rows=-1,
        tbl_cols=-1,
        fmt_str_lengths=120,
        tbl_width_chars=60_000,
    ):
        return str(frame)
