"""Alternative and market series (index, factor ETFs, VIX, Fama-French) joined point-in-time.

The alternative panel is long: ``[series, kind, date, available_date, value]``. ``date`` is what
the value describes, ``available_date`` when a user could first have known it (a monthly factor
is published weeks after its month ends). Features join on ``available_date`` with a backward
as-of join and a tolerance, so a series that stops is not carried forward as if it were fresh.
"""

from datetime import timedelta

import polars as pl

from models.types import DATE

DAILY_TOLERANCE = timedelta(days=7)
MONTHLY_TOLERANCE = timedelta(days=62)


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
