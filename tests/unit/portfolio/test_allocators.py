"""Allocators on real daily returns: eight of skfolio's bundled S&P 500 stocks, 2019-2022."""

from datetime import date

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose

from models.data.panel import daily_returns
from models.portfolio import (
    buy_and_hold,
    cluster_exposure,
    clusters_before,
    correlation_clusters,
    equal_weights,
    hrp_weights,
    mean_variance_weights,
    ml_expected_returns,
    rebalance_dates,
    risk_parity_weights,
    top_k_weights,
)


@pytest.fixture(scope="module")
def returns() -> pl.DataFrame:
    from skfolio.datasets import load_sp500_dataset

    from models.data.panel import wide_to_long

    wide = load_sp500_dataset().iloc[:, :8].loc["2019-01-01":]
    return daily_returns(wide_to_long(wide, "close"))


@pytest.fixture(scope="module")
def signals(returns) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return returns.select("date", "symbol").with_columns(score=rng.normal(size=len(returns)))


def _dates(returns):
    return rebalance_dates(returns["date"].filter(returns["date"] >= date(2020, 6, 1)), 21)


def test_top_k_long_only_and_long_short(signals, returns):
    dates = _dates(returns)
    long = top_k_weights(signals, dates, 3)
    assert long.group_by("date").agg(pl.col("weight").sum())["weight"].to_list() == pytest.approx(
        [1.0] * len(dates)
    )
    ls = top_k_weights(signals, dates, 3, long_short=True)
    per_date = ls.group_by("date").agg(
        pl.col("weight").sum().alias("net"), pl.col("weight").abs().sum().alias("gross")
    )
    assert_allclose(per_date["net"].to_numpy(), 0.0, atol=1e-12)
    assert_allclose(per_date["gross"].to_numpy(), 2.0)
    # the shorts are the lowest scores
    day = dates[0]
    worst = signals.filter(pl.col("date") == day).sort("score").head(3)["symbol"].to_list()
    shorts = ls.filter((pl.col("date") == day) & (pl.col("weight") < 0))["symbol"].to_list()
    assert sorted(worst) == sorted(shorts)


def test_mean_variance_follows_the_forecasts_within_bounds(signals, returns):
    dates = _dates(returns)
    mu = ml_expected_returns(signals, returns, ic=0.05)
    long = mean_variance_weights(returns, dates, mu, max_weight=0.3)
    sums = long.group_by("date").agg(pl.col("weight").sum())["weight"].to_numpy()
    assert_allclose(sums, 1.0, atol=1e-6)
    assert long["weight"].min() >= -1e-6 and long["weight"].max() <= 0.3 + 1e-6
    # the weights lean towards the forecasts: positive correlation with mu on most dates
    joined = long.join(mu, on=["date", "symbol"])
    corr = joined.group_by("date").agg(pl.corr("weight", "mu"))["weight"].drop_nans()
    assert (corr > 0).mean() > 0.8
    ls = mean_variance_weights(returns, dates, mu, max_weight=0.3, long_short=True)
    per_date = ls.group_by("date").agg(pl.col("weight").sum())["weight"].to_numpy()
    assert_allclose(per_date, 0.0, atol=1e-6)
    assert ls["weight"].min() < 0


def test_mean_variance_turnover_cap(signals, returns):
    dates = _dates(returns)
    mu = ml_expected_returns(signals, returns, ic=0.05)
    capped = mean_variance_weights(returns, dates, mu, max_weight=0.3, max_turnover=0.2)
    wide = capped.pivot(on="symbol", index="date", values="weight").fill_null(0.0).sort("date")
    # skfolio's turnover bound is per asset: no weight moves more than 0.2 between rebalances
    changes = np.abs(np.diff(wide.drop("date").to_numpy(), axis=0))
    assert changes.max() <= 0.2 + 1e-4
    free = mean_variance_weights(returns, dates, mu, max_weight=0.3)
    wide = free.pivot(on="symbol", index="date", values="weight").fill_null(0.0).sort("date")
    assert np.abs(np.diff(wide.drop("date").to_numpy(), axis=0)).max() > 0.2


