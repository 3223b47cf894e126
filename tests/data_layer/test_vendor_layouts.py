"""The README's vendor layouts, each written to files in that layout and ingested through the
user-data path (source, contract, market_prices' reconciliation): no row lost, OHLC consistent
on the adjusted basis, and the factor applied equal to the vendor's ``adj_close / close``.

Prices are real (arch's S&P 500 and NASDAQ-100 index OHLCV, 2015-2018); the corporate actions
are planted, with the vendors' own conventions: a 2-for-1 split of NDX on 2017-06-01 and a
quarterly cash dividend of 0.5 % of the close on both."""

import gzip
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose

from data_contracts import check_prices
from models.data.corporate_actions import reconcile
from pipelines.sources import FilePriceSource, resolve_columns

RUN = date(2026, 1, 5)
SPLIT = date(2017, 6, 1)


@pytest.fixture(scope="module")
def truth(index_ohlcv) -> pl.DataFrame:
    """Split-adjusted OHLCV (as traded after the split), the dividend in the same units, the
    raw (as traded) prices, and both factors: ``div_factor`` (Yahoo's Adj Close / Close) and
    ``split_factor`` (CRSP's CFACPR)."""
    prices = index_ohlcv.filter(pl.col("date").is_between(date(2015, 1, 1), date(2018, 12, 31)))
    quarter_start = pl.col("date").dt.month().is_in([1, 4, 7, 10]) & (
        pl.col("date").dt.month() != pl.col("date").shift(1).dt.month()
    )
    frame = prices.sort("symbol", "date").with_columns(
        dividend=pl.when(quarter_start.over("symbol"))
        .then(0.005 * pl.col("close").shift(1).over("symbol"))
        .otherwise(0.0)
        .fill_null(0.0),
        split_factor=pl.when((pl.col("symbol") == "NDX") & (pl.col("date") < SPLIT))
        .then(2.0)
        .otherwise(1.0),
    )
    # the vendor's dividend factor, written with numpy (not our polars code): each day's price
    # times the product of (1 - dividend / previous close) over every later ex-date
    parts = []
    for (_,), part in frame.partition_by("symbol", as_dict=True).items():
        close, div = part["close"].to_numpy(), part["dividend"].to_numpy()
        event = np.ones(len(close))
        event[1:] = 1 - div[1:] / close[:-1]
        later = np.append(event[1:], 1.0)
        parts.append(part.with_columns(div_factor=np.cumprod(later[::-1])[::-1]))
    out = pl.concat(parts)
    raw = pl.col("split_factor")
    return out.with_columns(
        raw_open=pl.col("open") * raw,
        raw_high=pl.col("high") * raw,
        raw_low=pl.col("low") * raw,
        raw_close=pl.col("close") * raw,
        raw_volume=pl.col("volume") / raw,
        raw_dividend=pl.col("dividend") * raw,
        split_coefficient=pl.when(
            (pl.col("symbol") == "NDX") & (pl.col("date") == pl.lit(SPLIT).cast(pl.Date))
        )
        .then(2.0)
        .otherwise(1.0),
    )


def _per_ticker(folder: Path, frame: pl.DataFrame, name: str = "{symbol}.csv") -> str:
    folder.mkdir()
    for (symbol,), part in frame.partition_by("_symbol", as_dict=True).items():
        path = folder / name.format(symbol=symbol)
        text = part.drop("_symbol").write_csv().encode()
        path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
    return str(folder / name.format(symbol="*"))


