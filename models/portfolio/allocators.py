"""Allocators on a ``[date, symbol, weight]`` frame of rebalance-date targets.

The optimisers are skfolio's (hierarchical risk parity, risk budgeting, mean-risk); this module
only feeds them point-in-time windows of returns and, for mean-variance, the ML forecasts as
expected returns.
"""

from collections.abc import Callable, Iterator

import numpy as np
import polars as pl
from skfolio import RiskMeasure
from skfolio.moments import BaseMu, LedoitWolf
from skfolio.optimization import (
    HierarchicalRiskParity,
    MeanRisk,
    ObjectiveFunction,
)
from skfolio.prior import EmpiricalPrior

from models.data.panel import to_dense
from models.portfolio.clusters import cluster_constraints, correlation_clusters
from models.portfolio.solvers import mean_variance, risk_parity, shrunk_covariance
from models.types import DATE, SYMBOL

WEIGHT_SCHEMA = {"date": pl.Date, "symbol": pl.String, "weight": pl.Float64}


def rebalance_dates(dates: pl.Series, every: int) -> pl.Series:
    """Every ``every``-th unique date, starting with the first."""
    return dates.unique().sort().gather_every(every)


def top_k_weights(
    signals: pl.DataFrame,
    dates: pl.Series,
    k: int,
    score: str = "score",
    long_short: bool = False,
) -> pl.DataFrame:
    """Equal weight on the ``k`` highest-scored symbols of each rebalance date; with
    ``long_short``, also ``-1/k`` on the ``k`` lowest (dollar neutral, gross exposure 2)."""
    rank = pl.col(score).rank("ordinal", descending=True).over("date")
    n = pl.len().over("date")
    weight = (
        pl.when(rank <= k)
        .then(1.0 / k)
        .when(pl.lit(long_short) & (rank > n - k) & (n >= 2 * k))
        .then(-1.0 / k)
    )
    return (
        signals.filter(pl.col("date").is_in(dates.implode()))
        .with_columns(weight=weight)
        .drop_nulls("weight")
        .with_columns(
            # long-only with fewer than k names: split the book over those there are
            pl.when(pl.col("weight") > 0)
            .then(pl.col("weight") / (pl.col("weight").filter(pl.col("weight") > 0).sum()))
            .otherwise(pl.col("weight"))
            .over("date")
        )
        .select(list(WEIGHT_SCHEMA))
        .sort("date", "symbol")
    )


def equal_weights(universe: pl.DataFrame, dates: pl.Series) -> pl.DataFrame:
    """1/N on every symbol that has a price on each rebalance date (the naive benchmark)."""
    return (
        universe.filter(pl.col("date").is_in(dates.implode()))
        .with_columns((1.0 / pl.len()).over("date").alias("weight"))
        .select(list(WEIGHT_SCHEMA))
        .sort("date", "symbol")
    )


def buy_and_hold(universe: pl.DataFrame, dates: pl.Series) -> pl.DataFrame:
    """1/N on the first rebalance date, never traded again (weights drift with prices)."""
    return equal_weights(universe, dates.head(1))


class ForecastMu(BaseMu):
    """Expected returns given from outside (the ML forecasts) instead of estimated from the
    return window; skfolio's prior takes it like any other ``mu`` estimator."""

    def __init__(self, mu: np.ndarray | None = None):
        self.mu = mu

    def fit(self, X, y=None) -> "ForecastMu":
        self.mu_ = np.asarray(self.mu, dtype=float)
        return self


