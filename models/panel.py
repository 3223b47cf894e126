"""Reshaping helpers between wide vendor tables and the long ``[symbol, date, ...]`` panel."""

import pandas as pd
import polars as pl

from models.types import DATE, SYMBOL


def wide_to_long(wide: pd.DataFrame, value_name: str, name: str = SYMBOL) -> pl.DataFrame:
    """Turn a date-indexed wide table (one column per symbol) into a sorted long panel.

    Rows whose value is missing (a stock not yet listed) are dropped rather than kept as nulls.
    """
    frame = pl.from_pandas(wide.rename_axis(DATE).reset_index())
    return (
        frame.with_columns(pl.col(DATE).cast(pl.Date))
        .unpivot(index=DATE, variable_name=name, value_name=value_name)
        .drop_nulls(value_name)
        .select(name, DATE, pl.col(value_name).cast(pl.Float64))
        .sort(name, DATE)
    )


def daily_returns(prices: pl.DataFrame) -> pl.DataFrame:
    """Simple close-to-close returns ``[symbol, date, ret]`` (a symbol's first day dropped)."""
    return (
        prices.sort(SYMBOL, DATE)
        .select(
            SYMBOL, DATE, (pl.col("close") / pl.col("close").shift(1) - 1).over(SYMBOL).alias("ret")
        )
        .drop_nulls("ret")
    )
