"""The bad-input catalogue: each kind of broken input gets its named error, quarantine entry or
quality warning, and a count check proves that no good row was lost.

Good rows are real: Yahoo-style exports (``Date,Open,High,Low,Close,Adj Close,Volume``) cut from
arch's bundled S&P 500 and NASDAQ index files. Each case writes one good file and one broken
file into a folder and ingests the folder through the file source and the price contract.
"""

import gzip
from datetime import date
from pathlib import Path

import arch.data.nasdaq
import arch.data.sp500
import polars as pl
import pytest

from data_contracts import ContractViolation, check_prices
from data_contracts.quality import QualityRules, quality_findings
from pipelines.sources import FilePriceSource

RUN_DATE = date(2026, 11, 20)
YAHOO = {
    "date": "Date",
    "open": "Open",
    "high": "High",
    "low": "Low",
    "close": "Close",
    "adj_close": "Adj Close",
    "volume": "Volume",
}
N = 250  # rows per good file


def _yahoo(loader, rows: int = N) -> pl.DataFrame:
    frame = pl.from_pandas(loader.load().reset_index()).head(rows)
    return frame.with_columns(pl.col("Date").dt.date().cast(pl.String)).with_columns(
        # arch's Close and Adj Close are one series: keep the OHLC consistent with it
        pl.col("Adj Close").alias("Close")
    )


@pytest.fixture(scope="module")
def good() -> pl.DataFrame:
    return _yahoo(arch.data.sp500)


@pytest.fixture(scope="module")
def other() -> pl.DataFrame:
    return _yahoo(arch.data.nasdaq)


def _ingest(folder: Path, columns: dict = YAHOO, **source) -> tuple:
    src = FilePriceSource(
        path=str(folder / "*"), columns=columns, symbol_from_filename=True, **source
    )
    raw = src.load_prices()
    checked = check_prices(raw, RUN_DATE, max_quarantine_share=0.5)
    return raw, checked


def _case(tmp_path: Path, good: pl.DataFrame, bad_name: str, bad: pl.DataFrame | bytes | str):
    folder = tmp_path / "prices"
    folder.mkdir()
    good.write_csv(folder / "SPX.csv")
    target = folder / bad_name
    if isinstance(bad, pl.DataFrame):
        bad.write_csv(target)
    else:
        target.write_bytes(bad if isinstance(bad, bytes) else bad.encode())
    return folder


def _assert_no_loss(raw, checked, expected_clean: int):
    quarantined_rows = checked.quarantine.filter(pl.col("source_row").is_not_null())
    assert len(checked.clean) == expected_clean
    assert checked.rows_in == len(raw.frame) == len(checked.clean) + len(quarantined_rows)
    # no row is both clean and quarantined
    key = ["source_file", "source_row"]
    assert checked.clean.join(quarantined_rows, on=key).is_empty()


def _one_rule(checked, needle: str) -> pl.DataFrame:
    hits = checked.quarantine.filter(pl.col("rule").str.contains(needle, literal=True))
    assert len(hits), f"no quarantine entry with {needle!r}: {checked.quarantine}"
    return hits


# --- file-level: the file is skipped and named, the other file still loads -------------------


@pytest.mark.parametrize(
    "name, payload, reason",
    [
        ("BAD.csv", b"\x00\x01\x02\xff\xfe garbage \x00\n\x89PNG", "is not a readable CSV file"),
        ("EMPTY.csv", b"", "is not a readable CSV file"),
        ("HEADER.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n", "has no rows"),
        ("BF.B.csv", '{\n    "Error Message": "Invalid API call."\n}\n', "lacks mapped column"),
        (
            "QUOTE.csv",
            'Date,Open,High,Low,Close,Adj Close,Volume\n"2020-01-02,1,2,0.5,1,1,10\n',
            "is not a readable CSV file",
        ),
    ],
    ids=[
        "malformed-binary",
        "empty-file",
        "header-only",
        "vendor-error-payload",
        "unbalanced-quote",
    ],
)
def test_unusable_file_is_skipped_and_named(tmp_path, good, name, payload, reason):
    folder = _case(tmp_path, good, name, payload)
    raw, checked = _ingest(folder)
    (skip,) = checked.skipped
    assert skip.file.endswith(name) and reason in skip.rule
    entry = checked.quarantine.filter(pl.col("source_row").is_null())
    assert entry["source_file"].to_list() == [str(folder / name)] and reason in entry["rule"][0]
    _assert_no_loss(raw, checked, N)


