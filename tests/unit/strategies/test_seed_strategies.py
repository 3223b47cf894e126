"""The seed strategies' building blocks: LSTM momentum, cointegrated pairs, the DQN's
environment and walk-forward, the genetic search."""

from datetime import date

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose

from models.portfolio import rebalance_dates
from models.strategies.genetic import Candidate, blended_scores, genetic_search
from models.strategies.momentum import forward_ranks, lstm_momentum_scores, momentum_inputs
from models.strategies.pairs import cointegrated_pairs, positions, transformer_pairs_weights
from models.strategies.rl import ACTIONS, BookMixEnv, book_features, dqn_decisions, mix_books


def _panel(R: np.ndarray) -> pl.DataFrame:
    dates = pl.date_range(date(2010, 1, 1), date(2030, 1, 1), "1d", eager=True)[: len(R)]
    return pl.concat(
        pl.DataFrame({"date": dates, "symbol": f"S{i:02d}", "ret": R[:, i]})
        for i in range(R.shape[1])
    )


def test_momentum_inputs_and_labels_are_point_in_time():
    R = np.random.default_rng(0).normal(0, 0.01, (200, 4))
    X = momentum_inputs(R, lookback=20, vol_window=60)
    t = 100
    # the window ends on day t itself (known at its close), scaled by the volatility up to t
    assert_allclose(X[t, 2], R[t - 19 : t + 1, 2] / R[t - 59 : t + 1, 2].std(ddof=1))
    assert np.isnan(X[58]).all() and np.isfinite(X[59]).all()
    # changing the future leaves today's inputs alone
    later = R.copy()
    later[t + 1 :] *= -3
    assert_allclose(momentum_inputs(later, 20, 60)[t], X[t])
    y = forward_ranks(R, horizon=5)
    forward = np.expm1(np.log1p(R[t + 1 : t + 6]).sum(axis=0))
    assert_allclose(np.argsort(y[t]), np.argsort(forward))
    assert np.isnan(y[-5:]).all() and np.isfinite(y[-6]).all()


