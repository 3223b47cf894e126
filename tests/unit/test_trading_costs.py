"""Corwin-Schultz spreads and Amihud illiquidity against hand computations on real OHLCV
(arch's S&P 500 and NASDAQ index files), point in time; the spread forecast is out of sample
and is charged by the backtest."""

from datetime import date

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose

from models.backtest import Costs, run_backtest
from models.panel import daily_returns
from models.trading_costs import forecast_spreads, spread_estimates


@pytest.fixture(scope="module")
def ohlcv(index_ohlcv) -> pl.DataFrame:
    return index_ohlcv.drop("open").filter(pl.col("date") >= date(2010, 1, 1))


def test_corwin_schultz_and_amihud_by_hand(ohlcv):
    est = spread_estimates(ohlcv).filter(pl.col("symbol") == "SPX").sort("date")
    spx = ohlcv.filter(pl.col("symbol") == "SPX").sort("date").to_pandas()
    spx = spx.set_index(spx["date"].dt.date)
    h, lo = spx["high"].to_numpy(), spx["low"].to_numpy()
    beta = np.log(h[1:] / lo[1:]) ** 2 + np.log(h[:-1] / lo[:-1]) ** 2
    gamma = np.log(np.maximum(h[1:], h[:-1]) / np.minimum(lo[1:], lo[:-1])) ** 2
    k = 3 - 2 * np.sqrt(2)
    alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / k - np.sqrt(gamma / k)
    s = np.maximum(2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha)), 0.0)
    by_date = dict(zip(spx.index[1:], s, strict=True))
    assert_allclose(est["cs_spread"].to_numpy(), [by_date[d] for d in est["date"]], rtol=1e-10)
    ret = spx["close"].pct_change()
    amihud = (ret.abs() / (spx["close"] * spx["volume"]) * 1e6).rolling(20, min_periods=10).mean()
    assert_allclose(est["amihud_20"].to_numpy(), amihud.loc[est["date"].to_list()].to_numpy())
    assert (est["cs_spread"] >= 0).all() and (est["cs_spread"] > 0).mean() > 0.3


def test_estimates_and_forecasts_are_point_in_time(ohlcv):
    cut = date(2014, 6, 30)
    bumped = ohlcv.with_columns(
        pl.when(pl.col("date") > cut).then(pl.col("high") * 1.05).otherwise("high"),
        pl.when(pl.col("date") > cut).then(pl.col("volume") * 9).otherwise("volume"),
    )
    a, b = spread_estimates(ohlcv), spread_estimates(bumped)
    assert a.filter(pl.col("date") <= cut).equals(b.filter(pl.col("date") <= cut))
    fa = forecast_spreads(a, refit_every=126).filter(pl.col("date") <= cut)
    fb = forecast_spreads(b, refit_every=126).filter(pl.col("date") <= cut)
    assert len(fa) > 500
    assert_allclose(fa["spread_forecast"].to_numpy(), fb["spread_forecast"].to_numpy())


def test_backtest_charges_half_the_forecast_spread(ohlcv):
    prices = ohlcv
    returns = daily_returns(prices)
    day = returns["date"].unique().sort()[300]
    weights = pl.DataFrame({"date": [day, day], "symbol": ["SPX", "NDX"], "weight": [0.6, 0.4]})
    trade_day = returns["date"].unique().sort()[301]
    spreads = pl.DataFrame(
        {"date": [trade_day] * 2, "symbol": ["SPX", "NDX"], "spread_forecast": [0.002, 0.004]}
    )
    out = run_backtest(weights, returns, costs=Costs(cost_bps=0), spreads=spreads)
    first = out.filter(pl.col("date") == trade_day)
    assert first["spread"][0] == pytest.approx(0.6 * 0.001 + 0.4 * 0.002)
    assert first["cost"][0] == pytest.approx(first["spread"][0])
