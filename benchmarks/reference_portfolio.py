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


def polish_on_active_set(
    mu: np.ndarray,
    cov: np.ndarray,
    previous: np.ndarray,
    cost: float,
    weights: np.ndarray,
    *,
    risk_aversion: float = 5.0,
    max_weight: float = 0.2,
    long_short: bool = False,
    tol: float = 1e-5,
) -> np.ndarray | None:
    """The reference's book solved exactly on the structure it found (OSQP's "polish" step):
    every name the interior-point answer leaves within ``tol`` of a kink (a bound, its previous
    weight, zero for long-short) stays there; the rest keep their side of each kink and move
    to the exact optimum of the equality-constrained problem that leaves (one linear system).
    The result is then checked against the full problem's optimality conditions.

    Interior-point solvers stop a little short of the optimum (and a little outside the box:
    ~1e-12 on hundreds of names); where the objective is nearly flat along the cost kinks, that
    leaves weights apart in the sixth decimal although the objective agrees to 1e-13. The
    polished book is the reference's own answer made exact and certified optimal by the
    conditions, independent of the working-set code it is compared with. Written by hand:
    cvxpy and Clarabel have no polish step (OSQP has, but cannot take skfolio's conic
    problem). Returns None where the polished book leaves a side it was given, leaves the box
    or fails the conditions (a name taken for a kink that is not one): that date keeps the raw
    reference."""
    lo = -max_weight if long_short else 0.0
    n = len(weights)
    fixed = np.full(n, np.nan)
    at_previous = np.abs(weights - previous) < tol
    fixed[at_previous] = previous[at_previous]
    if long_short:
        fixed[np.abs(weights) < tol] = 0.0
    fixed[np.abs(weights - lo) < tol] = lo
    fixed[np.abs(weights - max_weight) < tol] = max_weight
    free = np.isnan(fixed)
    if not free.any():  # nothing to solve, so no prices to certify it by: keep the raw answer
        return None
    side = np.sign(weights - previous)[free]
    sign = np.sign(weights)[free]
    base = np.where(free, 0.0, fixed)
    rows, rhs = [np.ones(free.sum())], [(0.0 if long_short else 1.0) - base.sum()]
    if long_short and abs(np.maximum(weights, 0).sum() - 1.0) < tol:
        # the long side's gross bound binds (the short side's then follows from the budget)
        rows.append((sign > 0).astype(float))
        rhs.append(1.0 - np.maximum(base, 0).sum())
    E = np.array(rows)
    q = mu[free] - cost * side - 2 * risk_aversion * (cov[np.ix_(free, ~free)] @ base[~free])
    k = len(rows)
    kkt = np.block([[2 * risk_aversion * cov[np.ix_(free, free)], E.T], [E, np.zeros((k, k))]])
    solution = np.linalg.lstsq(kkt, np.concatenate([q, rhs]), rcond=None)[0]
    polished = base.copy()
    polished[free] = solution[: free.sum()]
    budget_price = solution[free.sum()]
    long_price = solution[free.sum() + 1] if k == 2 else 0.0
    moved = polished[free]
    kept_sides = np.all(np.sign(moved - previous[free]) == side) and (
        not long_short or np.all(np.sign(moved) == sign)
    )
    in_box = np.all(polished >= lo - 1e-12) and np.all(polished <= max_weight + 1e-12)
    # the full problem's optimality conditions at the names held at a kink: no move up or down
    # gains, at the prices the free names set (a long name's budget price includes the long
    # side's gross bound, which must price at or above zero); with them the polished book is
    # the unique optimum, whatever found it
    gradient = mu - 2 * risk_aversion * (cov @ polished)
    held = ~free
    w, w0 = polished[held], previous[held]
    up_price = budget_price + np.where(w >= 0, long_price, 0.0)
    down_price = budget_price + np.where(w > 0, long_price, 0.0)
    # a previous weight within 1e-9 is the kink itself (the previous book carries the solver's
    # ~1e-12 dust: a move of that size is no trade)
    gain_up = gradient[held] - up_price - cost * np.where(w >= w0 - 1e-9, 1.0, -1.0)
    gain_down = down_price - gradient[held] - cost * np.where(w <= w0 + 1e-9, 1.0, -1.0)
    scale = float(np.abs(mu).max())
    slack = 1e-6 * scale
    optimal = (
        long_price >= -slack
        and np.all(np.where(w < max_weight, gain_up, -np.inf) <= slack)
        and np.all(np.where(w > lo, gain_down, -np.inf) <= slack)
    )
    return polished if kept_sides and in_box and optimal else None
