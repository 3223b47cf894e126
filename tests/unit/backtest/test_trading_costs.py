"""Spread estimators (EDGE from bidask, Corwin-Schultz, Abdi-Ranaldo) and Amihud illiquidity
against the library and hand computations on real OHLCV (arch's S&P 500 and NASDAQ index
files), point in time; the spread forecast is out of sample and is charged by the backtest,
within its floor and cap."""

from datetime import date

import numpy as np
import pandas as pd
import polars as pl
import pytest
from numpy.testing import assert_allclose

from models.backtest.costs import forecast_spreads, spread_estimates
from models.backtest.engine import Costs, run_backtest
from models.data.panel import daily_returns


@pytest.fixture(scope="module")
def ohlcv(index_ohlcv) -> pl.DataFrame:
    return index_ohlcv.filter(pl.col("date") >= date(2010, 1, 1))


def _spx(ohlcv):
    spx = ohlcv.filter(pl.col("symbol") == "SPX").sort("date").to_pandas()
    return spx.set_index(spx["date"].dt.date)


def test_corwin_schultz_abdi_ranaldo_and_amihud_by_hand(ohlcv):
    spx = _spx(ohlcv)
    h, lo, c = (spx[k].to_numpy() for k in ("high", "low", "close"))
    beta = np.log(h[1:] / lo[1:]) ** 2 + np.log(h[:-1] / lo[:-1]) ** 2
    gamma = np.log(np.maximum(h[1:], h[:-1]) / np.minimum(lo[1:], lo[:-1])) ** 2
    k = 3 - 2 * np.sqrt(2)
    alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / k - np.sqrt(gamma / k)
    daily = pd.Series(np.maximum(2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha)), 0.0), spx.index[1:])
    cs = daily.rolling(20, min_periods=10).mean()
    est = spread_estimates(ohlcv, estimator="corwin_schultz")
    est = est.filter(pl.col("symbol") == "SPX").sort("date")
    assert_allclose(est["spread"].to_numpy(), cs.loc[est["date"].to_list()].to_numpy(), rtol=1e-10)
    # Abdi-Ranaldo: 4 (c - m)(c - m_next) in logs, window mean floored at zero, square root
    mid = (np.log(h) + np.log(lo)) / 2
    prod = pd.Series(4 * (np.log(c[:-1]) - mid[:-1]) * (np.log(c[:-1]) - mid[1:]), spx.index[1:])
    ar = np.sqrt(prod.rolling(20, min_periods=10).mean().clip(lower=0))
    est = spread_estimates(ohlcv, estimator="abdi_ranaldo")
    est = est.filter(pl.col("symbol") == "SPX").sort("date")
    assert_allclose(est["spread"].to_numpy(), ar.loc[est["date"].to_list()].to_numpy(), rtol=1e-10)
    ret = spx["close"].pct_change()
    amihud = (ret.abs() / (spx["close"] * spx["volume"]) * 1e6).rolling(20, min_periods=10).mean()
    assert_allclose(est["amihud_20"].to_numpy(), amihud.loc[est["date"].to_list()].to_numpy())


def test_edge_is_the_bidask_estimator_averaged_over_a_year(ohlcv):
    from bidask import edge

    est = spread_estimates(ohlcv).filter(pl.col("symbol") == "SPX").sort("date")
    spx = _spx(ohlcv)
    day = est["date"][400]
    end = spx.index.get_loc(day) + 1
    # the recent estimate: the authors' EDGE, signed, on the 20 days up to the date
    window = spx.iloc[end - 20 : end]
    expected = edge(window.open, window.high, window.low, window.close, sign=True)
    assert est.filter(pl.col("date") == day)["spread_5"][0] == pytest.approx(expected, rel=1e-9)
    # the charged estimate: its mean over the year up to the date
    recent = est.filter(pl.col("date") <= day).tail(252)["spread_5"]
    assert est.filter(pl.col("date") == day)["spread"][0] == pytest.approx(recent.mean(), rel=1e-9)


def test_estimates_and_forecasts_are_point_in_time(ohlcv):
    cut = date(2014, 6, 30)
    bumped = ohlcv.with_columns(
        pl.when(pl.col("date") > cut).then(pl.col("high") * 1.05).otherwise("high"),
        pl.when(pl.col("date") > cut).then(pl.col("volume") * 9).otherwise("volume"),
    )
    for estimator in ("edge", "corwin_schultz"):
        a = spread_estimates(ohlcv, estimator=estimator)
        b = spread_estimates(bumped, estimator=estimator)
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
    # the floor and the cap hold the half-spread charged: 0.1 % and 0.2 % become 12 and 15 bp
    costs = Costs(cost_bps=0, spread_floor_bps=12, spread_cap_bps=15)
    out = run_backtest(weights, returns, costs=costs, spreads=spreads)
    first = out.filter(pl.col("date") == trade_day)
    assert first["spread"][0] == pytest.approx(0.6 * 0.0012 + 0.4 * 0.0015)


def test_sales_pay_their_own_rate(ohlcv):
    returns = daily_returns(ohlcv)
    days = returns["date"].unique().sort()
    weights = pl.DataFrame(
        {
            "date": [days[300], days[300], days[310]],
            "symbol": ["SPX", "NDX", "SPX"],
            "weight": [0.5, 0.5, 1.0],
        }
    )
    out = run_backtest(weights, returns, costs=Costs(cost_bps=5, sell_bps=15))
    first, second = out.filter(pl.col("turnover") > 0).sort("date").head(2).iter_rows(named=True)
    assert first["commission"] == pytest.approx(5e-4)  # all bought
    sold = second["turnover"] / 2  # NDX sold, SPX bought back to 1: equal legs
    assert second["commission"] == pytest.approx(sold * 15e-4 + sold * 5e-4)
