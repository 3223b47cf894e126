"""Alternative and market series (index, factor ETFs, VIX, Fama-French) joined point-in-time.

The alternative panel is long: ``[series, kind, date, available_date, value]``. ``date`` is what
the value describes, ``available_date`` when a user could first have known it (a monthly factor
is published weeks after its month ends). Features join on ``available_date`` with a backward
as-of join and a tolerance, so a series that stops is not carried forward as if it were fresh.
"""

from datetime import timedelta

import polars as pl

from models.features.registry import describe_rows
from models.types import DATE

ALT_SCHEMA = {
    "series": pl.String,
    "kind": pl.String,
    "date": pl.Date,
    "available_date": pl.Date,
    "value": pl.Float64,
}
DAILY_TOLERANCE = timedelta(days=7)
MONTHLY_TOLERANCE = timedelta(days=62)


def empty_alt() -> pl.DataFrame:
    """An alternative panel with no series (prices-only features)."""
    return pl.DataFrame(schema=ALT_SCHEMA)


def alt_features(alt: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Derive features per series at its own frequency; return (daily, monthly) wide tables.

    ``price`` series give 1/5/20-day returns and 20-day volatility, ``level`` series (VIX) their
    level and 5-day change, ``monthly`` series (Fama-French factors, in percent) their value.
    """
    value = pl.col("value")
    by_series = alt.sort("series", "available_date")
    daily_long = pl.concat(
        [
            by_series.filter(pl.col("kind") == "price").with_columns(
                *(
                    (value / value.shift(h) - 1).over("series").alias(f"ret_{h}")
                    for h in (1, 5, 20)
                ),
                value.log().diff().rolling_std(20).over("series").alias("vol_20"),
            ),
            by_series.filter(pl.col("kind") == "level").with_columns(
                value.alias("level"), value.diff(5).over("series").alias("chg_5")
            ),
        ],
        how="diagonal",
    )
    feature_cols = ["ret_1", "ret_5", "ret_20", "vol_20", "level", "chg_5"]
    daily = _wide(daily_long, feature_cols)
    monthly = _wide(by_series.filter(pl.col("kind") == "monthly").rename({"value": "m"}), ["m"])
    return daily, monthly


def _wide(long: pl.LazyFrame, columns: list[str]) -> pl.LazyFrame:
    """One row per ``available_date``, one column per ``<series>_<feature>`` (nulls dropped)."""
    melted = (
        long.select("series", "available_date", *columns)
        .unpivot(index=["series", "available_date"], variable_name="feature")
        .drop_nulls("value")
    )
    named = melted.with_columns(
        pl.when(pl.col("feature") == "m")
        .then(pl.col("series"))
        .otherwise(pl.concat_str("series", pl.lit("_"), "feature"))
        .alias("name")
    )
    return (
        named.collect()
        .pivot(on="name", index="available_date", values="value", sort_columns=True)
        .sort("available_date")
        .lazy()
    )


def join_alt_features(panel: pl.LazyFrame, alt: pl.LazyFrame) -> pl.LazyFrame:
    """As-of join the alternative features onto the panel by the panel's date."""
    daily, monthly = alt_features(alt)
    out = panel.sort(DATE)
    for table, tolerance in ((daily, DAILY_TOLERANCE), (monthly, MONTHLY_TOLERANCE)):
        out = out.join_asof(
            table.with_columns(pl.col("available_date").alias("_avail")),
            left_on=DATE,
            right_on="_avail",
            strategy="backward",
            tolerance=tolerance,
        ).drop("_avail", "available_date", strict=False)
    return out


SENTIMENT_DAYS = 7  # calendar days of news a sentiment feature sums
MARKET_SYMBOL = "_MARKET"


def sentiment_features(
    keys: pl.LazyFrame, sentiment: pl.LazyFrame, days: int = SENTIMENT_DAYS
) -> pl.LazyFrame:
    """``[symbol, date, sent_polarity_7d, sent_texts_7d, mkt_sent_polarity_7d]`` for the rows of
    ``keys``: Loughran-McDonald polarity ``(P - N) / (P + N)`` and text count over the news that
    became available (``available_date``) in the ``days`` calendar days up to each date; the
    market's from ``_MARKET`` texts. Null polarity where no text arrived.

    Point-in-time by construction: running sums over ``available_date``, read with two backward
    as-of joins (at the date and ``days`` before it), so only news available by the date enters.
    """
    cum = (
        sentiment.group_by("symbol", "available_date")
        .agg(pl.col("lm_positive", "lm_negative", "n_texts").sum())
        .sort("symbol", "available_date")
        .with_columns(pl.col("lm_positive", "lm_negative", "n_texts").cum_sum().over("symbol"))
        .rename({"available_date": DATE})
    )

    def window(frame: pl.LazyFrame, by: str | None, prefix: str) -> pl.LazyFrame:
        on = [by] if by else []
        now = frame.join_asof(cum, on=DATE, by=by, strategy="backward", check_sortedness=False)
        then = frame.with_columns(
            (pl.col(DATE) - pl.duration(days=days)).alias("_start")
        ).join_asof(
            cum.rename({DATE: "_start"}),
            on="_start",
            by=by,
            strategy="backward",
            check_sortedness=False,
        )
        pos = pl.col("lm_positive").fill_null(0) - pl.col("p0").fill_null(0)
        neg = pl.col("lm_negative").fill_null(0) - pl.col("n0").fill_null(0)
        texts = pl.col("n_texts").fill_null(0) - pl.col("t0").fill_null(0)
        return now.join(
            then.select(
                *on,
                DATE,
                pl.col("lm_positive").alias("p0"),
                pl.col("lm_negative").alias("n0"),
                pl.col("n_texts").alias("t0"),
            ),
            on=[*on, DATE],
        ).select(
            *on,
            DATE,
            pl.when(pos + neg > 0)
            .then((pos - neg) / (pos + neg))
            .alias(f"{prefix}polarity_{days}d"),
            texts.alias(f"{prefix}texts_{days}d"),
        )

    keys = keys.select("symbol", DATE).sort("symbol", DATE)
    per_symbol = window(keys, "symbol", "sent_")
    dates = keys.select(DATE).unique().sort(DATE)
    market = window(dates.with_columns(symbol=pl.lit(MARKET_SYMBOL)), "symbol", "mkt_sent_").drop(
        "symbol", "mkt_sent_texts_7d" if days == SENTIMENT_DAYS else f"mkt_sent_texts_{days}d"
    )
    return per_symbol.join(market, on=DATE, how="left").sort("symbol", DATE)


def describe_sentiment(names: list[str], days: int = SENTIMENT_DAYS) -> pl.DataFrame:
    """Registry-shaped rows for the sentiment columns present in ``names``."""
    rows = {
        f"sent_polarity_{days}d": "Loughran-McDonald (P - N) / (P + N) of the symbol's news "
        f"available in the last {days} calendar days",
        f"sent_texts_{days}d": f"number of the symbol's texts available in the last {days} days",
        f"mkt_sent_polarity_{days}d": "the same polarity for market-wide news (no ticker)",
    }
    return describe_rows(
        (n, "sentiment", days, "news_sentiment", d) for n, d in rows.items() if n in names
    )