def test_gzipped_csv_and_parquet_load_like_csv(tmp_path, good, other):
    folder = tmp_path / "prices"
    folder.mkdir()
    (folder / "SPX.csv.gz").write_bytes(gzip.compress(good.write_csv().encode()))
    other.with_columns(pl.col("Date").str.to_date()).write_parquet(folder / "NDX.parquet")
    raw, checked = _ingest(folder)
    assert checked.skipped == [] and sorted(checked.clean["symbol"].unique()) == ["NDX", "SPX"]
    _assert_no_loss(raw, checked, 2 * N)


def test_unknown_column_mapping_in_every_file_stops_the_run(tmp_path, good):
    folder = _case(tmp_path, good, "NDX.csv", good)
    src = FilePriceSource(
        path=str(folder / "*"), columns={"close": "Last"}, symbol_from_filename=True
    )
    with pytest.raises(ContractViolation) as err:
        check_prices(src.load_prices(), RUN_DATE)
    text = str(err.value)
    assert (
        "lacks mapped column(s) close -> 'last'" in text and "SPX.csv" in text and "NDX.csv" in text
    )
    assert "no readable price rows" in text


def test_path_outside_the_data_root_is_refused(tmp_path, good, other):
    folder = _case(tmp_path, good, "NDX.csv", other)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    good.write_csv(outside / "EVIL.csv")
    (folder / "EVIL.csv").symlink_to(outside / "EVIL.csv")
    raw, checked = _ingest(folder, root=str(folder))
    (skip,) = checked.skipped
    assert skip.file.endswith("EVIL.csv") and "is outside the data root" in skip.rule
    _assert_no_loss(raw, checked, 2 * N)
    # a configured path that escapes the root loads nothing and says why
    escaping = FilePriceSource(
        path=str(folder / ".." / "elsewhere" / "*"),
        root=str(folder),
        columns=YAHOO,
        symbol_from_filename=True,
    )
    with pytest.raises(ContractViolation, match="is outside the data root"):
        check_prices(escaping.load_prices(), RUN_DATE)


def test_schema_drift_between_files_is_skipped_and_named(tmp_path, good, other):
    folder = _case(tmp_path, good, "NDX.csv", other)
    good.drop("Volume").write_csv(folder / "DRIFT.csv")
    # only the renamed columns are mapped; open/high/low/volume match by name
    raw, checked = _ingest(folder, columns={"date": "Date", "close": "Adj Close"})
    (skip,) = checked.skipped
    assert (
        skip.file.endswith("DRIFT.csv") and "schema drift" in skip.rule and "'volume'" in skip.rule
    )
    _assert_no_loss(raw, checked, 2 * N)


def test_mixed_timezones_in_a_file_stop_the_run(tmp_path, good):
    bad = good.head(4).with_columns(
        Date=pl.Series(
            [
                "1999-01-04T16:00:00-05:00",
                "1999-01-05T16:00:00-05:00",
                "1999-01-06T21:00:00Z",
                "1999-01-07T16:00:00-05:00",
            ]
        )
    )
    folder = _case(tmp_path, good, "TZ.csv", bad)
    with pytest.raises(ContractViolation) as err:
        _ingest(folder)
    assert "column 'date' mixes timezone offsets ['-05:00', 'Z']" in str(err.value)
    assert "first bad row is row 4 of" in str(err.value) and "TZ.csv" in str(err.value)


def test_one_timezone_gives_the_exchange_date(tmp_path, good):
    bad = good.head(3).with_columns(
        Date=pl.Series(
            ["1999-01-04T16:00:00-05:00", "1999-01-05T16:00:00-05:00", "1999-01-06T16:00:00-05:00"]
        )
    )
    raw, checked = _ingest(_case(tmp_path, good, "TZ.csv", bad))
    tz = checked.clean.filter(pl.col("symbol") == "TZ")
    assert tz["date"].to_list() == [date(1999, 1, 4), date(1999, 1, 5), date(1999, 1, 6)]
    _assert_no_loss(raw, checked, N + 3)


