"""VaR backtests the way regulators run them: exceptions, Kupiec's proportion of failures,
Christoffersen's independence and conditional coverage, and the Basel traffic light.

Written by hand: scipy, statsmodels and arch have no VaR backtest; the tests are likelihood
ratios of a few counts (Kupiec 1995, Christoffersen 1998, BCBS 1996), and ``xlogy`` keeps
0 * log 0 = 0 when a count is zero.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from scipy import stats
from scipy.special import xlogy

from models.risk.var import rolling_forecasts


@dataclass(frozen=True)
class Coverage:
    days: int
    exceptions: int
    expected: float
    rate: float
    kupiec_lr: float
    kupiec_p: float
    independence_lr: float
    independence_p: float
    conditional_lr: float
    conditional_p: float
    last_250_exceptions: int
    zone: str


def kupiec(exceptions: np.ndarray, level: float) -> tuple[float, float]:
    """Proportion-of-failures likelihood ratio and its chi-square(1) p-value."""
    hits = np.asarray(exceptions, dtype=bool)
    n, x = len(hits), int(hits.sum())
    p = 1 - level
    null = xlogy(n - x, 1 - p) + xlogy(x, p)
    alt = xlogy(n - x, 1 - x / n) + xlogy(x, x / n)
    lr = max(-2 * (null - alt), 0.0)
    return float(lr), float(stats.chi2.sf(lr, 1))


def christoffersen(exceptions: np.ndarray) -> tuple[float, float]:
    """Independence likelihood ratio (first-order Markov against i.i.d.), chi-square(1)."""
    hits = np.asarray(exceptions, dtype=int)
    prev, cur = hits[:-1], hits[1:]
    n00 = int(((prev == 0) & (cur == 0)).sum())
    n01 = int(((prev == 0) & (cur == 1)).sum())
    n10 = int(((prev == 1) & (cur == 0)).sum())
    n11 = int(((prev == 1) & (cur == 1)).sum())
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    null = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    alt = xlogy(n00, 1 - pi0) + xlogy(n01, pi0) + xlogy(n10, 1 - pi1) + xlogy(n11, pi1)
    lr = max(-2 * (null - alt), 0.0)
    return float(lr), float(stats.chi2.sf(lr, 1))


def traffic_light(exceptions: int, days: int = 250, level: float = 0.99) -> str:
    """Basel zone from the binomial probability of seeing at most that many exceptions:
    green below 95 %, yellow below 99.99 %, red above (0-4 / 5-9 / 10+ for 250 days at 99 %)."""
    cumulative = stats.binom.cdf(exceptions, days, 1 - level)
    return "green" if cumulative < 0.95 else "yellow" if cumulative < 0.9999 else "red"


def coverage(returns: np.ndarray, var: np.ndarray, level: float) -> Coverage:
    """Backtest one VaR forecast series; days without a forecast (NaN) are left out."""
    r, v = np.asarray(returns, dtype=float), np.asarray(var, dtype=float)
    keep = np.isfinite(r) & np.isfinite(v)
    hits = r[keep] < -v[keep]
    if len(hits) < 2:
        raise ValueError("need at least two forecast days to backtest a VaR")
    pof_lr, pof_p = kupiec(hits, level)
    ind_lr, ind_p = christoffersen(hits)
    cc_lr = pof_lr + ind_lr
    recent = hits[-250:]
    return Coverage(
        days=len(hits),
        exceptions=int(hits.sum()),
        expected=len(hits) * (1 - level),
        rate=float(hits.mean()),
        kupiec_lr=pof_lr,
        kupiec_p=pof_p,
        independence_lr=ind_lr,
        independence_p=ind_p,
        conditional_lr=cc_lr,
        conditional_p=float(stats.chi2.sf(cc_lr, 2)),
        last_250_exceptions=int(recent.sum()),
        zone=traffic_light(int(recent.sum()), len(recent), level),
    )


def coverage_table(forecasts: pl.DataFrame) -> pl.DataFrame:
    """One coverage row per (method, level) of a ``[date, method, level, ret, var]`` frame."""
    return pl.DataFrame(
        [
            {"method": method, "level": level, **asdict(coverage(p["ret"], p["var"], level))}
            for (method, level), p in forecasts.sort("date").group_by(
                "method", "level", maintain_order=True
            )
        ]
    )


def backtest_var(
    dates: np.ndarray,
    returns: np.ndarray,
    methods: Sequence[str],
    levels: Sequence[float],
    window: int,
    refit_every: int,
) -> pl.DataFrame:
    """Rolling one-day-ahead forecasts of every method and level over a return series,
    ``[date, method, level, ret, var, es, exception]`` for the days that have a forecast
    (after the first ``window``)."""
    forecasts = rolling_forecasts(returns, methods, levels, window, refit_every)
    frame = pl.concat(
        pl.DataFrame(
            {
                "date": dates[window:],
                "ret": returns[window:],
                "var": var[window:],
                "es": es[window:],
            }
        ).with_columns(method=pl.lit(method), level=pl.lit(level))
        for (method, level), (var, es) in forecasts.items()
    )
    return frame.select(
        "date", "method", "level", "ret", "var", "es", exception=pl.col("ret") < -pl.col("var")
    )
