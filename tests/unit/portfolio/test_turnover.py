"""Turnover-aware books on real returns (skfolio's bundled S&P 500 stocks): TopkDropout and the
rank hold buffer against a plain day-by-day loop, smoothed scores point in time, costs in the
mean-variance objective, and the fast optimisers against skfolio's per-date problems."""

from datetime import date

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose

from models.backtest.engine import Costs, run_backtest
from models.data.panel import daily_returns, to_dense, wide_to_long
from models.portfolio import (
    hold_buffer_weights,
    mean_variance_weights,
    ml_expected_returns,
    rebalance_dates,
    risk_parity_weights,
    smooth_scores,
    top_k_weights,
    topk_dropout_weights,
)


@pytest.fixture(scope="module")
def returns() -> pl.DataFrame:
    from skfolio.datasets import load_sp500_dataset

    wide = load_sp500_dataset().loc["2018-01-01":"2020-12-31"]
    return daily_returns(wide_to_long(wide, "close"))


@pytest.fixture(scope="module")
def signals(returns) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return returns.select("date", "symbol").with_columns(score=rng.normal(size=len(returns)))


def _qlib_pick(held, scores, k, n_drop):
    """Qlib's TopkDropout decision, written as plainly as its source reads."""
    last = sorted(held, key=lambda s: -scores.get(s, -np.inf))
    ranked = sorted(scores, key=lambda s: (-scores[s], s))
    today = [s for s in ranked if s not in last][: n_drop + k - len(last)]
    comb = sorted(last + today, key=lambda s: (-scores.get(s, -np.inf), s))
    sell = [s for s in last if s in comb[-n_drop:]]
    buy = today[: len(sell) + k - len(last)]
    return [s for s in last if s not in sell], buy


def _buffer_pick(held, scores, k, buffer):
    ranked = sorted(scores, key=lambda s: (-scores[s], s))
    kept = [s for s in held if s in ranked[: k + buffer]]
    return kept, [s for s in ranked if s not in kept][: k - len(kept)]


def _loop(returns, signals, start, pick, buy_bps, sell_bps):
    """Day by day: decide on each day's close from that day's scores, trade at the next close
    (kept names hold their drifted weight, buys share the rest), earn the day's returns."""
    dates, symbols, R = to_dense(returns, "ret")
    R = np.nan_to_num(R)
    col = {s: i for i, s in enumerate(symbols)}
    scores = {
        d: dict(zip(p["symbol"], p["score"], strict=True)) for (d,), p in signals.group_by("date")
    }
    w = np.zeros(len(symbols))
    held: list[str] = []
    pending = None
    net = {}
    for t, day in enumerate(dates):
        gross = float(w @ R[t])
        w = w * (1 + R[t]) / (1 + gross) if w.any() else w
        cost = 0.0
        if pending is not None:
            kept, buy = pending
            new = np.zeros(len(symbols))
            for s in kept:
                new[col[s]] = w[col[s]]
            free = 1 - new.sum()
            for s in buy:
                new[col[s]] = free / len(buy)
            diff = new - w
            cost = (diff[diff > 0].sum() * buy_bps - diff[diff < 0].sum() * sell_bps) / 1e4
            w, pending = new, None
            net[day] = gross - cost
        elif w.any():
            net[day] = gross
        d = day.astype("datetime64[D]").item()
        if d >= start and t + 1 < len(dates):
            kept, buy = pick(held, scores[d])
            held = kept + buy
            pending = (kept, buy)
    return net


