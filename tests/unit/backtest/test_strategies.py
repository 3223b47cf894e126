"""The strategy table on real returns: a book that trades on future returns is flagged, a
random-signal book is not significant after deflation, and the columns hold what they say."""

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose

from models.backtest.engine import run_backtest
from models.backtest.strategy_table import TABLE_COLUMNS, strategy_table, top_k_variants
from models.data.panel import daily_returns, wide_to_long
from models.learning.leakage import strategy_leaks
from models.portfolio import rebalance_dates, top_k_weights


@pytest.fixture(scope="module")
def returns() -> pl.DataFrame:
    from skfolio.datasets import load_sp500_dataset

    return daily_returns(wide_to_long(load_sp500_dataset().loc["2015-01-01":], "close"))


def _forward(returns: pl.DataFrame, horizon: int = 5) -> pl.DataFrame:
    """The next ``horizon`` days' compounded return: known only in the future."""
    growth = (1 + pl.col("ret")).log().rolling_sum(horizon).shift(-horizon).over("symbol")
    return (
        returns.sort("symbol", "date").select("date", "symbol", score=growth.exp() - 1).drop_nulls()
    )


def _books(signals: pl.DataFrame, returns: pl.DataFrame, ks=(3, 5), everies=(5, 10)):
    daily = []
    for name, w in top_k_variants(signals, ks, everies):
        daily.append(run_backtest(w, returns, cost_bps=10).with_columns(strategy=pl.lit(name)))
    return pl.concat(daily)


def test_future_returns_are_flagged_and_noise_is_not_significant(returns):
    cheat = _books(_forward(returns), returns)
    table, _ = strategy_table(cheat.filter(pl.col("strategy").str.contains("k=5,")), cheat)
    assert list(table.columns) == list(TABLE_COLUMNS)
    leaks = strategy_leaks(table)
    assert leaks and all(x.kind == "implausible_backtest" for x in leaks)
    assert table["sharpe"].min() > 3

    rng = np.random.default_rng(0)
    noise = returns.select("date", "symbol").with_columns(score=rng.normal(size=len(returns)))
    daily = _books(noise, returns, ks=(3, 5, 8), everies=(5, 10, 21))
    table, pbo = strategy_table(daily, daily, extra_trials=50)
    assert not strategy_leaks(table)
    assert table["dsr"].max() < 0.95  # none of nine random books is significant after deflation
    assert table["n_trials"][0] == 9 + 50
    assert 0.0 <= pbo.pbo <= 1.0 and pbo.n_splits == 12870  # C(16, 8)


def test_gross_and_net_columns(returns):
    rng = np.random.default_rng(1)
    signals = returns.select("date", "symbol").with_columns(score=rng.normal(size=len(returns)))
    w = top_k_weights(signals, rebalance_dates(signals["date"], 5), 5)
    daily = run_backtest(w, returns, cost_bps=20).with_columns(strategy=pl.lit("one"))
    other = run_backtest(w, returns, cost_bps=0).with_columns(strategy=pl.lit("two"))
    table, _ = strategy_table(daily, pl.concat([daily, other]))
    row = table.row(0, named=True)
    assert row["annual_return_gross"] > row["annual_return"]
    assert_allclose(row["cost_drag"], daily["cost"].mean() * 252)
    assert row["sharpe_gross"] > row["sharpe"]


def test_excess_return_and_information_ratio_over_equal_weight(returns):
    from models.portfolio import equal_weights

    rng = np.random.default_rng(2)
    signals = returns.select("date", "symbol").with_columns(score=rng.normal(size=len(returns)))
    dates = rebalance_dates(signals["date"], 5)
    daily = pl.concat(
        [
            run_backtest(top_k_weights(signals, dates, 5), returns, cost_bps=10).with_columns(
                strategy=pl.lit("book")
            ),
            run_backtest(equal_weights(returns, dates), returns, cost_bps=10).with_columns(
                strategy=pl.lit("equal_weight")
            ),
        ]
    )
    table, _ = strategy_table(daily, daily)
    row = table.filter(pl.col("strategy") == "book").row(0, named=True)
    wide = daily.pivot(on="strategy", index="date", values="net").drop_nulls()
    diff = (wide["book"] - wide["equal_weight"]).to_numpy()
    assert_allclose(row["excess_return"], diff.mean() * 252)
    assert_allclose(row["information_ratio"], diff.mean() / diff.std(ddof=1) * np.sqrt(252))
    bench = table.filter(pl.col("strategy") == "equal_weight").row(0, named=True)
    assert bench["excess_return"] == 0.0 and bench["information_ratio"] is None  # not NaN
    assert row["excess_return_gross"] > row["excess_return"]  # the book trades more
