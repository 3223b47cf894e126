"""The backtest's summary frame: every performance figure a float or null."""

import numpy as np
import polars as pl

from assets.portfolio import performance_frame
from models.backtest.engine import performance


def test_every_figure_is_a_float_or_null_whatever_one_book_holds():
    good = performance(np.array([0.01, -0.005, 0.002] * 100))
    rows = [
        {"strategy": "good", **good},
        # what used to reach the frame: a complex CAGR, a None, an infinity
        {"strategy": "odd", **good, "annual_return": complex(-2, -1), "calmar": None},
        {"strategy": "flat", **good, "sharpe": float("inf"), "sortino": np.nan},
    ]
    frame = performance_frame(rows)
    assert frame.schema["strategy"] == pl.String
    assert all(frame.schema[c] == pl.Float64 for c in frame.columns if c != "strategy")
    odd = frame.filter(strategy="odd").row(0, named=True)
    assert odd["annual_return"] is None and odd["calmar"] is None
    flat = frame.filter(strategy="flat").row(0, named=True)
    assert flat["sharpe"] is None and flat["sortino"] is None
    assert frame.filter(strategy="good")["sharpe"][0] == good["sharpe"]
    # the old construction fails on exactly these rows
    try:
        pl.DataFrame(rows)
    except (pl.exceptions.SchemaError, TypeError, pl.exceptions.ComputeError):
        pass
    else:  # pragma: no cover - documents the bug the helper exists for
        raise AssertionError("expected polars to refuse mixed float/complex figures")