def ml_expected_returns(
    signals: pl.DataFrame, returns: pl.DataFrame, ic: float, vol_window: int = 60
) -> pl.DataFrame:
    """``[date, symbol, mu]``: daily expected returns from the forecasts by Grinold's rule,
    ``mu = IC * sigma * z``, with ``z`` the score's cross-sectional z-score on the date and
    ``sigma`` the asset's trailing daily volatility (days up to and including the date)."""
    sigma = returns.sort(SYMBOL, DATE).select(
        SYMBOL,
        DATE,
        pl.col("ret")
        .rolling_std(vol_window, min_samples=vol_window // 2)
        .over(SYMBOL)
        .alias("sigma"),
    )
    z = (pl.col("score") - pl.col("score").mean()) / pl.col("score").std()
    return (
        signals.select(DATE, SYMBOL, z.over(DATE).alias("z"))
        .join(sigma, on=[SYMBOL, DATE])
        .select(DATE, SYMBOL, (ic * pl.col("sigma") * pl.col("z")).alias("mu"))
        .drop_nulls()
        .filter(pl.col("mu").is_finite())
    )


def _rebalance_windows(
    returns: pl.DataFrame,
    dates: pl.Series,
    lookback: int,
    mu: pl.DataFrame | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[object, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
    """``(day, symbols, keep, window, expected)`` for every rebalance date with a usable
    window: the trailing ``lookback`` days of returns up to the date, the symbols with a full
    history there (and, when ``mu`` is given, a forecast on the date) as the mask ``keep`` over
    ``symbols``, and their forecasts."""
    all_dates, symbols, matrix = to_dense(returns, "ret")
    forecasts = None
    if mu is not None:
        mu = mu.filter(pl.col(SYMBOL).is_in(symbols.tolist()))
        forecasts = {
            day: dict(zip(part[SYMBOL].to_list(), part["mu"].to_numpy(), strict=True))
            for (day,), part in mu.partition_by(DATE, as_dict=True).items()
        }
    for done, (day, stamp) in enumerate(zip(dates.to_list(), dates.to_numpy(), strict=True)):
        if progress is not None:
            progress(done, len(dates))
        end = np.searchsorted(all_dates, stamp, side="right")
        window = matrix[max(0, end - lookback) : end]
        if len(window) < lookback // 2:
            continue
        keep = ~np.isnan(window).any(axis=0)
        expected = None
        if forecasts is not None:
            today = forecasts.get(day, {})
            keep &= np.isin(symbols, list(today))
            expected = np.array([today[s] for s in symbols[keep]])
        if keep.sum() < 2:
            continue
        yield day, symbols, keep, window[:, keep], expected


def _frame(parts: list[tuple[object, np.ndarray, np.ndarray]]) -> pl.DataFrame:
    """``[date, symbol, weight]`` from ``(day, symbols, weights)`` parts."""
    if not parts:
        return pl.DataFrame(schema=WEIGHT_SCHEMA)
    return (
        pl.DataFrame(
            {
                "date": [day for day, names, _ in parts for _ in range(len(names))],
                "symbol": np.concatenate([names for _, names, _ in parts]),
                "weight": np.concatenate([w for _, _, w in parts]),
            }
        )
        .cast(WEIGHT_SCHEMA)
        .sort("date", "symbol")
    )


def optimised_weights(
    returns: pl.DataFrame,
    dates: pl.Series,
    build: Callable[..., object],
    lookback: int = 252,
    mu: pl.DataFrame | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Fit ``build(mu=, previous=, window=, day=, names=)`` (a skfolio optimiser) on the trailing
    ``lookback`` days of returns before each rebalance date and collect its ``weights_``;
    ``progress(done, total)`` is called before each date.

    Only symbols with a full return history in the window (and, when ``mu`` is given, a forecast
    on the date) take part. ``previous`` is the last date's weights on those symbols (zero for
    new ones), for turnover limits. One optimisation per rebalance date, by nature sequential.
    """
    parts, previous = [], None
    for day, symbols, keep, window, expected in _rebalance_windows(
        returns, dates, lookback, mu, progress
    ):
        if previous is None:
            previous = np.zeros(len(symbols))
        model = build(
            mu=expected, previous=previous[keep], window=window, day=day, names=symbols[keep]
        )
        model.fit(window)
        previous = np.zeros(len(symbols))
        previous[keep] = model.weights_
        parts.append((day, symbols[keep], np.asarray(model.weights_)))
    return _frame(parts)


def hrp_weights(
    returns: pl.DataFrame,
    dates: pl.Series,
    lookback: int = 252,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Hierarchical risk parity (skfolio) on the trailing ``lookback`` days before each date."""
    return optimised_weights(
        returns, dates, lambda **_: HierarchicalRiskParity(), lookback, progress=progress
    )


def risk_parity_weights(
    returns: pl.DataFrame,
    dates: pl.Series,
    lookback: int = 252,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Equal risk contributions on a Ledoit-Wolf covariance (skfolio ``RiskBudgeting``'s
    problem, solved by :func:`models.portfolio.solvers.risk_parity`, warm-started from the
    previous date's book)."""
    parts, last = [], {}
    for day, symbols, keep, window, _ in _rebalance_windows(
        returns, dates, lookback, progress=progress
    ):
        names = symbols[keep]
        start = np.array([last.get(s, np.nan) for s in names])
        w = risk_parity(shrunk_covariance(window), start if np.isfinite(start).all() else None)
        last = dict(zip(names, w, strict=True))
        parts.append((day, names, w))
    return _frame(parts)


def mean_variance_weights(
    returns: pl.DataFrame,
    dates: pl.Series,
    mu: pl.DataFrame,
    *,
    lookback: int = 252,
    risk_aversion: float = 5.0,
    max_weight: float = 0.2,
    long_short: bool = False,
    max_turnover: float | None = None,
    max_cluster_weight: float | None = None,
    n_clusters: int = 4,
    transaction_costs: pl.DataFrame | float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Mean-variance (skfolio ``MeanRisk``'s maximum utility ``mu'w - risk_aversion * w'Sw``)
    with the ML expected returns ``mu`` and a Ledoit-Wolf shrunk covariance.

    Long-only: fully invested, each weight in ``[0, max_weight]``. Long-short: dollar neutral,
    each weight in ``[-max_weight, max_weight]``, at most 1 long and 1 short. ``max_turnover``
    caps each asset's weight change against the previous rebalance's targets (skfolio's
    turnover bound is per asset; a date where it cannot be met keeps the previous book).
    ``transaction_costs`` (a rate, or ``[date, symbol, cost]`` per unit traded, in the units of
    ``mu``) puts costs in the objective, ``- cost'|w - previous|``, so the book trades a name
    only where the forecast gain beats the cost. ``max_cluster_weight`` caps each cluster's net
    weight (the ``n_clusters`` clusters of the window's return correlations, re-formed at every
    rebalance; solved by skfolio on every name).

    Solved exactly on a working set (:func:`models.portfolio.solvers.mean_variance`), except
    with a cluster cap.
    """
    if max_cluster_weight is not None:
        if transaction_costs is not None:
            raise ValueError("a cluster-capped mean-variance book takes no transaction costs")
        return _mean_variance_skfolio(
            returns,
            dates,
            mu,
            lookback=lookback,
            risk_aversion=risk_aversion,
            max_weight=max_weight,
            long_short=long_short,
            max_turnover=max_turnover,
            max_cluster_weight=max_cluster_weight,
            n_clusters=n_clusters,
            progress=progress,
        )
    per_day = _costs_by_day(transaction_costs)
    parts, held = [], {}
    for day, symbols, keep, window, expected in _rebalance_windows(
        returns, dates, lookback, mu, progress
    ):
        names = symbols[keep]
        previous = np.array([held.get(s, 0.0) for s in names])
        w = mean_variance(
            expected,
            shrunk_covariance(window),
            risk_aversion=risk_aversion,
            max_weight=max_weight,
            long_short=long_short,
            previous=previous,
            costs=None if per_day is None else per_day(day, names),
            max_turnover=max_turnover if previous.any() else None,
        )
        if w is None:  # the turnover bound cannot be met: keep the previous book
            w = previous
        held = dict(zip(names, w, strict=True))
        parts.append((day, names, w))
    return _frame(parts)


def _costs_by_day(
    costs: pl.DataFrame | float | None,
) -> Callable[[object, np.ndarray], np.ndarray] | None:
    """``rates(day, names)``: each name's cost rate on the day (a constant rate for all; a
    name without a figure that day pays the day's median)."""
    if costs is None:
        return None
    if isinstance(costs, int | float):
        return lambda day, names: np.full(len(names), float(costs))
    table = {
        day: dict(zip(part[SYMBOL].to_list(), part["cost"].to_numpy(), strict=True))
        for (day,), part in costs.partition_by(DATE, as_dict=True).items()
    }

    def rates(day: object, names: np.ndarray) -> np.ndarray:
        today = table.get(day, {})
        out = np.array([today.get(s, np.nan) for s in names], dtype=float)
        return np.where(np.isnan(out), np.nanmedian(out) if np.isfinite(out).any() else 0.0, out)

    return rates


def _mean_variance_skfolio(
    returns: pl.DataFrame,
    dates: pl.Series,
    mu: pl.DataFrame,
    *,
    lookback: int,
    risk_aversion: float,
    max_weight: float,
    long_short: bool,
    max_turnover: float | None,
    max_cluster_weight: float | None,
    n_clusters: int,
    progress: Callable[[int, int], None] | None,
) -> pl.DataFrame:
    """skfolio's ``MeanRisk`` per rebalance date (the cluster-capped book)."""

    def build(mu: np.ndarray, previous: np.ndarray, window: np.ndarray, **_) -> MeanRisk:
        bounds = {
            "min_weights": -max_weight if long_short else 0.0,
            "max_weights": max_weight,
            "budget": 0.0 if long_short else 1.0,
        }
        if long_short:
            bounds |= {"max_long": 1.0, "max_short": 1.0}
        if max_turnover is not None and previous.any():
            bounds |= {"max_turnover": max_turnover, "previous_weights": previous}
        if max_cluster_weight is not None:
            labels = correlation_clusters(window, min(n_clusters, window.shape[1]))
            bounds |= cluster_constraints(labels, max_cluster_weight, long_short)
        return MeanRisk(
            objective_function=ObjectiveFunction.MAXIMIZE_UTILITY,
            risk_measure=RiskMeasure.VARIANCE,
            risk_aversion=risk_aversion,
            prior_estimator=EmpiricalPrior(
                mu_estimator=ForecastMu(mu), covariance_estimator=LedoitWolf()
            ),
            # a turnover cap can make a day's problem infeasible: keep the previous book then
            fallback="previous_weights" if max_turnover is not None else None,
            **bounds,
        )

    return optimised_weights(returns, dates, build, lookback, mu, progress)