@pytest.mark.parametrize("book", ["topk_dropout", "hold_buffer"])
def test_turnover_books_match_a_day_by_day_loop(returns, signals, book):
    start = date(2020, 3, 2)
    dates = returns["date"].unique().sort().filter(returns["date"].unique().sort() >= start)
    if book == "topk_dropout":
        weights = topk_dropout_weights(signals, dates, k=5, n_drop=2)
        pick = lambda held, s: _qlib_pick(held, s, 5, 2)  # noqa: E731
    else:
        weights = hold_buffer_weights(signals, dates, k=5, buffer=3)
        pick = lambda held, s: _buffer_pick(held, s, 5, 3)  # noqa: E731
    out = run_backtest(weights, returns, costs=Costs(cost_bps=5, sell_bps=15), lag=1)
    expected = _loop(returns, signals, start, pick, 5, 15)
    got = dict(zip(out["date"].to_numpy(), out["net"].to_numpy(), strict=True))
    days = sorted(expected)
    assert len(days) > 150 and set(days) == set(got)
    assert_allclose([got[d] for d in days], [expected[d] for d in days], atol=1e-12)
    # the rule holds: five names a day, and a TopkDropout day changes at most two of them
    per_day = weights.group_by("date").agg(pl.len(), pl.col("weight").is_not_null().sum())
    assert (per_day["len"] == 5).all()
    if book == "topk_dropout":
        assert per_day.sort("date")["weight"][1:].max() <= 2
    # less turnover than holding the top five every day (random scores: the ranks churn)
    plain = run_backtest(top_k_weights(signals, dates, 5), returns, cost_bps=0, lag=1)
    assert (
        out["turnover"].sum() < (0.6 if book == "topk_dropout" else 0.9) * plain["turnover"].sum()
    )


def test_smoothed_scores_are_point_in_time_and_steadier(returns, signals):
    cut = date(2019, 6, 28)
    a = smooth_scores(signals, 5).filter(pl.col("date") <= cut).sort("date", "symbol")
    bumped = signals.with_columns(
        pl.when(pl.col("date") > cut).then(pl.col("score") * -3).otherwise("score")
    )
    b = smooth_scores(bumped, 5).filter(pl.col("date") <= cut).sort("date", "symbol")
    assert a.equals(b)
    dates = rebalance_dates(signals["date"], 1)
    raw = hold_buffer_weights(signals, dates, 5, 0)
    smooth = hold_buffer_weights(smooth_scores(signals, 5), dates, 5, 0)
    bought = lambda w: w["weight"].is_not_null().sum()  # noqa: E731
    assert bought(smooth) < 0.6 * bought(raw)  # fewer names bought: the ranks move less
    assert smooth_scores(signals, 0) is signals


def _turnover(weights: pl.DataFrame) -> float:
    wide = weights.pivot(on="symbol", index="date", values="weight").fill_null(0.0).sort("date")
    return float(np.abs(np.diff(wide.drop("date").to_numpy(), axis=0)).sum())


def test_costs_in_the_objective_lower_turnover_monotonically(returns, signals):
    dates = rebalance_dates(returns["date"].filter(returns["date"] >= date(2019, 6, 1)), 63)
    mu = ml_expected_returns(signals, returns, ic=0.05)
    for long_short in (False, True):
        turnover = [
            _turnover(
                mean_variance_weights(
                    returns,
                    dates,
                    mu,
                    max_weight=0.3,
                    long_short=long_short,
                    transaction_costs=cost if cost else None,
                )
            )
            for cost in (0.0, 2e-4, 1e-3, 5e-3)
        ]
        assert all(b <= a + 1e-6 for a, b in zip(turnover, turnover[1:], strict=False)), turnover
        assert turnover[-1] < 0.5 * turnover[0]


