"""The optimiser books as they were built before the fast solvers (issue 21): one skfolio
problem over every name per rebalance date. ``make bench`` times them against
``models.portfolio`` in the same run and checks the weights agree to 1e-6; a test does the same
on a few dates."""

import numpy as np
import polars as pl
from skfolio import RiskMeasure
from skfolio.moments import LedoitWolf
from skfolio.optimization import MeanRisk, ObjectiveFunction, RiskBudgeting
from skfolio.prior import EmpiricalPrior

from models.portfolio.allocators import ForecastMu, _costs_by_day, optimised_weights
from models.portfolio.solvers import TOLERANCES

# Clarabel's defaults stop at gaps of 1e-8, which leaves a 0.2 weight uncertain in the sixth
# decimal (5e-6 seen on 493 names); the equality check solves the reference as tightly as the
# fast solvers do (its timing uses the defaults, as the old code did).
TIGHT = TOLERANCES


def risk_parity_reference(
    returns: pl.DataFrame,
    dates: pl.Series,
    lookback: int = 252,
    solver_params: dict | None = None,
    scale_objective: float | None = None,
) -> pl.DataFrame:
    """Equal risk contributions (skfolio ``RiskBudgeting``) on a Ledoit-Wolf covariance."""
    return optimised_weights(
        returns,
        dates,
        lambda **_: RiskBudgeting(
            risk_measure=RiskMeasure.VARIANCE,
            prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()),
            solver_params=solver_params,
            scale_objective=scale_objective,
        ),
        lookback,
    )


def mean_variance_reference(
    returns: pl.DataFrame,
    dates: pl.Series,
    mu: pl.DataFrame,
    *,
    lookback: int = 252,
    risk_aversion: float = 5.0,
    max_weight: float = 0.2,
    long_short: bool = False,
    max_turnover: float | None = None,
    transaction_costs: pl.DataFrame | float | None = None,
    solver_params: dict | None = None,
    scale_objective: float | None = None,
) -> pl.DataFrame:
    """skfolio ``MeanRisk`` (maximum utility, variance, Ledoit-Wolf) on every name each date;
    with ``transaction_costs``, skfolio's own ``transaction_costs`` and ``previous_weights``."""
    rates = _costs_by_day(transaction_costs)

    def build(mu: np.ndarray, previous: np.ndarray, window: np.ndarray, day, names) -> MeanRisk:
        bounds = {
            "min_weights": -max_weight if long_short else 0.0,
            "max_weights": max_weight,
            "budget": 0.0 if long_short else 1.0,
        }
        if long_short:
            bounds |= {"max_long": 1.0, "max_short": 1.0}
        if max_turnover is not None and previous.any():
            bounds |= {"max_turnover": max_turnover, "previous_weights": previous}
        if rates is not None:
            bounds |= {"transaction_costs": rates(day, names), "previous_weights": previous}
        return MeanRisk(
            objective_function=ObjectiveFunction.MAXIMIZE_UTILITY,
            risk_measure=RiskMeasure.VARIANCE,
            risk_aversion=risk_aversion,
            prior_estimator=EmpiricalPrior(
                mu_estimator=ForecastMu(mu), covariance_estimator=LedoitWolf()
            ),
            fallback="previous_weights" if max_turnover is not None else None,
            solver_params=solver_params,
            scale_objective=scale_objective,
            **bounds,
        )

    return optimised_weights(returns, dates, build, lookback, mu)