# --- row-level: bad rows are quarantined with their rule, good rows of the same file kept ------


def _rows(good: pl.DataFrame, **changes) -> pl.DataFrame:
    """The first 20 good rows with row 5 (file line 7) changed."""
    frame = good.head(20).with_columns(pl.all().cast(pl.String))
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
        for c, v in changes.items()
    )


@pytest.mark.parametrize(
    "changes, rule",
    [
        ({"Close": "n/a"}, "close: must parse as Float64"),
        ({"Volume": "12e"}, "volume: must parse as Float64"),
        ({"Date": "1999-13-45"}, "date: must parse as Date"),
        ({"Close": "NaN"}, "close: must not be empty or NaN"),
        ({"Adj Close": ""}, "adj_close: must not be empty or NaN"),
        ({"Close": "0"}, "close: must be > 0"),
        ({"Adj Close": "-12.5"}, "adj_close: must be > 0"),
        ({"High": "1.0"}, "high must be >= low"),
        ({"Volume": "-100"}, "volume: must be >= 0"),
        ({"Date": "2031-01-02"}, "date: must not be after the run date"),
        ({"Adj Close": "inf"}, "adj_close: must be finite and at most 1e+07"),
        ({"Adj Close": "1e308"}, "adj_close: must be finite and at most 1e+07"),
        ({"High": "Infinity"}, "high: must be finite and at most 1e+07"),
        ({"Volume": "inf"}, "volume: must be finite"),
    ],
    ids=[
        "text-in-close",
        "text-in-volume",
        "impossible-date",
        "nan",
        "empty-cell",
        "zero-price",
        "negative-price",
        "high-below-low",
        "negative-volume",
        "future-date",
        "infinite-price",
        "price-1e308",
        "infinite-high",
        "infinite-volume",
    ],
)
def test_bad_row_is_quarantined_with_its_rule(tmp_path, good, changes, rule):
    raw, checked = _ingest(_case(tmp_path, good, "BAD.csv", _rows(good, **changes)))
    hits = _one_rule(checked, rule)
    assert hits["source_row"].to_list() == [7] and hits["source_file"][0].endswith("BAD.csv")
    assert any(
        str(v).startswith(f"column '{rule.split(':')[0]}") or rule.split(": ")[-1] in v.rule
        for v in checked.violations
    )
    _assert_no_loss(raw, checked, N + 19)


def test_duplicate_rows_keep_the_first_and_quarantine_the_repeats(tmp_path, good):
    rows = good.head(20)
    bad = pl.concat([rows, rows.slice(3, 2), rows.slice(3, 1)])  # 3 repeats
    raw, checked = _ingest(_case(tmp_path, good, "DUP.csv", bad))
    hits = _one_rule(checked, "symbol,date: must be unique")
    assert hits["source_row"].to_list() == [22, 23, 24]
    _assert_no_loss(raw, checked, N + 20)
    message = next(str(v) for v in checked.violations if v.column == "symbol,date")
    assert (
        "first bad row is row 22 of" in message
        and "(symbol DUP)" in message
        and "3 row(s)" in message
    )


def test_odd_tickers_are_quarantined_and_real_odd_ones_kept(tmp_path, good):
    folder = _case(tmp_path, good, "BRK.B.csv", good.head(10))
    long_form = pl.DataFrame(
        {
            "Symbol": ["BF-B", "ÄPFEL", "a b", "\u200bZW", "RDS^A", "X" * 25],
            "Date": ["1999-01-04"] * 6,
            "Adj Close": ["10"] * 6,
        }
    )
    long_form.write_csv(folder / "long.csv")
    src = FilePriceSource(
        path=str(folder / "long.csv"), columns={"date": "Date", "close": "Adj Close"}
    )
    raw = src.load_prices()
    checked = check_prices(raw, RUN_DATE, max_quarantine_share=1)
    hits = _one_rule(checked, "symbol: must be 1-20 upper-case ASCII")
    assert sorted(hits["symbol"]) == sorted(["ÄPFEL", "a b", "\u200bZW", "X" * 25])
    assert sorted(checked.clean["symbol"]) == ["BF-B", "RDS^A"]
    _assert_no_loss(raw, checked, 2)
    # BRK.B from a file name is a valid symbol (long.csv, with other columns, is set aside)
    _, per_ticker = _ingest(folder)
    assert sorted(per_ticker.clean["symbol"].unique()) == ["BRK.B", "SPX"]


