from datetime import date

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
