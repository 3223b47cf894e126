"""Stress tests of today's book: replayed through historical episodes, and under hypothetical
market and volatility shocks through its exposures."""

from collections.abc import Mapping
from datetime import date

import numpy as np
import polars as pl
from scipy import stats

# Historical episodes a current portfolio is replayed through (first and last trading day).
STRESS_EPISODES: dict[str, tuple[date, date]] = {
    "LTCM 1998": (date(1998, 7, 17), date(1998, 10, 8)),
    "Dot-com bust 2000-02": (date(2000, 3, 24), date(2002, 10, 9)),
    "GFC: Lehman to Oct-2008 low": (date(2008, 9, 12), date(2008, 10, 10)),
    "US downgrade 2011": (date(2011, 7, 22), date(2011, 8, 10)),
    "China devaluation 2015-16": (date(2015, 8, 10), date(2016, 2, 11)),
    "Volmageddon 2018": (date(2018, 1, 26), date(2018, 2, 8)),
    "Q4 2018 sell-off": (date(2018, 9, 20), date(2018, 12, 24)),
    "COVID crash 2020": (date(2020, 2, 19), date(2020, 3, 23)),
}


def stress_test(
    weights: Mapping[str, float],
    prices: pl.DataFrame,
    episodes: Mapping[str, tuple[date, date]] = STRESS_EPISODES,
    benchmark: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Replay today's weights through each historical episode, buy-and-hold.

    ``prices`` is ``[symbol, date, close]``. A symbol without prices over an episode cannot be
    replayed: its weight is left out and ``coverage`` (the weight that could be replayed) says
    how much of the portfolio the figure speaks for; an episode outside the data gives null.
    """
    w = pl.DataFrame({"symbol": list(weights), "weight": list(weights.values())})
    rows = []
    for name, (start, end) in episodes.items():
        moves = _episode_returns(prices, start, end).join(w, on="symbol", how="inner")
        covered = float(moves["weight"].sum()) if len(moves) else 0.0
        port = float((moves["weight"] * moves["ret"]).sum() / covered) if covered > 0 else None
        bench = None
        if benchmark is not None:
            b = _episode_returns(benchmark, start, end)
            bench = float(b["ret"][0]) if len(b) else None
        rows.append((name, start, end, port, bench, covered))
    return pl.DataFrame(
        rows,
        schema={
            "episode": pl.String,
            "start": pl.Date,
            "end": pl.Date,
            "portfolio_return": pl.Float64,
            "benchmark_return": pl.Float64,
            "coverage": pl.Float64,
        },
        orient="row",
    )


def _episode_returns(prices: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """Per symbol: last close on or before ``start`` to last close on or before ``end``."""
    window = prices.filter(pl.col("date") <= end).sort("symbol", "date")
    first = (
        window.filter(pl.col("date") <= start)
        .group_by("symbol")
        .agg(pl.col("close").last().alias("p0"), pl.col("date").last().alias("d0"))
    )
    last = window.group_by("symbol").agg(
        pl.col("close").last().alias("p1"), pl.col("date").last().alias("d1")
    )
    joined = first.join(last, on="symbol").filter(
        ((pl.lit(start) - pl.col("d0")).dt.total_days() <= 7)
        & ((pl.lit(end) - pl.col("d1")).dt.total_days() <= 7)
    )
    return joined.select("symbol", (pl.col("p1") / pl.col("p0") - 1).alias("ret"))


def hypothetical_shocks(
    weights: Mapping[str, float],
    returns: pl.DataFrame,
    market: pl.DataFrame,
    market_shocks: tuple[float, ...] = (-0.05, -0.10, -0.20),
    vol_multipliers: tuple[float, ...] = (2.0, 3.0),
    level: float = 0.99,
    lookback: int = 250,
) -> pl.DataFrame:
    """Today's book under hypothetical shocks through its exposures, from the last
    ``lookback`` days of ``returns`` ``[symbol, date, ret]`` and ``market`` ``[date, ret]``:

    - a market move of each size, passed through each holding's beta to the market;
    - volatility multiplied by each factor: the one-day normal VaR of the book with every
      holding's volatility scaled (correlations kept), against today's.
    """
    w = pl.DataFrame({"symbol": list(weights), "weight": list(weights.values())})
    days = returns["date"].unique().sort().tail(lookback)
    panel = (
        returns.filter(pl.col("date").is_in(days.implode()))
        .join(market.rename({"ret": "mkt"}), on="date")
        .join(w, on="symbol")
    )
    betas = panel.group_by("symbol").agg(
        beta=pl.cov("ret", "mkt") / pl.col("mkt").var(), weight=pl.col("weight").first()
    )
    book_beta = float((betas["beta"] * betas["weight"]).sum())
    wide = panel.pivot(on="symbol", index="date", values="ret").drop("date").fill_null(0.0)
    held = w.filter(pl.col("symbol").is_in(wide.columns))
    cov = np.atleast_2d(np.cov(wide.select(held["symbol"].to_list()).to_numpy(), rowvar=False))
    vec = held["weight"].to_numpy()
    sigma = float(np.sqrt(vec @ cov @ vec))
    z = -stats.norm.ppf(1 - level)
    rows = [(f"market {s:+.0%} (book beta {book_beta:.2f})", book_beta * s) for s in market_shocks]
    rows += [(f"one-day {level:.0%} VaR today", -z * sigma)]
    rows += [
        (f"one-day {level:.0%} VaR, volatility x{m:g}", -z * sigma * m) for m in vol_multipliers
    ]
    return pl.DataFrame(rows, schema=["shock", "portfolio_return"], orient="row")
