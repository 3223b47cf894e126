"""Every book the portfolio group builds, by name, on one set of out-of-sample signals: the ML
top-k and long-short books, the turnover-aware ones (TopkDropout, the hold buffer), mean-variance
with and without costs in the objective, risk parity, HRP, equal weight and buy-and-hold; the
ML book's grid of variants; today's ML book."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from threadpoolctl import threadpool_limits

from models.backtest.costs import CostSpec, cost_rates
from models.backtest.strategy_table import top_k_variants
from models.data.panel import daily_returns
from models.portfolio.allocators import (
    buy_and_hold,
    equal_weights,
    hrp_weights,
    mean_variance_weights,
    ml_expected_returns,
    rebalance_dates,
    risk_parity_weights,
    top_k_weights,
)
from models.portfolio.clusters import cluster_exposure, clusters_before
from models.portfolio.turnover import hold_buffer_weights, smooth_scores, topk_dropout_weights


@dataclass
class Books:
    """``weights`` ``[strategy, date, symbol, weight, kind]`` (``oos`` books, ``variant``
    trials, the ``live`` ML book); the correlation clusters known at the start of the period
    and every book's mean net weight in each; seconds per book."""

    weights: pl.DataFrame
    clusters: pl.DataFrame
    exposure: pl.DataFrame
    seconds: dict[str, float]
    rebalances: int
    variants: int


def portfolio_books(
    strategies: list[str],
    oos: pl.DataFrame,
    live: pl.DataFrame,
    prices: pl.DataFrame,
    costs: CostSpec,
    *,
    top_k: int,
    rebalance_every: int,
    optimise_every: int | None,
    hrp_lookback: int,
    ic: float,
    risk_aversion: float,
    max_weight: float,
    max_turnover: float | None,
    n_clusters: int,
    max_cluster_weight: float | None,
    variant_top_k: list[int],
    variant_every: list[int],
    turnover_k: int | None,
    dropout_n: int,
    hold_buffer: int,
    smooth_halflife: float,
    cost_aversion: float,
    progress: Callable[[str, int, int], None] = lambda *_: None,
) -> Books:
    """The books named in ``strategies`` on the out-of-sample ``oos`` scores (and today's
    ``live`` ones), from the investable ``prices``; ``costs``: what a unit traded costs, for
    the books with costs in the objective; ``progress(book, done, total)`` hears each
    optimiser's rebalances."""
    dates = rebalance_dates(oos["date"], rebalance_every)
    every = optimise_every or rebalance_every
    slow = rebalance_dates(oos["date"], every)
    universe = prices.filter(pl.col("symbol").is_in(oos["symbol"].unique().implode()))
    returns = daily_returns(universe)
    lookback = hrp_lookback
    smoothed = smooth_scores(oos, smooth_halflife)
    k_turnover = turnover_k or top_k

    def told(book: str):
        return lambda done, total: progress(book, done, total)

    def mean_variance(long_short: bool, with_costs: bool = False) -> pl.DataFrame:
        mu = ml_expected_returns(smoothed if with_costs else oos, returns, ic)
        rates = None
        if with_costs:
            # per unit traded, spread over the days a book is held: mu is a daily return
            rates = cost_rates(universe, slow, costs).with_columns(
                pl.col("cost") * cost_aversion / every
            )
        return mean_variance_weights(
            returns,
            slow,
            mu,
            lookback=lookback,
            risk_aversion=risk_aversion,
            max_weight=max_weight,
            long_short=long_short,
            max_turnover=max_turnover,
            max_cluster_weight=None if with_costs else max_cluster_weight,
            n_clusters=n_clusters,
            transaction_costs=rates,
            progress=told("mean_variance" + "_long_short" * long_short + "_tc" * with_costs),
        )

    build = {
        "ml_top_k": lambda: top_k_weights(oos, dates, top_k),
        "ml_long_short": lambda: top_k_weights(oos, dates, top_k, long_short=True),
        "topk_dropout": lambda: topk_dropout_weights(smoothed, dates, k_turnover, dropout_n),
        "ml_hold_buffer": lambda: hold_buffer_weights(smoothed, dates, k_turnover, hold_buffer),
        "mean_variance": lambda: mean_variance(False),
        "mean_variance_long_short": lambda: mean_variance(True),
        "mean_variance_tc": lambda: mean_variance(False, with_costs=True),
        "mean_variance_long_short_tc": lambda: mean_variance(True, with_costs=True),
        "risk_parity": lambda: risk_parity_weights(returns, slow, lookback, told("risk_parity")),
        "hrp": lambda: hrp_weights(returns, slow, lookback, told("hrp")),
        "equal_weight": lambda: equal_weights(universe, dates),
        "buy_and_hold": lambda: buy_and_hold(universe, dates),
    }
    books, seconds = [], {}
    for name in strategies:
        began = time.perf_counter()
        # one BLAS thread: the optimisers' 500 x 500 solves gain nothing from two, and two
        # threads that spin beside other work took 30x as long (0.22 s instead of 7 ms)
        with threadpool_limits(1, user_api="blas"):
            books.append((name, build[name](), "oos"))
        seconds[name] = round(time.perf_counter() - began, 2)
    books += [(name, w, "variant") for name, w in top_k_variants(oos, variant_top_k, variant_every)]
    books.append(("ml_top_k", top_k_weights(live, live["date"].unique(), top_k), "live"))
    frame = pl.concat(
        w.with_columns(strategy=pl.lit(name), kind=pl.lit(kind)) for name, w, kind in books
    ).select("strategy", "date", "symbol", "weight", "kind")
    # clusters known at the start of the out-of-sample period, for every book's exposure
    clusters = clusters_before(returns, oos["date"].min(), lookback, n_clusters)
    exposure = cluster_exposure(frame.filter(pl.col("kind") == "oos"), clusters)
    return Books(frame, clusters, exposure, seconds, len(dates), len(books) - len(strategies) - 1)
