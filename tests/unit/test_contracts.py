import polars as pl
import pytest

from data_contracts import ContractViolation, parse_prices, validate


def _raw(**cols):
    n = len(next(iter(cols.values())))
    return pl.DataFrame(cols).with_columns(
        source_file=pl.lit("vendor.csv"), source_row=pl.int_range(2, n + 2)
    )


def test_parse_types_columns_and_drops_unknown_ones():
    out = parse_prices(_raw(symbol=["A"], date=["2020-01-02"], close=[" 10.5 "], extra=["x"]))
    assert out.schema["date"] == pl.Date and out.schema["close"] == pl.Float64
    assert "extra" not in out.columns


def test_missing_required_column_is_named():
    with pytest.raises(ContractViolation, match="column 'close' is required but missing"):
        parse_prices(_raw(symbol=["A"], date=["2020-01-02"]))


def test_unparseable_value_names_file_column_and_row():
    with pytest.raises(ContractViolation) as err:
        parse_prices(
            _raw(
                symbol=["A", "A", "A"],
                date=["2020-01-02", "2020-01-03", "2020-01-04"],
                close=["1", "1.1", "n/a"],
            )
        )
    assert (
        "column 'close' must parse as Float64: first bad row is row 4 of vendor.csv (value 'n/a')"
        in str(err.value)
    )


def test_bad_date_is_named():
    with pytest.raises(
        ContractViolation, match="column 'date' must parse as Date: first bad row is row 3"
    ):
        parse_prices(_raw(symbol=["A", "A"], date=["2020-01-02", "2020-13-45"], close=["1", "2"]))


def test_suite_names_non_positive_nulls_and_duplicates():
    frame = parse_prices(
        _raw(
            symbol=["A", "A", "A", "B", "B"],
            date=["2020-01-02", "2020-01-03", "2020-01-03", "2020-01-02", "2020-01-03"],
            close=["1", "0", "2", None, "3"],
        )
    )
    messages = [str(v) for v in validate(frame, "market_prices")]
    assert any(
        "'close' must not be null: first bad row is row 5 of vendor.csv" in m for m in messages
    )
    assert any(
        "'close' must be > 0: first bad row is row 3 of vendor.csv (value 0.0)" in m
        for m in messages
    )
    assert any("'symbol,date' must be unique" in m and "row 3 of vendor.csv" in m for m in messages)
    assert len(messages) == 3


def test_clean_frame_passes():
    frame = parse_prices(
        _raw(symbol=["A", "B"], date=["2020-01-02", "2020-01-02"], close=["1", "2"])
    )
    assert validate(frame, "market_prices") == []
