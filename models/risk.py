"""Value at risk, expected shortfall and historical stress scenarios.

All risk figures are losses as positive fractions of portfolio value (VaR 0.02 = a 2 % loss).
"""

from collections.abc import Mapping, Sequence
from datetime import date

import numpy as np
import polars as pl
from scipy import stats
from skfolio.measures import cvar, value_at_risk

# Historical episodes a current portfolio is replayed through (first and last trading day).
STRESS_EPISODES: dict[str, tuple[date, date]] = {
    "GFC: Lehman to Oct-2008 low": (date(2008, 9, 12), date(2008, 10, 10)),
    "US downgrade 2011": (date(2011, 7, 22), date(2011, 8, 10)),
    "Volmageddon 2018": (date(2018, 1, 26), date(2018, 2, 8)),
    "COVID crash 2020": (date(2020, 2, 19), date(2020, 3, 23)),
}


def var_table(
    returns: np.ndarray, levels: Sequence[float] = (0.95, 0.99), horizon: int = 1
) -> pl.DataFrame:
    """VaR and CVaR by historical simulation (skfolio) and a parametric normal fit (scipy).

    ``horizon`` > 1 uses overlapping compounded ``horizon``-day returns for the historical
    method and square-root-of-time scaling of mean and volatility for the normal one.
    """
    r = np.asarray(returns, dtype=float)
    r = r[np.isfinite(r)]
    if len(r) < 30:
        raise ValueError(f"need at least 30 returns for VaR, got {len(r)}")
    hist = r if horizon == 1 else np.exp(np.convolve(np.log1p(r), np.ones(horizon), "valid")) - 1
    mu, sigma = r.mean() * horizon, r.std(ddof=1) * np.sqrt(horizon)
    rows = []
    for level in levels:
        z = stats.norm.ppf(1 - level)
        rows.append(
            (
                "historical",
                level,
                float(value_at_risk(hist, beta=level)),
                float(cvar(hist, beta=level)),
            )
        )
        rows.append(
            (
                "normal",
                level,
                float(-(mu + sigma * z)),
                float(-(mu - sigma * stats.norm.pdf(z) / (1 - level))),
            )
        )
    return pl.DataFrame(rows, schema=["method", "level", "var", "cvar"], orient="row").with_columns(
        horizon_days=pl.lit(horizon)
    )


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
