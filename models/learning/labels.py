"""Labels, each row carrying the date its horizon ends (``label_end``, used to purge CV).

- ``forward``: close[t + h] / close[t] - 1.
- ``excess``: the forward return minus the market's (the S&P 500 series) over the same dates.
- ``triple_barrier``: +1 if the price first touches an upper barrier, -1 a lower one, else the
  sign of the return at the vertical barrier t + h (0 if flat); barriers at
  ±``barrier_k`` x the trailing ``vol_window``-day volatility scaled to the horizon. ``label_end``
  is the touch date (or t + h).

A cross-sectional rank of any of them is the ``rank`` training target (``models/learning/dataset.py``).

A label whose horizon spans a hole in the symbol's history (a delisting and relisting, a year
the vendor lost) is no ``horizon``-day label: with ``max_gap_days`` given, a label whose
``horizon`` rows span more than ``horizon + max_gap_days`` business days is dropped. Left in,
one such label once stretched over 396 business days and, as the longest horizon seen, set the
purge of every fold.
"""

import polars as pl

from models.types import CLOSE, DATE, KEYS, SYMBOL

LABEL_KINDS = ("forward", "excess", "triple_barrier")


def _check(horizon: int) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 trading day, got {horizon}")


def _spans_gap(horizon: int, max_gap_days: int | None) -> pl.Expr:
    """True where the ``horizon`` rows ahead of a row span more than ``horizon +
    max_gap_days`` business days (never, without ``max_gap_days``)."""
    if max_gap_days is None:
        return pl.lit(False)
    ahead = pl.col(DATE).shift(-horizon).over(SYMBOL)
    return pl.business_day_count(pl.col(DATE), ahead) > horizon + max_gap_days


def forward_returns(
    prices: pl.LazyFrame, horizon: int = 5, skip: int = 0, *, max_gap_days: int | None = None
) -> pl.LazyFrame:
    """``label`` = close[t + skip + horizon] / close[t + skip] - 1 per symbol, ``label_end`` =
    date[t + skip + horizon]. ``skip = 1`` is the return a book earns when it trades at the next
    close (Qlib's ``Ref($close, -2) / Ref($close, -1) - 1``).

    The last ``skip + horizon`` rows of each symbol have no label and are dropped: they are not
    training data, and the live prediction uses features alone. So are labels spanning a gap
    (``max_gap_days``, see the module docstring).
    """
    _check(horizon)
    if skip < 0:
        raise ValueError(f"skip must be >= 0 trading days, got {skip}")
    close = pl.col(CLOSE)
    return (
        prices.sort(KEYS)
        .select(
            SYMBOL,
            DATE,
            pl.when(~_spans_gap(horizon + skip, max_gap_days))
            .then((close.shift(-horizon - skip) / close.shift(-skip) - 1).over(SYMBOL))
            .alias("label"),
            pl.col(DATE).shift(-horizon - skip).over(SYMBOL).alias("label_end"),
        )
        .drop_nulls("label")
    )


def excess_returns(
    prices: pl.LazyFrame,
    market: pl.LazyFrame,
    horizon: int = 5,
    max_gap_days: int | None = None,
) -> pl.LazyFrame:
    """Forward return minus the market's forward return over the same dates.

    ``market`` is ``[date, close]`` of the benchmark; rows whose dates the market lacks drop out.
    """
    stock = forward_returns(prices, horizon, max_gap_days=max_gap_days)
    bench = market.select(DATE, CLOSE).sort(DATE)
    start = bench.rename({CLOSE: "_m0"})
    end = bench.rename({DATE: "label_end", CLOSE: "_m1"})
    return (
        stock.join(start, on=DATE, how="inner")
        .join(end, on="label_end", how="inner")
        .with_columns((pl.col("label") - (pl.col("_m1") / pl.col("_m0") - 1)).alias("label"))
        .select(SYMBOL, DATE, "label", "label_end")
        .sort(KEYS)
    )


def triple_barrier(
    prices: pl.LazyFrame,
    horizon: int = 5,
    barrier_k: float = 2.0,
    vol_window: int = 20,
    max_gap_days: int | None = None,
) -> pl.LazyFrame:
    """Triple-barrier labels (López de Prado, AFML ch. 3), vectorised over the ``horizon`` days.

    The barrier width uses volatility known at t only: the std of daily log returns over the
    ``vol_window`` days up to t, times sqrt(horizon).
    """
    _check(horizon)
    close = pl.col(CLOSE)
    width = barrier_k * close.log().diff().rolling_std(vol_window) * horizon**0.5
    ahead = {k: (close.shift(-k) / close - 1).over(SYMBOL) for k in range(1, horizon + 1)}
    dates = {k: pl.col(DATE).shift(-k).over(SYMBOL) for k in range(1, horizon + 1)}
    first_up = pl.min_horizontal(*(pl.when(r >= pl.col("_w")).then(k) for k, r in ahead.items()))
    first_down = pl.min_horizontal(*(pl.when(r <= -pl.col("_w")).then(k) for k, r in ahead.items()))
    up_first = first_up.is_not_null() & (first_down.is_null() | (first_up < first_down))
    down_first = first_down.is_not_null() & (first_up.is_null() | (first_down < first_up))
    touch = pl.when(up_first).then(first_up).when(down_first).then(first_down).otherwise(horizon)
    end = pl.coalesce(*(pl.when(touch == k).then(d) for k, d in dates.items()))
    label = pl.when(up_first).then(1.0).when(down_first).then(-1.0).otherwise(ahead[horizon].sign())
    return (
        prices.sort(KEYS)
        .with_columns(width.over(SYMBOL).alias("_w"))
        .select(
            SYMBOL,
            DATE,
            label.alias("label"),
            end.alias("label_end"),
            ahead[horizon].alias("_last"),
            "_w",
            _spans_gap(horizon, max_gap_days).alias("_gap"),
        )
        # no label without a full horizon ahead, nor without a volatility estimate for the
        # barriers, nor across a hole in the history
        .filter(pl.col("_last").is_not_null() & pl.col("_w").is_not_null() & ~pl.col("_gap"))
        .drop("_last", "_w", "_gap")
    )
