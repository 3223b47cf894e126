"""Each stock's daily trading cost estimated from OHLCV, and forecast one day ahead.

* **Corwin–Schultz (2012) high-low spread**: the high/low range of two consecutive days holds
  volatility twice and the spread once, so their difference isolates the spread. The estimate
  uses days ``t-1`` and ``t`` and is dated ``t`` (known at ``t``'s close); negative estimates,
  common on quiet days, are set to zero as in the paper.
* **Amihud (2002) illiquidity**: ``|return| / dollar volume``, the price move per unit traded.

No order book is available (none ships with a package, and the ingest reads daily bars), so
these low-frequency proxies stand in for it; a level-2 source would replace the estimates, not
the forecast or the cost model. The forecast is a LightGBM regression of tomorrow's spread on
today's and recent estimates, fitted only on days before each prediction block.
"""

import lightgbm as lgb
import numpy as np
import polars as pl

from models.types import DATE, SYMBOL

_K = 3 - 2 * np.sqrt(2)
COST_FEATURES = ("cs_spread", "cs_spread_5", "cs_spread_20", "amihud_20", "range_20", "logdv_20")


def spread_estimates(prices: pl.DataFrame, window: int = 20) -> pl.DataFrame:
    """``[symbol, date, cs_spread, cs_spread_5, cs_spread_20, amihud_20, range_20, logdv_20]``
    from ``[symbol, date, high, low, close, volume]``; every value uses days up to its date."""
    hl = (pl.col("high") / pl.col("low")).log() ** 2
    beta = hl + hl.shift(1)
    gamma = (
        pl.max_horizontal("high", pl.col("high").shift(1))
        / pl.min_horizontal("low", pl.col("low").shift(1))
    ).log() ** 2
    alpha = ((2 * beta).sqrt() - beta.sqrt()) / _K - (gamma / _K).sqrt()
    spread = (2 * (alpha.exp() - 1) / (1 + alpha.exp())).clip(lower_bound=0.0)
    ret = pl.col("close") / pl.col("close").shift(1) - 1
    dollar = pl.col("close") * pl.col("volume")
    over = dict(window_size=window, min_samples=window // 2)
    return (
        prices.sort(SYMBOL, DATE)
        .with_columns(
            spread.over(SYMBOL).alias("cs_spread"),
            (ret.abs() / dollar * 1e6).over(SYMBOL).alias("_amihud"),
            (pl.col("high") / pl.col("low")).log().alias("_range"),
            dollar.log().alias("_logdv"),
        )
        .select(
            SYMBOL,
            DATE,
            "cs_spread",
            pl.col("cs_spread").rolling_mean(5, min_samples=3).over(SYMBOL).alias("cs_spread_5"),
            pl.col("cs_spread").rolling_mean(**over).over(SYMBOL).alias("cs_spread_20"),
            pl.col("_amihud").rolling_mean(**over).over(SYMBOL).alias("amihud_20"),
            pl.col("_range").rolling_mean(**over).over(SYMBOL).alias("range_20"),
            pl.col("_logdv").rolling_mean(**over).over(SYMBOL).alias("logdv_20"),
        )
        .drop_nulls()
        .filter(pl.all_horizontal(pl.col(c).is_finite() for c in COST_FEATURES))
    )


def forecast_spreads(
    estimates: pl.DataFrame, refit_every: int = 252, min_train_days: int = 252, seed: int = 0
) -> pl.DataFrame:
    """``[symbol, date, spread_forecast, spread_realised, spread_naive]``: the Corwin–Schultz
    spread of ``date`` forecast at the previous trading day's close by LightGBM (refitted every
    ``refit_every`` days on all earlier days whose target was already known), the estimate
    realised on ``date``, and the naive forecast (the previous day's 5-day mean) to compare."""
    frame = estimates.sort(SYMBOL, DATE).with_columns(
        pl.col("cs_spread").shift(-1).over(SYMBOL).alias("target"),
        pl.col(DATE).shift(-1).over(SYMBOL).alias("target_date"),
    )
    dates = frame[DATE].unique().sort()
    starts = dates[min_train_days::refit_every]
    parts = []
    for i, start in enumerate(starts):  # one fit per block of dates, not per row
        end = starts[i + 1] if i + 1 < len(starts) else None
        train = frame.filter((pl.col("target_date") < start) & pl.col("target").is_not_null())
        block = frame.filter(
            (pl.col(DATE) >= start) & ((pl.col(DATE) < end) if end is not None else True)
        )
        model = lgb.LGBMRegressor(
            n_estimators=200, learning_rate=0.05, num_leaves=15, random_state=seed, verbose=-1
        ).fit(train.select(COST_FEATURES).to_numpy(), train["target"].to_numpy())
        parts.append(
            block.select(
                SYMBOL,
                DATE,
                pl.Series(
                    "spread_forecast",
                    np.clip(model.predict(block.select(COST_FEATURES).to_numpy()), 0.0, None),
                ),
                pl.col("target").alias("spread_realised"),
                pl.col("cs_spread_5").alias("spread_naive"),
                "target_date",
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={
                SYMBOL: pl.String,
                DATE: pl.Date,
                "spread_forecast": pl.Float64,
                "spread_realised": pl.Float64,
                "spread_naive": pl.Float64,
            }
        )
    # dated by the day the forecast is for (the next trading day of the symbol)
    return (
        pl.concat(parts)
        .drop_nulls("target_date")
        .drop(DATE)
        .rename({"target_date": DATE})
        .select(SYMBOL, DATE, "spread_forecast", "spread_realised", "spread_naive")
    )
