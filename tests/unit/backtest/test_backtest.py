from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose

from models.backtest.engine import Costs, liquidity, performance, run_backtest
from models.data.panel import daily_returns, session_returns


def _returns(matrix: np.ndarray) -> pl.DataFrame:
    dates = pl.date_range(date(2020, 1, 1), date(2020, 1, len(matrix)), eager=True)
    return pl.concat(
        pl.DataFrame({"date": dates, "symbol": s, "ret": matrix[:, i]})
        for i, s in enumerate(["A", "B"])
    )


def test_drifting_weights_costs_and_lag_by_hand():
    R = np.array([[0.0, 0.0], [0.10, -0.10], [0.10, 0.00], [0.00, 0.10], [0.05, 0.05]])
    returns = _returns(R)
    weights = pl.DataFrame(
        {"date": [date(2020, 1, 1)] * 2, "symbol": ["A", "B"], "weight": [0.5, 0.5]}
    )
    out = run_backtest(weights, returns, cost_bps=100, lag=1)
    # decided on day 1, traded at day 2's close: the first earned return is day 3's
    assert out["date"][0] == date(2020, 1, 2)
    assert out["turnover"][0] == pytest.approx(1.0)
    assert out["cost"][0] == pytest.approx(0.01)
    # buy-and-hold from day 2: values 0.5*1.1 + 0.5*1.0 then drift
    a = np.cumprod([1.10, 1.00, 1.05])
    b = np.cumprod([1.00, 1.10, 1.05])
    value = 0.5 * a + 0.5 * b
    expected = np.concatenate([[value[0] - 1], value[1:] / value[:-1] - 1])
    assert_allclose(out["gross"].to_numpy()[1:], expected)
    assert_allclose(out["net"].to_numpy(), out["gross"].to_numpy() - out["cost"].to_numpy())


def test_rebalance_turnover_is_measured_against_drifted_weights():
    R = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    weights = pl.DataFrame(
        {
            "date": [date(2020, 1, 1)] * 2 + [date(2020, 1, 3)] * 2,
            "symbol": ["A", "B"] * 2,
            "weight": [0.5] * 4,
        }
    )
    out = run_backtest(weights, _returns(R), cost_bps=0, lag=1)
    # after A doubles, holdings are 2/3, 1/3: back to 1/2 each costs |1/2-2/3| + |1/2-1/3|
    assert out.filter(pl.col("date") == date(2020, 1, 4))["turnover"][0] == pytest.approx(1 / 3)


def test_performance_figures():
    net = np.array([0.01, -0.02, 0.015, 0.0] * 63)
    perf = performance(net)
    assert perf["total_return"] == pytest.approx(np.prod(1 + net) - 1)
    assert perf["annual_return"] == pytest.approx(
        (1 + perf["total_return"]) ** (252 / len(net)) - 1
    )
    assert perf["sharpe"] == pytest.approx(net.mean() / net.std(ddof=1) * np.sqrt(252))
    wealth = np.cumprod(1 + net)
    assert perf["max_drawdown"] == pytest.approx((wealth / np.maximum.accumulate(wealth) - 1).min())


def _panel(n_days: int = 300, n_assets: int = 8, seed: int = 0):
    """Real-looking random prices and volumes, and weekly random long-short targets."""
    rng = np.random.default_rng(seed)
    dates = pl.date_range(
        date(2020, 1, 1), date(2020, 1, 1) + timedelta(days=n_days - 1), eager=True
    )
    symbols = [f"S{i}" for i in range(n_assets)]
    R = rng.normal(0.0003, 0.015, size=(n_days, n_assets))
    close = 50 * np.cumprod(1 + R, axis=0)
    volume = rng.uniform(2e5, 2e6, size=(n_days, n_assets))
    prices = pl.DataFrame(
        {
            "symbol": np.repeat(symbols, n_days),
            "date": np.tile(dates.to_numpy(), n_assets),
            "close": close.T.ravel(),
            "volume": volume.T.ravel(),
        }
    )
    rebal = dates.gather_every(5)
    w = rng.normal(size=(len(rebal), n_assets))
    w /= np.abs(w).sum(axis=1, keepdims=True)
    weights = pl.DataFrame(
        {
            "date": np.repeat(rebal.to_numpy(), n_assets),
            "symbol": symbols * len(rebal),
            "weight": w.ravel(),
        }
    )
    return prices, weights


def test_doubling_the_cost_doubles_the_cost_drag():
    prices, weights = _panel()
    returns = daily_returns(prices)
    one = run_backtest(weights, returns, costs=Costs(cost_bps=10))
    two = run_backtest(weights, returns, costs=Costs(cost_bps=20))
    drag = lambda out: float((out["gross"] - out["net"]).sum())  # noqa: E731
    assert drag(one) > 0
    assert_allclose(drag(two), 2 * drag(one), rtol=1e-12)
    assert_allclose(one["gross"].to_numpy(), two["gross"].to_numpy())