def _layouts(truth: pl.DataFrame, tmp: Path) -> dict[str, tuple[FilePriceSource, pl.Expr, pl.Expr]]:
    """Each layout's source, the factor (an expression on ``truth``) its files say turns the
    traded close into the adjusted one, and the adjusted basis against ``truth``'s
    split-adjusted prices."""
    t = truth.with_columns(_symbol="symbol", iso=pl.col("date").cast(pl.String))
    yahoo_cols = {  # Yahoo: OHLC split-adjusted, Adj Close adds the dividends
        "Date": "iso",
        "Open": "open",
        "High": "high",
        "Low": "low",
        "Close": "close",
        "Adj Close": pl.col("close") * pl.col("div_factor"),
        "Volume": "volume",
    }
    yahoo = t.select("_symbol", **yahoo_cols)
    kaggle = t.select(
        "_symbol",
        Date="iso",
        High="high",
        Low="low",
        Open="open",
        Close="close",
        Volume="volume",
        **{"Adj Close": pl.col("close") * pl.col("div_factor")},
        Name="symbol",
    )
    alphavantage = t.select(
        "_symbol",
        timestamp="iso",
        open="raw_open",
        high="raw_high",
        low="raw_low",
        close="raw_close",
        adjusted_close=pl.col("close") * pl.col("div_factor"),
        volume="raw_volume",
        dividend_amount="raw_dividend",
        split_coefficient="split_coefficient",
    )
    stooq = t.select(  # Stooq: one bulk text file, prices already split- and dividend-adjusted
        **{
            "<TICKER>": pl.col("symbol") + ".US",
            "<PER>": pl.lit("D"),
            "<DATE>": pl.col("date").dt.strftime("%Y%m%d"),
            "<TIME>": pl.lit("000000"),
            "<OPEN>": pl.col("open") * pl.col("div_factor"),
            "<HIGH>": pl.col("high") * pl.col("div_factor"),
            "<LOW>": pl.col("low") * pl.col("div_factor"),
            "<CLOSE>": pl.col("close") * pl.col("div_factor"),
            "<VOL>": pl.col("volume") / pl.col("div_factor"),
            "<OPENINT>": pl.lit(0),
        }
    )
    crsp = t.select(  # CRSP-like: one long file, raw prices and the cumulative split factor
        PERMNO=pl.when(pl.col("symbol") == "SPX").then(10001).otherwise(10002),
        date=pl.col("date").dt.strftime("%Y%m%d"),
        TICKER="symbol",
        OPENPRC="raw_open",
        ASKHI="raw_high",
        BIDLO="raw_low",
        PRC="raw_close",
        VOL="raw_volume",
        CFACPR="split_factor",
    )
    stooq.write_csv(tmp / "stooq_d_us.txt")
    crsp.write_csv(tmp / "crsp_dsf.csv")
    return {
        "yahoo": (
            FilePriceSource(path=_per_ticker(tmp / "yahoo", yahoo), symbol_from_filename=True),
            pl.col("div_factor"),
            pl.col("div_factor"),
        ),
        "kaggle": (
            FilePriceSource(
                path=_per_ticker(tmp / "kaggle", kaggle, "{symbol}_data.csv"),
                columns={"symbol": "Name"},
            ),
            pl.col("div_factor"),
            pl.col("div_factor"),
        ),
        "alphavantage": (
            FilePriceSource(
                path=_per_ticker(tmp / "av", alphavantage, "{symbol}.csv.gz"),
                columns={
                    "date": "timestamp",
                    "split": "split_coefficient",
                    "dividend": "dividend_amount",
                },
                symbol_from_filename=True,
            ),
            pl.col("div_factor") / pl.col("split_factor"),
            pl.col("div_factor"),
        ),
        "stooq": (
            FilePriceSource(
                path=str(tmp / "stooq_d_us.txt"),
                columns={
                    "symbol": "<TICKER>",
                    "date": "<DATE>",
                    "open": "<OPEN>",
                    "high": "<HIGH>",
                    "low": "<LOW>",
                    "close": "<CLOSE>",
                    "volume": "<VOL>",
                },
            ),
            pl.col("div_factor") / pl.col("div_factor"),  # 1: Stooq's prices are adjusted
            pl.col("div_factor"),
        ),
        "crsp": (
            FilePriceSource(
                path=str(tmp / "crsp_dsf.csv"),
                columns={
                    "symbol": "TICKER",
                    "open": "OPENPRC",
                    "high": "ASKHI",
                    "low": "BIDLO",
                    "close": "PRC",
                    "volume": "VOL",
                    "price_factor": "CFACPR",
                },
            ),
            1 / pl.col("split_factor"),
            pl.lit(1.0),  # CRSP's CFACPR adjusts for splits, not for cash dividends
        ),
    }


