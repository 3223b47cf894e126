"""The strategy table: every strategy's before- and after-cost figures next to the numbers that
say whether to believe them (deflated Sharpe ratio, probability of backtest overfitting), and
the grid of strategy variants whose trials those numbers count."""

from collections.abc import Iterator, Sequence
from itertools import product

import numpy as np
import polars as pl

from models.backtest.engine import TRADING_DAYS, performance
from models.backtest.overfitting import (
    PBO,
    deflated_sharpe,
    probability_of_backtest_overfitting,
    sharpe,
)
from models.portfolio import rebalance_dates, top_k_weights

TABLE_COLUMNS = (
    "strategy",
    "annual_return_gross",
    "annual_return",
    "cost_drag",
    "sharpe_gross",
    "sharpe",
    "psr",  # the honesty figures beside the Sharpe ratio they judge, on the first screen
    "dsr",
    "sortino",
    "calmar",
    "annual_volatility",
    "max_drawdown",
    "max_drawdown_days",
    "annual_turnover",
    "excess_return_gross",
    "excess_return",
    "information_ratio_gross",
    "information_ratio",
    "hit_rate",
    "pbo",
    "n_trials",
)


def top_k_variants(
    signals: pl.DataFrame, ks: Sequence[int], everies: Sequence[int]
) -> Iterator[tuple[str, pl.DataFrame]]:
    """``(name, weights)`` for every (top-k, rebalance interval) pair of the ML top-k book."""
    for k, every in product(ks, everies):
        yield (
            f"ml_top_k[k={k},every={every}]",
            top_k_weights(signals, rebalance_dates(signals["date"], every), k),
        )


def excess_over(series: np.ndarray, benchmark: np.ndarray) -> tuple[float, float]:
    """Annualised excess return (the mean daily difference times 252, as Qlib reports it) and
    information ratio (its mean over its standard deviation, times sqrt 252) of ``series``
    over ``benchmark`` on the same days."""
    diff = np.asarray(series, float) - np.asarray(benchmark, float)
    if len(diff) < 2:
        return np.nan, np.nan
    sd = diff.std(ddof=1)
    mean = float(diff.mean() * TRADING_DAYS)
    return mean, float(mean / (sd * np.sqrt(TRADING_DAYS))) if sd > 0 else np.nan


def strategy_table(
    daily: pl.DataFrame,
    trials: pl.DataFrame,
    extra_trials: int = 0,
    n_blocks: int = 16,
    benchmark: str | None = "equal_weight",
) -> tuple[pl.DataFrame, PBO]:
    """One row per strategy of ``daily`` (``[strategy, date, gross, net, turnover]``).

    Excess return and information ratio are over the ``benchmark`` strategy of ``daily``
    (gross over its gross, net over its net, on the days both have); null without one, and a
    figure undefined on its series (the benchmark's own information ratio) is null.

    The trials are every return series the search produced: the strategies of ``daily`` and the
    variants in ``trials`` (``[strategy, date, net]``), on their common dates. Their per-period
    Sharpe ratios set the deflation benchmark; ``extra_trials`` adds searches whose strategy
    returns were never formed (Optuna trials of the models behind the signals) to the count. The
    probability of backtest overfitting is one figure for the whole search (CSCV over the trial
    matrix) and repeated on every row.
    """
    series = pl.concat(
        [daily.select("strategy", "date", "net"), trials.select("strategy", "date", "net")]
    ).unique(["strategy", "date"], keep="first", maintain_order=True)
    # a fixed column order: the trial Sharpe ratios' spread must not depend on hash order
    wide = (
        series.pivot(on="strategy", index="date", values="net", sort_columns=True)
        .sort("date")
        .drop_nulls()
    )
    matrix = wide.drop("date").to_numpy()
    n_trials = matrix.shape[1] + extra_trials
    # blocks of at least ~20 days, an even count, at most n_blocks
    blocks = int(min(n_blocks, max(2, (len(matrix) // 20) // 2 * 2)))
    pbo = probability_of_backtest_overfitting(matrix, n_blocks=blocks)
    trial_sharpes = sharpe(matrix)
    bench = (
        daily.filter(pl.col("strategy") == benchmark).select(
            "date", pl.col("gross").alias("_bg"), pl.col("net").alias("_bn")
        )
        if benchmark is not None
        else pl.DataFrame(schema={"date": pl.Date, "_bg": pl.Float64, "_bn": pl.Float64})
    )
    rows = []
    for (name,), part in daily.sort("date").group_by("strategy", maintain_order=True):
        net, gross = part["net"].to_numpy(), part["gross"].to_numpy()
        both = part.join(bench, on="date")
        excess_gross, ir_gross = excess_over(both["gross"].to_numpy(), both["_bg"].to_numpy())
        excess, ir = excess_over(both["net"].to_numpy(), both["_bn"].to_numpy())
        after, before = performance(net, part["turnover"].to_numpy()), performance(gross)
        honesty = deflated_sharpe(net, trial_sharpes, n_trials)
        rows.append(
            {
                "strategy": name,
                **after,
                "annual_return_gross": before["annual_return"],
                "sharpe_gross": before["sharpe"],
                "cost_drag": float((gross - net).mean() * TRADING_DAYS),
                "excess_return_gross": excess_gross,
                "excess_return": excess,
                "information_ratio_gross": ir_gross,
                "information_ratio": ir,
                "psr": honesty["psr"],
                "dsr": honesty["dsr"],
                "pbo": pbo.pbo,
                "n_trials": n_trials,
            }
        )
    # a figure that is undefined (the benchmark's information ratio over itself, a Sharpe
    # ratio of a flat series) is null, not NaN: a table's readers sort and average it
    return pl.DataFrame(rows).select(TABLE_COLUMNS).fill_nan(None), pbo
