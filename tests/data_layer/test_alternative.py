"""Alternative data: macro series are usable only after publication, and dated text becomes a
daily Loughran-McDonald score."""

from datetime import date

import polars as pl
import pytest

from data_contracts import ContractViolation
from models.data.sentiment import MARKET, daily_sentiment
from models.features import join_alt_features
from pipelines.sources import BundledAltSource, BundledPriceSource


@pytest.fixture(scope="module")
def alt() -> pl.DataFrame:
    return BundledAltSource().load_alt_data()


def test_bundled_macro_series_are_real_and_lagged(alt):
    series = set(alt["series"])
    assert {"WTI", "VIX", "CORE_CPI_YOY", "BAA_AAA", "FF_Mkt_RF", "SP500"} <= series
    monthly = alt.filter(pl.col("kind") == "monthly")
    # a month's value is known only at the end of the following month
    assert (monthly["available_date"] >= monthly["date"].dt.offset_by("1mo").dt.month_end()).all()
    cpi = alt.filter((pl.col("series") == "CORE_CPI_YOY") & (pl.col("date") == date(2018, 11, 30)))
    assert cpi["value"][0] == pytest.approx(2.24, abs=0.01)  # BLS core CPI, Nov 2018 y/y
    spread = alt.filter((pl.col("series") == "BAA_AAA") & (pl.col("date") == date(2008, 12, 31)))
    assert spread["value"][0] > 2.5  # the 2008 credit-spread peak


def test_monthly_values_never_appear_before_publication(alt):
    prices = (
        BundledPriceSource()
        .load_prices(date(2012, 1, 1), date(2018, 12, 31))
        .frame.filter(pl.col("symbol") == "JPM")
        .select("symbol", "date", "close")
    )
    joined = join_alt_features(prices.lazy(), alt.lazy()).collect()
    cpi = alt.filter(pl.col("series") == "CORE_CPI_YOY").sort("available_date")
    # where each row's value came from: the value's own row in the source series
    source = joined.select("date", "CORE_CPI_YOY").join(
        cpi.select("value", "available_date", described=pl.col("date")),
        left_on="CORE_CPI_YOY",
        right_on="value",
    )
    assert len(source) >= len(joined) * 0.95
    assert (source["available_date"] <= source["date"]).all()  # published before it is used
    # and the lag bites: joining on the period date instead would have used later months
    naive = prices.join_asof(
        cpi.select(pl.col("date").alias("d"), "value"), left_on="date", right_on="d"
    )
    assert (naive["value"] != joined.sort("date")["CORE_CPI_YOY"]).sum() > len(joined) * 0.5


def test_dated_text_becomes_daily_lm_sentiment(tmp_path):
    path = tmp_path / "news.csv"
    pl.DataFrame(
        {
            "date": ["2024-01-05", "2024-01-05", "2024-01-05", "2024-01-08"],
            "ticker": ["AAPL", "AAPL", "", "MSFT"],
            "text": [
                "The company reported a loss and declining sales",
                "Record profit and strong growth",
                "Markets fell as the crisis deepened",
                "The annual meeting is on Tuesday",
            ],
        }
    ).write_csv(path)
    scores = daily_sentiment(BundledAltSource(texts=str(path)).load_texts())
    by = {(r["date"], r["symbol"]): r for r in scores.iter_rows(named=True)}
    aapl = by[(date(2024, 1, 5), "AAPL")]
    assert (aapl["lm_positive"], aapl["lm_negative"], aapl["n_texts"]) == (1, 2, 2)
    assert aapl["lm_polarity"] == pytest.approx(-1 / 3)
    assert aapl["available_date"] == date(2024, 1, 8)  # Friday's news counts from Monday
    assert by[(date(2024, 1, 5), MARKET)]["lm_polarity"] == -1.0
    assert by[(date(2024, 1, 8), "MSFT")]["lm_polarity"] == 0.0  # no LM word: neutral


def test_bad_text_file_is_named(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text("date,ticker,text\n2024-01-05,AAPL,fine\n05/01/2024,AAPL,bad date\n")
    with pytest.raises(
        ContractViolation, match=r"column 'date' must parse as Date: first bad row is row 3"
    ):
        BundledAltSource(texts=str(path)).load_texts()
    path.write_text("day,text\n2024-01-05,x\n")
    with pytest.raises(ContractViolation, match="column 'date' is required"):
        BundledAltSource(texts=str(path)).load_texts()