def test_fast_optimisers_equal_skfolio(returns, signals):
    """Same weights as skfolio's problem over every name, solved as tightly (Clarabel's
    defaults leave the sixth decimal loose); with costs, each date's problem from the same
    previous book (the L1 cost carries a 1e-8 difference from one date into the next)."""

    from benchmarks.reference_portfolio import (
        TIGHT,
        mean_variance_reference,
        risk_parity_reference,
    )
    from models.portfolio.allocators import _rebalance_windows
    from models.portfolio.solvers import mean_variance, shrunk_covariance

    dates = rebalance_dates(returns["date"].filter(returns["date"] >= date(2020, 1, 2)), 63)
    mu = ml_expected_returns(signals, returns, ic=0.05)
    pairs = [
        (risk_parity_weights(returns, dates), risk_parity_reference(returns, dates, 252, TIGHT))
    ]
    for kw in ({}, {"long_short": True}):
        fast = mean_variance_weights(returns, dates, mu, max_weight=0.25, **kw)
        ref = mean_variance_reference(
            returns, dates, mu, max_weight=0.25, solver_params=TIGHT, scale_objective=1e3, **kw
        )
        pairs.append((fast, ref))
    for fast, ref in pairs:
        joined = fast.join(ref, on=["date", "symbol"], how="full", coalesce=True).fill_null(0.0)
        assert fast["date"].n_unique() == len(dates)
        assert_allclose(joined["weight"], joined["weight_right"], atol=1e-6)
    for long_short, turnover in ((False, None), (True, 0.15)):
        previous = {}
        for _, names, keep, window, expected in _rebalance_windows(returns, dates, 252, mu):
            prev = np.array([previous.get(s, 0.0) for s in names[keep]])
            bounds = {"min_weights": -0.25, "max_long": 1.0, "max_short": 1.0, "budget": 0.0}
            if turnover is not None and prev.any():
                bounds |= {"max_turnover": turnover}
            ref = _skfolio_book(
                expected, prev, scale_objective=1e3, **(bounds if long_short else {})
            )
            ref.fit(window)
            fast = mean_variance(
                expected,
                shrunk_covariance(window),
                risk_aversion=5.0,
                max_weight=0.25,
                long_short=long_short,
                previous=prev,
                costs=5e-4,
                max_turnover=turnover if prev.any() else None,
            )
            assert_allclose(fast, ref.weights_, atol=1e-6)
            previous = dict(zip(names[keep], ref.weights_, strict=True))


def test_the_reference_polished_on_its_active_set_is_the_working_sets_answer(returns, signals):
    """The bench's polish of skfolio's answer (its kinks kept, the rest solved exactly) lands on
    the working set's weights to 1e-8 on every date, with costs in the objective, long-only and
    long-short, and never lowers the reference's objective."""
    from benchmarks.reference_portfolio import polish_on_active_set
    from models.portfolio.allocators import _rebalance_windows
    from models.portfolio.solvers import mean_variance, shrunk_covariance

    dates = rebalance_dates(returns["date"].filter(returns["date"] >= date(2020, 1, 2)), 63)
    mu = ml_expected_returns(signals, returns, ic=0.05)
    for long_short in (False, True):
        previous, polished_dates = {}, 0
        for _, names, keep, window, expected in _rebalance_windows(returns, dates, 252, mu):
            prev = np.array([previous.get(s, 0.0) for s in names[keep]])
            bounds = {"min_weights": -0.25, "max_long": 1.0, "max_short": 1.0, "budget": 0.0}
            ref = _skfolio_book(expected, prev, **(bounds if long_short else {})).fit(window)
            cov = shrunk_covariance(window)
            kw = {"risk_aversion": 5.0, "max_weight": 0.25, "long_short": long_short}
            fast = mean_variance(expected, cov, previous=prev, costs=5e-4, **kw)
            polished = polish_on_active_set(expected, cov, prev, 5e-4, ref.weights_, **kw)
            if polished is not None:
                polished_dates += 1
                assert_allclose(polished, fast, atol=1e-8)
            previous = dict(zip(names[keep], ref.weights_, strict=True))
        assert polished_dates == len(dates)


def _skfolio_book(expected, previous, **bounds):
    """skfolio's per-date problem with 5 bp costs in the objective (risk aversion 5, cap 0.25),
    solved as tightly as the fast solvers."""
    from skfolio import RiskMeasure
    from skfolio.moments import LedoitWolf
    from skfolio.optimization import MeanRisk, ObjectiveFunction
    from skfolio.prior import EmpiricalPrior

    from benchmarks.reference_portfolio import TIGHT
    from models.portfolio.allocators import ForecastMu

    return MeanRisk(
        objective_function=ObjectiveFunction.MAXIMIZE_UTILITY,
        risk_measure=RiskMeasure.VARIANCE,
        risk_aversion=5.0,
        prior_estimator=EmpiricalPrior(
            mu_estimator=ForecastMu(expected), covariance_estimator=LedoitWolf()
        ),
        max_weights=0.25,
        transaction_costs=5e-4,
        previous_weights=previous,
        solver_params=TIGHT,
        **bounds,
    )