def test_impact_grows_with_the_square_root_of_participation():
    prices, weights = _panel()
    returns, liquid = daily_returns(prices), liquidity(prices)
    base = Costs(cost_bps=0, impact_coef=1.0, capital=1e6)
    out = run_backtest(weights, returns, costs=base, liquid=liquid)
    # four times the capital trades four times the share of each day's volume: twice the cost
    quad = run_backtest(
        weights, returns, costs=Costs(cost_bps=0, impact_coef=1.0, capital=4e6), liquid=liquid
    )
    assert out["impact"].sum() > 0
    assert_allclose(quad["impact"].to_numpy(), 2 * out["impact"].to_numpy(), rtol=1e-12)
    # one trade by hand: the first rebalance buys |w| of each asset from cash
    first = weights.filter(pl.col("date") == weights["date"].min())
    trade_day = returns["date"].unique().sort()[1]  # lag 1
    lq = liquid.filter(pl.col("date") == trade_day).join(first, on="symbol").sort("symbol")
    q = lq["weight"].abs().to_numpy()
    expected = np.sum(q * lq["sigma"].to_numpy() * np.sqrt(q * 1e6 / lq["adv"].to_numpy()))
    assert out.filter(pl.col("date") == trade_day)["impact"][0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="liquidity"):
        run_backtest(weights, returns, costs=base)


def test_liquidity_uses_only_days_before_the_trade():
    prices, _ = _panel(n_days=60, n_assets=2)
    cut = prices["date"].unique().sort()[40]
    bumped = prices.with_columns(
        pl.when(pl.col("date") >= cut).then(pl.col("volume") * 100).otherwise("volume")
    )
    a = liquidity(prices).filter(pl.col("date") <= cut)
    b = liquidity(bumped).filter(pl.col("date") <= cut)
    assert a.equals(b)


def test_borrowing_is_charged_on_short_exposure():
    R = np.zeros((6, 2))
    returns = _returns(R)
    weights = pl.DataFrame(
        {"date": [date(2020, 1, 1)] * 2, "symbol": ["A", "B"], "weight": [1.0, -0.5]}
    )
    out = run_backtest(weights, returns, costs=Costs(cost_bps=0, borrow_bps=252e4 * 0.001))
    # flat prices: the short stays 0.5 of the book; 0.1 % a day of it after the trade day
    assert_allclose(out["borrow"].to_numpy()[1:], 0.5 * 0.001)
    assert out["borrow"][0] == 0


def test_performance_ratios_by_hand():
    net = np.array([0.01, -0.02, 0.015, 0.0, -0.01, 0.02] * 42)
    perf = performance(net)
    downside = np.sqrt(np.mean(np.minimum(net - net.mean(), 0) ** 2 * len(net) / (len(net) - 1)))
    assert perf["sortino"] == pytest.approx(net.mean() / downside * np.sqrt(252), rel=1e-6)
    assert perf["calmar"] == pytest.approx(perf["annual_return"] / -perf["max_drawdown"])
    assert perf["hit_rate"] == pytest.approx(0.5)
    wealth = np.cumprod(1 + net)
    under = wealth < np.maximum.accumulate(wealth)
    longest = max(len(run) for run in "".join("1" if u else "0" for u in under).split("0"))
    assert perf["max_drawdown_days"] == longest


def test_matches_a_day_by_day_loop_including_rebalance_days():
    """Against the loop a notebook would write: each day earns the holdings of the previous
    close (the old book on a trade day), then trades; costs on the trade day."""
    prices, weights = _panel(n_days=120, n_assets=5, seed=3)
    weights = weights.with_columns(pl.col("weight").abs())  # long-only
    weights = weights.with_columns(pl.col("weight") / pl.col("weight").sum().over("date"))
    returns = daily_returns(prices)
    weights = weights.filter(pl.col("date").is_in(returns["date"].implode()))
    out = run_backtest(weights, returns, cost_bps=25, lag=1)
    dates, symbols = returns["date"].unique().sort(), sorted(returns["symbol"].unique())
    R = returns.pivot(on="symbol", index="date", values="ret").sort("date").select(symbols)
    R = R.to_numpy()
    targets = {d: w.sort("symbol")["weight"].to_numpy() for (d,), w in weights.group_by("date")}
    held, pending, net = np.zeros(len(symbols)), None, []
    for t, d in enumerate(dates):
        value = 1.0 + held @ R[t]
        ret = value - 1.0
        held = held * (1 + R[t]) / value
        cost = 0.0
        if pending is not None:
            cost = np.abs(pending - held).sum() * 25 / 1e4
            held, pending = pending, None
        if d in targets:
            pending = targets[d]
        net.append(ret - cost)
    first = int(np.flatnonzero(np.abs(net) > 0)[0])
    assert_allclose(out["net"].to_numpy(), np.array(net)[first:], atol=1e-15)
    assert (out["gross"][1:] != 0).all()  # no day is dropped, rebalance days included