def test_too_many_bad_rows_stop_the_run(tmp_path, good):
    bad = good.with_columns(pl.lit("-1").alias("Adj Close"))
    folder = _case(tmp_path, good, "BAD.csv", bad)
    src = FilePriceSource(path=str(folder / "*"), columns=YAHOO, symbol_from_filename=True)
    with pytest.raises(ContractViolation, match=r"50.0% of rows would be quarantined \(limit 5%;"):
        check_prices(src.load_prices(), RUN_DATE)


# --- panel-level: named warnings, nothing set aside -------------------------------------------


def _findings(checked) -> pl.DataFrame:
    return quality_findings(
        checked.clean.drop("source_file", "source_row"), RUN_DATE, QualityRules(max_age_days=5)
    )


def test_unadjusted_split_is_reported(tmp_path, good):
    # a 2-for-1 split the vendor did not adjust: prices before 1999-06-01 doubled
    bad = good.with_columns(
        pl.when(pl.col("Date") < "1999-06-01").then(pl.col(c) * 2).otherwise(pl.col(c)).alias(c)
        for c in ["Open", "High", "Low", "Close", "Adj Close"]
    )
    raw, checked = _ingest(_case(tmp_path, good, "SPLIT.csv", bad))
    found = _findings(checked).filter(pl.col("rule") == "unadjusted split")
    assert found.select("symbol", "date").rows() == [("SPLIT", date(1999, 6, 1))]
    assert "split ratio 2.0" in found["detail"][0]
    _assert_no_loss(raw, checked, 2 * N)


def test_stale_series_gap_and_old_data_are_reported(tmp_path, good):
    stale = good.with_columns(
        pl.when(pl.int_range(pl.len()).is_between(100, 107))
        .then(pl.lit(1300.0))
        .otherwise(pl.col(c))
        .alias(c)
        for c in ["Open", "High", "Low", "Close", "Adj Close"]
    )
    gap = good.filter(~pl.int_range(pl.len()).is_between(50, 80))
    folder = _case(tmp_path, good, "STALE.csv", stale)
    gap.write_csv(folder / "GAP.csv")
    raw, checked = _ingest(folder)
    found = _findings(checked)
    rules = {r: rows for (r,), rows in found.group_by("rule")}
    assert rules["stale series"].select("symbol", "detail").rows() == [
        ("STALE", "8 identical closes in a row from here (1300.0)")
    ]
    assert rules["calendar gap"].select("symbol").rows() == [("GAP",)]
    assert "business days before 2026-11-20" in rules["stale data"]["detail"][0]
    _assert_no_loss(raw, checked, 3 * N - 31)


def test_daily_delivery_files_are_read_only_for_their_days(tmp_path, good):
    folder = tmp_path / "incoming"
    folder.mkdir()
    long_form = good.head(3).with_columns(Symbol=pl.lit("SPX"))
    for row in long_form.iter_slices(1):
        row.write_csv(folder / f"prices_{row['Date'][0]}.csv")
    src = FilePriceSource(path=str(folder / "prices_{date}.csv"), columns=YAHOO)
    assert len(src.files()) == 3
    one_day = src.load_prices(date(1999, 1, 5), date(1999, 1, 5))
    assert one_day.frame["source_file"].unique().to_list() == [
        str(folder / "prices_1999-01-05.csv")
    ]
    holiday = src.load_prices(date(1999, 1, 9), date(1999, 1, 10))
    assert holiday.frame.is_empty() and holiday.skipped == []
    assert check_prices(holiday, RUN_DATE, allow_empty=True).clean.is_empty()
    with pytest.raises(ContractViolation, match="no readable price rows"):
        check_prices(holiday, RUN_DATE)
