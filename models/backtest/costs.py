"""Each stock's daily trading cost estimated from OHLCV, and forecast one day ahead.

Three estimators of the bid-ask spread from daily bars (``SPREAD_ESTIMATORS``), each over the
``window`` days up to a date (known at its close):

* **EDGE** (Ardia, Guidotti & Kroencke 2024, JFE, "Efficient estimation of bid-ask spreads
  from open, high, low, and close prices"), the default: the authors' ``bidask`` package
  (``edge_rolling``), which uses the open as well as the range and is unbiased where the
  others are not; on S&P 500 names it reads a few basis points, as their quotes do.
* **Corwin-Schultz (2012) high-low spread**: the high/low range of two consecutive days holds
  volatility twice and the spread once, so their difference isolates the spread; negative
  two-day estimates, common on quiet days, are set to zero as in the paper, then averaged.
  Its bias on liquid stocks is large (about 60 bp on the shared S&P 500 set).
* **Abdi-Ranaldo (2017) close-high-low spread**: ``s^2 = 4 E[(c_t - m_t)(c_t - m_{t+1})]``
  with ``m`` the mid-range, in logs; the window mean of the products, floored at zero, square
  rooted (their "monthly corrected" form). Neither ``bidask`` nor another maintained package
  has these two, so they are written here (vectorised polars).

Plus **Amihud (2002) illiquidity** ``|return| / dollar volume`` and the range and volume as
forecast inputs. No order book is available (none ships with a package, and the ingest reads
daily bars), so these proxies stand in for it; a level-2 source (issue 26) would register
another spread source, not change the forecast or the cost model. The forecast is a LightGBM
regression of the next day's estimate on today's inputs, fitted only on days before each
prediction block.
"""

from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
import polars as pl
from bidask import edge_rolling

from models.types import DATE, SYMBOL

_K = 3 - 2 * np.sqrt(2)
COST_FEATURES = ("spread", "spread_5", "amihud_20", "range_20", "logdv_20")


def corwin_schultz_daily(prices: pl.DataFrame) -> pl.DataFrame:
    """``[symbol, date, _cs]``: each day's Corwin-Schultz spread, from its bar and the day
    before's (floored at zero), before any window mean."""
    hl = (pl.col("high") / pl.col("low")).log() ** 2
    beta = hl + hl.shift(1)
    gamma = (
        pl.max_horizontal("high", pl.col("high").shift(1))
        / pl.min_horizontal("low", pl.col("low").shift(1))
    ).log() ** 2
    alpha = ((2 * beta).sqrt() - beta.sqrt()) / _K - (gamma / _K).sqrt()
    daily = (2 * (alpha.exp() - 1) / (1 + alpha.exp())).clip(lower_bound=0.0)
    return prices.sort(SYMBOL, DATE).select(SYMBOL, DATE, daily.over(SYMBOL).alias("_cs"))


