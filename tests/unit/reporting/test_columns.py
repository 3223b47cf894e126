"""The column registry and what people see of a table: percentages, integers, units in the
headings, per-table figures said once; the Dagster table metadata, the report's sortable table
and the plots' colours built from it."""

import re
from datetime import date

import numpy as np
import polars as pl
from matplotlib.colors import to_hex

from assets._meta import frame_metadata, table
from models.reporting.columns import COLUMNS, describe, display
from models.reporting.html import html_table
from models.reporting.plots import equity_curves, line_styles

STRATEGIES = pl.DataFrame(
    {
        "strategy": ["a", "b"],
        "annual_return": [0.23564, -0.0123],
        "sharpe": [1.23456, float("nan")],
        "max_drawdown_days": [219.0, 12.0],
        "psr": [0.9712, 0.4],
        "pbo": [0.6071484071484071, 0.6071484071484071],
        "n_trials": [57, 57],
    }
)


def test_display_converts_for_people_and_says_per_table_figures_once():
    shown = display(STRATEGIES)
    headings = [h for _, h, _ in shown.columns]
    assert headings == ["strategy", "annual_return (%)", "sharpe", "max_drawdown_days", "psr (%)"]
    assert shown.shown.row(0) == ("a", 23.56, 1.23, 219, 97.1)
    assert shown.shown["sharpe"][1] is None  # NaN shows as empty, not "nan"
    assert shown.shown["max_drawdown_days"].dtype == pl.Int64  # 219, not 219.0000
    assert [(n, v) for n, _, v in shown.once] == [("pbo", 60.7), ("n_trials", 57)]
    assert shown.raw["annual_return"][0] == 0.23564  # the raw value is kept for sorting


def test_a_per_table_column_that_differs_between_rows_stays_in_the_rows():
    frame = STRATEGIES.with_columns(pbo=pl.Series([0.1, 0.2]))
    assert "pbo (%)" in [h for _, h, _ in display(frame).columns]


def test_unknown_columns_get_a_default_from_their_shape_and_dtype():
    assert describe("excess_return", pl.Float64).kind == "percent"
    assert describe("information_ratio", pl.Float64).kind == "ratio"
    assert describe("ljung_box_p", pl.Float64).kind == "p_value"
    assert describe("n_rebalances", pl.Int64).kind == "int"
    assert describe("something", pl.Float64).kind == "float"
    assert describe("something", pl.String).kind == "text"
    assert describe("weight", pl.String).kind == "percent"  # registered names win
    assert all(c.description for c in COLUMNS.values())


def test_dagster_table_metadata_is_typed_described_and_rounded():
    value = table(STRATEGIES)
    columns = {c.name: c for c in value.schema.columns}
    assert columns["annual_return (%)"].type == "float"
    assert "in percent" in columns["annual_return (%)"].description
    assert columns["max_drawdown_days"].type == "int"
    assert value.records[0].data["annual_return (%)"] == 23.56
    assert value.records[0].data["max_drawdown_days"] == 219
    assert value.records[1].data["sharpe"] is None
    assert "pbo (%)" not in columns and any(
        c.startswith("pbo 60.7 %") for c in value.schema.constraints.other
    )


def test_frame_schema_carries_descriptions():
    frame = pl.DataFrame({"symbol": ["A"], "date": [date(2020, 1, 2)], "ret_5": [0.1]})
    schema = frame_metadata(frame, {"ret_5": "5-day return"})["dagster/column_schema"]
    described = {c.name: c.description for c in schema.columns}
    assert described == {"symbol": "Ticker.", "date": "Trading day.", "ret_5": "5-day return"}


def test_report_table_sorts_by_the_raw_value_and_shows_percent():
    page = html_table(STRATEGIES)
    assert '<table class="sortable">' in page
    assert "<th" in page and "annual_return (%)" in page
    assert '<td data-v="0.23564">23.56</td>' in page  # shown rounded, sorted unrounded
    assert '<td data-v="">' in page  # NaN: empty, sorted last
    assert "For the whole table: pbo 60.7 % · n_trials 57" in page
    assert page.count("60.7") == 1  # PBO once, not on every row
    assert re.search(r"<td[^>]*>219</td>", page)


def test_plot_colours_never_repeat_within_one_plot():
    for n in (12, 20, 31):
        styles = line_styles([f"s{i}" for i in range(n)])
        colours = {to_hex(s["color"]) for s in styles.values()}
        assert len(colours) == n


def test_equity_curves_legend_sits_outside_the_axes():
    rng = np.random.default_rng(0)
    days = pl.date_range(date(2020, 1, 1), date(2020, 12, 31), eager=True)
    daily = pl.concat(
        pl.DataFrame({"date": days, "strategy": f"s{i}", "net": rng.normal(0, 0.01, len(days))})
        for i in range(12)
    )
    fig = equity_curves(daily)
    fig.canvas.draw()  # Agg canvas: lays the legend out
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the data, covering none of it
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and not any("10^" in t or "×" in t or "$" in t for t in labels)