def _ingest(source: FilePriceSource):
    raw = source.load_prices()
    checked = check_prices(raw, RUN)
    panel, basis = reconcile(checked.clean.drop("source_file", "source_row").sort("symbol", "date"))
    return raw, checked, panel


@pytest.mark.parametrize("layout", ["yahoo", "kaggle", "alphavantage", "stooq", "crsp"])
def test_each_documented_layout_ingests_whole_and_on_one_basis(truth, tmp_path, layout):
    source, factor, basis = _layouts(truth, tmp_path)[layout]
    raw, checked, panel = _ingest(source)
    # nothing lost: every row of every file is clean, none quarantined
    assert checked.rows_in == len(truth) == len(checked.clean), checked.violations
    assert checked.quarantine.is_empty()
    # the symbols the layout names (Stooq suffixes the market)
    assert sorted(panel["symbol"].unique()) == (
        ["NDX.US", "SPX.US"] if layout == "stooq" else ["NDX", "SPX"]
    )
    panel = panel.with_columns(pl.col("symbol").str.replace(r"\.US$", ""))
    both = panel.join(
        truth.select("symbol", "date", "div_factor", "split_factor", "close"),
        on=[
            "symbol",
            "date",
        ],
        suffix="_truth",
    )
    assert len(both) == len(truth)
    # the factor applied to the traded close is the vendor's adj_close / close
    applied = (both["close"] / both["raw_close"]).to_numpy()
    assert_allclose(applied, both.select(factor).to_series().to_numpy(), rtol=1e-9)
    # every price on the basis of the adjusted close: the same dividend-adjusted series
    expected = both.select(pl.col("close_truth") * basis).to_series().to_numpy()
    assert_allclose(both["close"].to_numpy(), expected, rtol=1e-9)
    # OHLC consistent after the adjustment
    tol = 1 + 1e-12
    consistent = both.select(
        (pl.col("low") <= pl.min_horizontal("open", "close") * tol)
        & (pl.col("high") * tol >= pl.max_horizontal("open", "close"))
    )
    assert consistent.to_series().all()
    # dollar volume as traded (what a liquidity screen reads), whatever the basis
    traded = truth.join(both.select("symbol", "date", "dollar_volume"), on=["symbol", "date"])
    assert_allclose(
        traded["dollar_volume"].to_numpy(), (traded["close"] * traded["volume"]).to_numpy(), 1e-9
    )
    # the mapping actually used is reported
    assert raw.mapping["close"] in ("close", "<close>", "prc")
    if layout in ("yahoo", "kaggle"):
        assert raw.mapping["adj_close"] == "adj close"


def test_close_mapped_to_adj_close_takes_the_raw_close_beside_it(truth, tmp_path):
    """The README once showed ``close: Adj Close`` for Yahoo: open, high and low were then read
    raw beside an adjusted close and 75 % of a real download failed close >= low. The mapping
    is now read as meant: Adj Close is adj_close, Close the traded close."""
    source, _, _ = _layouts(truth, tmp_path)["yahoo"]
    legacy = source.model_copy(update={"columns": {"close": "Adj Close"}})
    raw, checked, panel = _ingest(legacy)
    assert checked.quarantine.is_empty() and len(checked.clean) == len(truth)
    assert (raw.mapping["close"], raw.mapping["adj_close"]) == ("close", "adj close")
    assert any("taken as adj_close" in n for n in raw.notes)
    _, _, auto = _ingest(source)
    assert_allclose(panel["low"].to_numpy(), auto["low"].to_numpy(), rtol=1e-12)


def test_a_column_is_taken_only_when_mapped_or_unambiguous():
    used, notes = resolve_columns(
        ["date", "open", "high", "low", "adj close", "volume", "symbol"], {"close": "adj close"}
    )
    # an adjusted close with no raw one beside it: the raw open/high/low are left out
    assert used == {"close": "adj close", "symbol": "symbol", "date": "date", "volume": "volume"}
    assert "left out" in notes[0]
    used, notes = resolve_columns(["date", "close", "adj close", "adjusted_close"], {})
    assert "adj_close" not in used and "could each be it" in notes[0]
    used, _ = resolve_columns(["timestamp", "close", "adjusted_close"], {"date": "timestamp"})
    assert used["adj_close"] == "adjusted_close"