def _corwin_schultz(prices: pl.DataFrame, window: int) -> pl.DataFrame:
    return corwin_schultz_daily(prices).select(
        SYMBOL,
        DATE,
        pl.col("_cs").rolling_mean(window, min_samples=window // 2).over(SYMBOL).alias("spread"),
        pl.col("_cs").rolling_mean(5, min_samples=3).over(SYMBOL).alias("spread_5"),
    )


def _abdi_ranaldo(prices: pl.DataFrame, window: int) -> pl.DataFrame:
    c, mid = pl.col("close").log(), (pl.col("high").log() + pl.col("low").log()) / 2
    # dated t: the close and mid-range of t-1 against the mid-range of t
    product = (4 * (c.shift(1) - mid.shift(1)) * (c.shift(1) - mid)).over(SYMBOL)

    def corrected(n: int, least: int) -> pl.Expr:
        mean = pl.col("_ar").rolling_mean(n, min_samples=least).over(SYMBOL)
        return mean.clip(lower_bound=0.0).sqrt()

    return prices.with_columns(product.alias("_ar")).select(
        SYMBOL,
        DATE,
        corrected(window, window // 2).alias("spread"),
        corrected(5, 3).alias("spread_5"),
    )


def _edge(prices: pl.DataFrame, window: int) -> pl.DataFrame:
    # On a 20-day window EDGE is noisy for liquid names (its squared spread is negative in about
    # 45 % of S&P 500 windows, 2016-2021); its authors keep the signed estimates and average
    # them. So: signed estimates over ``window`` days (spread_5 reuses the name for the recent
    # one), averaged over the year up to the date. The charge is floored in the cost model.
    parts = []
    # bidask works on one series at a time (pandas rolling means of its moment terms): one call
    # per symbol, not per row
    for (symbol,), part in prices.group_by(SYMBOL, maintain_order=True):
        ohlc = part.select("open", "high", "low", "close").to_pandas()
        recent = _finite(edge_rolling(ohlc, window, sign=True, min_periods=window // 2))
        parts.append(pl.DataFrame({SYMBOL: symbol, DATE: part[DATE], "spread_5": recent}))
    year = pl.col("spread_5").rolling_mean(EDGE_AVERAGE, min_samples=EDGE_AVERAGE // 4)
    if not parts:
        schema = {SYMBOL: pl.String, DATE: pl.Date, "spread_5": pl.Float64}
        return pl.DataFrame(schema=schema).with_columns(spread=pl.lit(None, pl.Float64))
    return pl.concat(parts).with_columns(year.over(SYMBOL).alias("spread"))


EDGE_AVERAGE = 252  # days of signed EDGE estimates averaged into the charged spread


def _finite(series: pd.Series) -> np.ndarray:
    values = series.to_numpy(dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


SPREAD_ESTIMATORS: dict[str, Callable[[pl.DataFrame, int], pl.DataFrame]] = {
    "edge": _edge,
    "corwin_schultz": _corwin_schultz,
    "abdi_ranaldo": _abdi_ranaldo,
}


def spread_estimates(
    prices: pl.DataFrame, window: int = 20, estimator: str = "edge"
) -> pl.DataFrame:
    """``[symbol, date, spread, spread_5, amihud_20, range_20, logdv_20]`` from ``[symbol, date,
    open, high, low, close, volume]`` (Corwin-Schultz and Abdi-Ranaldo need no open): the
    ``estimator``'s spread over the ``window`` days up to each date and over 5 days, and
    liquidity inputs over ``window`` days; every value uses days up to its date."""
    if estimator not in SPREAD_ESTIMATORS:
        raise ValueError(
            f"unknown spread estimator {estimator!r}; known: {sorted(SPREAD_ESTIMATORS)}"
        )
    prices = prices.sort(SYMBOL, DATE)
    spread = SPREAD_ESTIMATORS[estimator](prices, window)
    ret = pl.col("close") / pl.col("close").shift(1) - 1
    dollar = pl.col("close") * pl.col("volume")
    over = dict(window_size=window, min_samples=window // 2)
    liquid = prices.with_columns(
        (ret.abs() / dollar * 1e6).over(SYMBOL).alias("_amihud"),
        (pl.col("high") / pl.col("low")).log().alias("_range"),
        dollar.log().alias("_logdv"),
    ).select(
        SYMBOL,
        DATE,
        pl.col("_amihud").rolling_mean(**over).over(SYMBOL).alias("amihud_20"),
        pl.col("_range").rolling_mean(**over).over(SYMBOL).alias("range_20"),
        pl.col("_logdv").rolling_mean(**over).over(SYMBOL).alias("logdv_20"),
    )
    return (
        spread.join(liquid, on=[SYMBOL, DATE])
        .select(SYMBOL, DATE, *COST_FEATURES)
        .drop_nulls()
        .filter(pl.all_horizontal(pl.col(c).is_finite() for c in COST_FEATURES))
        .sort(SYMBOL, DATE)
    )


def forecast_spreads(
    estimates: pl.DataFrame,
    refit_every: int = 252,
    min_train_days: int = 252,
    seed: int = 0,
    n_jobs: int = 1,
) -> pl.DataFrame:
    """``[symbol, date, spread_forecast, spread_realised, spread_naive]``: the estimated spread
    of ``date`` forecast at the previous trading day's close by LightGBM (refitted every
    ``refit_every`` days on all earlier days whose target was already known), the estimate
    realised on ``date``, and the naive forecast (the previous day's estimate) to compare."""
    frame = estimates.sort(SYMBOL, DATE).with_columns(
        pl.col("spread").shift(-1).over(SYMBOL).alias("target"),
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
            n_estimators=200,
            learning_rate=0.05,
            num_leaves=15,
            random_state=seed,
            verbose=-1,
            n_jobs=n_jobs,
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
                pl.col("spread").alias("spread_naive"),
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


@dataclass(frozen=True)
class CostSpec:
    """What a unit traded costs, as the experiment file says it (the same names): a commission
    on buys (``cost_bps``) and sales (``sell_cost_bps``, default the same), plus half the
    forecast spread of the estimator ``costs`` (or ``none``), held within
    ``[spread_floor_bps, spread_cap_bps]``."""

    cost_bps: float = 10.0
    sell_cost_bps: float | None = None
    costs: str = "edge"
    spread_floor_bps: float = 1.0
    spread_cap_bps: float = 50.0

    @property
    def commission(self) -> float:
        """The mean of the buy and sell commissions, per unit traded."""
        sell = self.cost_bps if self.sell_cost_bps is None else self.sell_cost_bps
        return (self.cost_bps + sell) / 2 / 1e4

    def needs(self) -> tuple[str, ...]:
        """The price columns its spread estimator reads besides the close."""
        return ("high", "low", "volume") + (("open",) if self.costs == "edge" else ())


def has_ohlcv(prices: pl.DataFrame) -> dict[str, bool]:
    """Which of the optional price columns carry data."""
    return {
        c: c in prices.columns and prices[c].is_not_null().any()
        for c in ("open", "high", "low", "volume")
    }


def _spread_inputs(prices: pl.DataFrame, spec: CostSpec) -> pl.DataFrame | None:
    has = has_ohlcv(prices)
    if spec.costs == "none" or not all(has[c] for c in spec.needs()):
        return None
    return prices.drop_nulls([c for c in spec.needs() if c != "volume"])


def spread_forecasts(prices: pl.DataFrame, spec: CostSpec) -> pl.DataFrame | None:
    """``[symbol, date, spread_forecast, ...]`` from the spread source ``spec.costs``, or None
    when it is ``none`` or the prices lack its columns."""
    usable = _spread_inputs(prices, spec)
    if usable is None:
        return None
    return forecast_spreads(spread_estimates(usable, estimator=spec.costs))


def cost_rates(prices: pl.DataFrame, dates: pl.Series, spec: CostSpec) -> pl.DataFrame:
    """``[date, symbol, cost]``: the expected cost per unit traded on each of ``dates`` (the mean
    of the buy and sell commissions plus the floored and capped forecast half-spread), as the
    backtest will charge it, for the cost-aware books."""
    spreads = spread_forecasts(prices, spec)
    names = prices.select("symbol").unique()
    grid = names.join(pl.DataFrame({"date": dates}), how="cross")
    if spreads is None:
        return grid.with_columns(cost=pl.lit(spec.commission)).select("date", "symbol", "cost")
    half = (0.5 * pl.col("spread_forecast")).clip(
        spec.spread_floor_bps / 1e4, spec.spread_cap_bps / 1e4
    )
    return (
        grid.join(
            spreads.select("symbol", "date", half.alias("half")), on=["symbol", "date"], how="left"
        )
        .with_columns(cost=spec.commission + pl.col("half").fill_null(spec.spread_floor_bps / 1e4))
        .select("date", "symbol", "cost")
    )


def row_costs(prices: pl.DataFrame, keys: pl.DataFrame, spec: CostSpec) -> np.ndarray:
    """The cost per unit traded of each ``[symbol, date]`` row of ``keys``: the mean commission
    plus the floored and capped half of the spread estimate known at that date (the estimate
    the backtest's forecast tracks), for the net-return tuning objective."""
    floor, cap = spec.spread_floor_bps / 1e4, spec.spread_cap_bps / 1e4
    usable = _spread_inputs(prices, spec)
    if usable is None:
        return np.full(len(keys), spec.commission + floor * (spec.costs != "none"))
    half = spread_estimates(usable, estimator=spec.costs).select(
        "symbol", "date", (0.5 * pl.col("spread")).clip(floor, cap).alias("half")
    )
    joined = keys.join(half, on=["symbol", "date"], how="left", maintain_order="left")
    return (spec.commission + joined["half"].fill_null(floor)).to_numpy()
