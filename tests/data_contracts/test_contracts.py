from datetime import date, timedelta

import polars as pl
import pytest

from data_contracts import ContractViolation, RawPrices, check_prices, parse_prices, validate

RUN = date(2026, 1, 1)


def _raw(**cols):
    n = len(next(iter(cols.values())))
    return pl.DataFrame(cols).with_columns(
        source_file=pl.lit("vendor.csv"), source_row=pl.int_range(2, n + 2)
    )


def test_parse_types_columns_and_drops_unknown_ones():
    out, unparsed = parse_prices(
        _raw(symbol=[" A "], date=["2020-01-02"], close=[" 10.5 "], extra=["x"])
    )
    assert out.schema["date"] == pl.Date and out.schema["close"] == pl.Float64
    assert out["symbol"].to_list() == ["A"] and "extra" not in out.columns and unparsed.is_empty()


def test_missing_required_column_is_named():
    with pytest.raises(ContractViolation, match="column 'close' is required but missing"):
        parse_prices(_raw(symbol=["A"], date=["2020-01-02"]))


def test_unparseable_value_is_quarantined_with_file_column_and_row():
    checked = check_prices(
        RawPrices(
            _raw(
                symbol=["A", "A", "A"],
                date=["2020-01-02", "2020-01-03", "2020-01-06"],
                close=["1", "1.1", "n/a"],
            )
        ),
        RUN,
        max_quarantine_share=1,
    )
    (violation,) = checked.violations
    assert str(violation) == (
        "column 'close' must parse as Float64: first bad row is row 4 of vendor.csv "
        "(symbol A) (value 'n/a'); 1 row(s) fail"
    )
    assert checked.quarantine.select("source_row", "rule").rows() == [
        (4, "close: must parse as Float64")
    ]
    assert len(checked.clean) == 2


def test_suite_names_non_positive_nulls_and_duplicates():
    frame, _ = parse_prices(
        _raw(
            symbol=["A", "A", "A", "B", "B"],
            date=["2020-01-02", "2020-01-03", "2020-01-03", "2020-01-02", "2020-01-03"],
            close=["1", "0", "2", None, "3"],
        )
    )
    frame = frame.with_columns(days_after_run_date=pl.lit(-1), repeats_of_symbol_date=pl.lit(0))
    messages = [str(v) for v in validate(frame, "market_prices")]
    assert any(
        "'close' must not be empty or NaN: first bad row is row 5 of vendor.csv" in m
        for m in messages
    )
    assert any(
        "'close' must be > 0: first bad row is row 3 of vendor.csv (symbol A) (value 0.0)" in m
        for m in messages
    )
    assert len(messages) == 2


def test_clean_frame_passes_and_keeps_every_row():
    checked = check_prices(
        RawPrices(_raw(symbol=["A", "B"], date=["2020-01-02", "2020-01-02"], close=["1", "2"])), RUN
    )
    assert checked.violations == [] and len(checked.clean) == 2 and checked.quarantine.is_empty()
    assert "2 of 2" not in checked.report.html and "expectations passed" in checked.report.html


def _dirty(n: int = 400, seed: int = 0) -> RawPrices:
    """Every row rule broken somewhere, most rows by several: OHLC inconsistent, prices <= 0,
    empty closes, negative volume, bad symbols, repeats, future dates."""
    import numpy as np

    rng = np.random.default_rng(seed)
    close = rng.uniform(5, 20, n)
    high, low, opn = close * 1.02, close * 0.98, close.copy()
    bad = rng.random((6, n)) < 0.2
    low[bad[0]] = close[bad[0]] * 1.1  # close < low, high < low
    opn[bad[1]] = high[bad[1]] * 1.05  # open > high
    close[bad[2]] = -1.0
    close[::41] = 0.0  # on the bound: > 0 is strict
    volume = np.where(bad[3], -5.0, 1000.0)
    symbols = np.where(bad[4], "bad sym", np.array([f"S{i % 7}" for i in range(n)]))
    days = [str(date(2020, 1, 1 + i % 28)) for i in range(n)]
    days = [("2031-01-02" if f else d) for d, f in zip(days, bad[5], strict=True)]
    closes = [("" if i % 37 == 0 else f"{c}") for i, c in enumerate(close)]
    return RawPrices(
        _raw(
            symbol=list(symbols),
            date=days,
            open=[str(x) for x in opn],
            high=[str(x) for x in high],
            low=[str(x) for x in low],
            close=closes,
            volume=[str(x) for x in volume],
        )
    )


def test_quarantine_masks_are_the_expectations_rows_as_gx_finds_them(monkeypatch, caplog):
    """The polars masks flag exactly the rows GX's COMPLETE result lists, rule by rule: the
    same check with every mask switched off (GX alone finds the rows) gives the same frame."""
    import logging

    import data_contracts.suite as suite

    with caplog.at_level(logging.WARNING, logger="data_contracts.suite"):
        fast = check_prices(_dirty(), RUN, max_quarantine_share=1)
    assert not caplog.records, "a mask counted other rows than GX: " + caplog.text
    assert len(fast.violations) >= 9  # every row rule of the suite failed somewhere
    assert len(fast.quarantine) > 200 and fast.quarantine["rule"].str.contains(";").any()
    monkeypatch.setattr(suite, "failing_rows", lambda *_: None)
    slow = check_prices(_dirty(), RUN, max_quarantine_share=1)
    assert fast.quarantine.equals(slow.quarantine)
    assert [str(v) for v in fast.violations] == [str(v) for v in slow.violations]
    assert fast.clean.equals(slow.clean)


def test_a_blocked_run_names_the_dominant_rule_and_its_likely_cause():
    """A Yahoo file mapped the old way (close: Adj Close, open/high/low raw) and read without
    the raw Close: 3 of 4 closes lie below the day's low, by the dividend factor."""
    n = 40
    raw_close = [100.0 + i for i in range(n)]
    adjusted = [c * (0.9 if i < 30 else 1.0) for i, c in enumerate(raw_close)]
    raw = RawPrices(
        _raw(
            symbol=["A"] * n,
            date=[str(date(2020, 1, 1) + timedelta(days=i)) for i in range(n)],
            open=[str(c) for c in raw_close],
            high=[str(c * 1.01) for c in raw_close],
            low=[str(c * 0.99) for c in raw_close],
            close=[str(c) for c in adjusted],
        )
    )
    with pytest.raises(ContractViolation) as err:
        check_prices(raw, RUN)
    text = str(err.value)
    assert "75.0% of rows would be quarantined (limit 5%" in text
    assert "rule 'close,low: close must be >= low' dominates (30 rows" in text
    assert "close looks adjusted while high/low are not" in text and "adj_close" in text
