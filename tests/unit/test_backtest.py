from datetime import date

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose

from models.backtest import performance, run_backtest


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