def test_risk_parity_equalises_risk_contributions(returns):
    dates = _dates(returns).head(3)
    weights = risk_parity_weights(returns, dates, lookback=252)
    from sklearn.covariance import LedoitWolf

    from models.data.panel import to_dense

    all_dates, symbols, R = to_dense(returns, "ret")
    day = dates[0]
    w = weights.filter(pl.col("date") == day).sort("symbol")
    end = np.searchsorted(all_dates, np.datetime64(day), side="right")
    window = R[end - 252 : end][:, np.isin(symbols, w["symbol"].to_numpy())]
    cov = LedoitWolf().fit(window).covariance_
    x = w["weight"].to_numpy()
    contributions = x * (cov @ x)
    assert_allclose(contributions / contributions.sum(), 1 / len(x), rtol=0.02)


def test_hrp_and_benchmarks_are_fully_invested(returns):
    dates = _dates(returns)
    for frame in (hrp_weights(returns, dates), equal_weights(returns, dates)):
        sums = frame.group_by("date").agg(pl.col("weight").sum())["weight"].to_numpy()
        assert_allclose(sums, 1.0, atol=1e-9)
    hold = buy_and_hold(returns, dates)
    assert hold["date"].n_unique() == 1


def test_expected_returns_are_point_in_time(signals, returns):
    cut = date(2020, 9, 1)
    a = ml_expected_returns(signals, returns, ic=0.05).filter(pl.col("date") <= cut)
    bumped = returns.with_columns(
        pl.when(pl.col("date") > cut).then(pl.col("ret") * 5).otherwise("ret")
    )
    b = ml_expected_returns(signals, bumped, ic=0.05).filter(pl.col("date") <= cut)
    assert a.sort("date", "symbol").equals(b.sort("date", "symbol"))


def test_correlation_clusters_recover_planted_groups():
    rng = np.random.default_rng(0)
    common = rng.normal(size=(250, 3)) * 0.02
    window = rng.normal(size=(250, 12)) * 0.01 + np.repeat(common, 4, axis=1)
    labels = correlation_clusters(window, 3)
    # three groups of four, whatever the label numbers
    assert len(set(labels)) == 3
    assert all(len(set(labels[i : i + 4])) == 1 for i in (0, 4, 8))


def test_cluster_cap_holds_on_every_rebalance(signals, returns):
    dates = _dates(returns)
    mu = ml_expected_returns(signals, returns, ic=0.05)
    free = mean_variance_weights(returns, dates, mu, max_weight=0.5, n_clusters=3)
    capped = mean_variance_weights(
        returns, dates, mu, max_weight=0.5, max_cluster_weight=0.4, n_clusters=3
    )
    for book, limit in ((capped, 0.4 + 1e-5), (free, None)):
        worst = 0.0
        for day in dates.to_list():
            clusters = clusters_before(returns, day, 252, 3)
            held = book.filter(pl.col("date") == day).join(clusters, on="symbol")
            if held.height:
                worst = max(
                    worst, held.group_by("cluster").agg(pl.col("weight").sum())["weight"].max()
                )
        if limit is not None:
            assert worst <= limit  # the cap binds on the clusters the optimiser saw
        else:
            assert worst > 0.4  # without it some cluster holds more: the cap is not idle
    assert_allclose(capped.group_by("date").agg(pl.col("weight").sum())["weight"], 1.0, atol=1e-6)


def test_cluster_exposure_averages_over_rebalances():
    weights = pl.DataFrame(
        {
            "strategy": ["a"] * 4,
            "date": [date(2020, 1, 1)] * 2 + [date(2020, 1, 2)] * 2,
            "symbol": ["X", "Y", "X", "Z"],
            "weight": [0.6, 0.4, -0.5, 0.5],
        }
    )
    clusters = pl.DataFrame({"symbol": ["X", "Y"], "cluster": [0, 1]})
    out = cluster_exposure(weights, clusters)
    # X is cluster 0 on both dates (0.6, -0.5); Y cluster 1 on day one; Z unclustered on day two
    assert out["cluster"].to_list() == [-1, 0, 1]
    assert_allclose(out["net"], [0.25, 0.05, 0.2])
    assert_allclose(out["gross"], [0.25, 0.55, 0.2])