def test_fills_at_the_next_open_match_a_day_by_day_loop():
    """Traded at the open: the old book earns the night (previous close to open), the new book
    the day (open to close); long-short, with costs and borrowing."""
    prices, weights = _panel(n_days=120, n_assets=5, seed=4)
    rng = np.random.default_rng(5)
    prices = prices.with_columns(
        open=pl.col("close").shift(1).over("symbol") * (1 + rng.normal(0, 0.01, prices.height))
    )
    returns = session_returns(prices)
    weights = weights.filter(pl.col("date").is_in(returns["date"].implode()))
    costs = Costs(cost_bps=25, borrow_bps=100)
    out = run_backtest(weights, returns, costs=costs, lag=1, fill="open")
    wide = lambda c: returns.pivot(on="symbol", index="date", values=c).sort("date")  # noqa: E731
    night, day = (wide(c).drop("date").to_numpy() for c in ("overnight", "intraday"))
    dates = wide("ret")["date"]
    targets = {d: w.sort("symbol")["weight"].to_numpy() for (d,), w in weights.group_by("date")}
    held, pending, net = np.zeros(night.shape[1]), None, []
    for t, d in enumerate(dates):
        borrow = -np.minimum(held, 0).sum() * 100 / 1e4 / 252
        v1 = 1.0 + held @ night[t]
        held = held * (1 + night[t]) / v1
        cost = 0.0
        if pending is not None:  # decided yesterday, traded at today's open
            cost = np.abs(pending - held).sum() * 25 / 1e4
            held, pending = pending, None
        v2 = 1.0 + held @ day[t]
        held = held * (1 + day[t]) / v2
        if d in targets:
            pending = targets[d]
        net.append(v1 * v2 - 1.0 - cost - borrow)
    first = int(np.flatnonzero(np.abs(net) > 0)[0])
    assert_allclose(out["net"].to_numpy(), np.array(net)[first:], atol=1e-15)
    # when a day's whole move happens overnight, the open is that day's close: an open fill
    # is a close fill on the same day
    overnight = returns.with_columns(overnight=pl.col("ret"), intraday=pl.lit(0.0))
    at_open = run_backtest(weights, overnight, costs=costs, lag=1, fill="open")
    at_close = run_backtest(weights, overnight, costs=costs, lag=1)
    assert_allclose(at_open.drop("date").to_numpy(), at_close.drop("date").to_numpy(), atol=1e-15)


def test_fills_at_the_open_need_open_prices():
    prices, _ = _panel(n_days=10, n_assets=2)
    with pytest.raises(ValueError, match="open prices"):
        session_returns(prices)


def test_no_trade_band_skips_small_trades_and_keeps_the_book_invested():
    R = np.array([[0.0, 0.0], [0.0, 0.0], [0.02, 0.0], [0.0, 0.0], [0.0, 0.0], [0.01, 0.01]])
    weights = pl.DataFrame(
        {
            "date": [date(2020, 1, 1)] * 2 + [date(2020, 1, 4)] * 2,
            "symbol": ["A", "B"] * 2,
            "weight": [0.5, 0.5, 0.5, 0.5],
        }
    )
    free = run_backtest(weights, _returns(R), cost_bps=0)
    banded = run_backtest(weights, _returns(R), cost_bps=0, band=0.01)
    day = date(2020, 1, 5)
    # A drifted to 0.505: back to 0.5 is a 0.005 trade per leg, under the band
    assert free.filter(pl.col("date") == day)["turnover"][0] == pytest.approx(0.0099, abs=1e-4)
    assert banded.filter(pl.col("date") == day)["turnover"][0] == 0.0
    assert banded["gross"][-1] == pytest.approx(0.01)  # still fully invested


def test_a_wiped_out_book_has_float_figures_not_complex_ones():
    # a long-short book that loses more than everything in a day (a junk price jump): the
    # compounded wealth turns negative, and a negative base to the power 1 / years is complex
    net = np.r_[np.full(100, 0.01), -1.2, np.full(100, 0.01)]
    perf = performance(net, np.ones_like(net))
    assert all(type(v) in (float, int) for v in perf.values()), perf
    assert perf["total_return"] == -1.0 and perf["annual_return"] == -1.0
    assert perf["max_drawdown"] == -1.0 and perf["calmar"] == pytest.approx(-1.0)
    # and one that survives is unchanged
    alive = performance(np.r_[np.full(100, 0.01), -0.5])
    assert alive["total_return"] == pytest.approx(1.01**100 * 0.5 - 1)