def test_lstm_momentum_learns_persistent_trends():
    """Assets whose drift persists for months: the net, fitted on earlier days only, ranks the
    trending assets above the others."""
    rng = np.random.default_rng(1)
    n_days, n_assets = 900, 12
    drift = np.repeat(rng.choice([-0.004, 0.004], size=(n_days // 150, n_assets)), 150, axis=0)
    R = drift + rng.normal(0, 0.01, (n_days, n_assets))
    returns = _panel(R)
    every_fifth = rebalance_dates(returns["date"], 5)
    dates = every_fifth.filter(every_fifth >= returns["date"].unique().sort()[400])
    scores = lstm_momentum_scores(returns, dates, refit_every=250, min_train_days=300, epochs=5)
    assert scores["date"].min() >= dates.min()
    joined = (
        scores.join(_panel(drift).rename({"ret": "drift"}), on=["date", "symbol"])
        .group_by("date")
        .agg(pl.corr("score", "drift", method="spearman"))
    )
    # inside a 150-day regime the trend is visible in the last 20 days
    assert joined["score"].mean() > 0.3


def test_cointegrated_pairs_are_found_and_traded_on_the_forecast():
    rng = np.random.default_rng(2)
    n = 800
    common = np.cumsum(rng.normal(0, 0.01, n))
    # A and B share a stochastic trend (a mean-reverting spread); C and D are random walks
    spread = np.zeros(n)
    for t in range(1, n):
        spread[t] = 0.9 * spread[t - 1] + rng.normal(0, 0.01)
    logp = np.column_stack(
        [
            common + spread,
            common,
            np.cumsum(rng.normal(0, 0.01, n)),
            np.cumsum(rng.normal(0, 0.01, n)),
        ]
    )
    (pair,) = cointegrated_pairs(logp[:300], n_pairs=2)
    assert {pair[0], pair[1]} == {0, 1} and pair[4] < 0.05
    assert_allclose(abs(pair[2]), 1.0, atol=0.15)
    dates = pl.date_range(date(2010, 1, 1), date(2030, 1, 1), "1d", eager=True)[:n]
    prices = pl.concat(
        pl.DataFrame({"date": dates, "symbol": s, "close": np.exp(logp[:, i])})
        for i, s in enumerate("ABCD")
    )
    weights, formed = transformer_pairs_weights(
        prices, dates[400], dates[-1], n_pairs=2, formation_days=300, reform_every=200, epochs=5
    )
    assert set(formed["y"]) | set(formed["x"]) == {"A", "B"}
    assert set(weights.filter(pl.col("weight") != 0)["symbol"]) == {"A", "B"}
    assert weights["date"].min() >= dates[400]
    gross = weights.group_by("date").agg(pl.col("weight").abs().sum())["weight"]
    assert gross.max() <= 1 + 1e-9 and gross.max() > 0


def test_positions_enter_hold_and_exit():
    forecast = np.array([0.0, 1.5, 0.8, 0.1, -1.2, -0.5, 0.6, 2.0])
    assert positions(forecast, entry=1.0, exit=0.25).tolist() == [0, 1, 1, 0, -1, -1, -1, 1]


def test_book_mix_env_follows_the_gymnasium_api_and_charges_switches():
    from gymnasium.utils.env_checker import check_env

    rng = np.random.default_rng(3)
    features, period = rng.normal(size=(30, 8)), rng.normal(0, 0.01, (30, 2))
    env = BookMixEnv(features, period, switch_cost=0.001)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8 + len(ACTIONS),) and obs[-1] == 1.0  # starts in cash
    _, reward, done, _, _ = env.step(0)  # all in the long-short book: one unit switched
    assert reward == pytest.approx((period[0, 0] - 0.001) * 100)
    _, reward, _, _, _ = env.step(0)  # no switch, no cost
    assert reward == pytest.approx(period[1, 0] * 100)


def test_dqn_learns_only_from_realised_rewards_and_prefers_the_better_book():
    """One book earns steadily, the other loses: the agent, walk-forward, ends up holding the
    earner; and its decisions before any training are the default (risk parity)."""
    rng = np.random.default_rng(4)
    n = 700
    R = np.column_stack([rng.normal(0.002, 0.005, n), rng.normal(-0.002, 0.005, n)])
    days = pl.date_range(date(2015, 1, 1), date(2030, 1, 1), "1d", eager=True)[:n].to_numpy()
    out = dqn_decisions(R, days, every=5, refit_every=200, min_train_decisions=40, timesteps=2000)
    first_fit = 59 + 40 * 5  # the 40th usable decision's reward is realised about here
    early = out.filter(pl.col("date") < pl.lit(days[first_fit]).cast(pl.Date))
    assert (early["action"] == 1).all()
    late = out.tail(40)
    assert (late["ls"] > late["rp"]).mean() > 0.8  # book 0 is the "long-short" slot
    # features at a decision day use returns up to that day only
    F = book_features(R)
    later = R.copy()
    later[301:] = 0.5
    assert_allclose(book_features(later)[300], F[300])


def test_mix_books_takes_each_books_latest_targets():
    d = [date(2020, 1, i) for i in (1, 2, 3, 6)]
    ls = pl.DataFrame({"date": [d[0], d[0]], "symbol": ["A", "B"], "weight": [1.0, -1.0]})
    rp = pl.DataFrame(
        {"date": [d[0], d[2], d[2]], "symbol": ["A", "A", "B"], "weight": [1.0, 0.5, 0.5]}
    )
    decisions = pl.DataFrame({"date": [d[1], d[3]], "ls": [0.5, 0.0], "rp": [0.5, 1.0]})
    mixed = mix_books(decisions, [("ls", ls), ("rp", rp)])
    day1 = dict(mixed.filter(pl.col("date") == d[1]).select("symbol", "weight").iter_rows())
    assert day1 == pytest.approx({"A": 0.5 * 1.0 + 0.5 * 1.0, "B": -0.5})
    day3 = dict(mixed.filter(pl.col("date") == d[3]).select("symbol", "weight").iter_rows())
    assert day3 == pytest.approx({"A": 0.5, "B": 0.5})


def test_genetic_search_counts_every_distinct_candidate_and_finds_the_optimum():
    calls = []

    def fitness(c: Candidate) -> float:
        calls.append(c)
        return -abs(c.top_k - 7) - abs(c.every - 10) / 5 - abs(c.blend - 0.5)

    found = genetic_search(
        fitness, top_k=(2, 12), every=(1, 21), population=12, generations=8, seed=1
    )
    assert len(calls) == len(found) == len({c for c, _ in found})  # each evaluated once
    best = max(found, key=lambda cf: cf[1])[0]
    assert abs(best.top_k - 7) <= 1 and abs(best.every - 10) <= 3
    again = genetic_search(
        fitness, top_k=(2, 12), every=(1, 21), population=12, generations=8, seed=1
    )
    assert [c for c, _ in again] == [c for c, _ in found]  # seeded


def test_blended_scores_mix_forecast_and_momentum_ranks():
    R = np.random.default_rng(5).normal(0, 0.01, (100, 5))
    returns = _panel(R)
    signals = returns.select("date", "symbol").with_columns(
        score=pl.col("symbol").str.slice(1).cast(pl.Int64).cast(pl.Float64)
    )
    pure = blended_scores(signals, returns, 1.0).filter(pl.col("date") == returns["date"].max())
    assert pure.sort("symbol")["score"].to_list() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    momentum = blended_scores(signals, returns, 0.0).filter(pl.col("date") == returns["date"].max())
    trailing = np.log1p(R[-60:]).sum(axis=0)
    assert (
        np.argsort(momentum.sort("symbol")["score"].to_numpy()).tolist()
        == np.argsort(trailing).tolist()
    )
