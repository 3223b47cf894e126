"""Exact solutions of the optimiser books' problems, at a fraction of a general conic solve.

skfolio's ``MeanRisk`` and ``RiskBudgeting`` build a new cvxpy problem over every asset at every
rebalance and hand it to Clarabel: on 500 names that is about 1 s (mean-variance) and 2.5 s (risk
parity) per date, over 200 dates per book. The problems themselves are the same here; what
changes is how much of them a solver sees:

* **Mean-variance** (maximum utility ``mu'w - risk_aversion * w'Sw - c'|w - w0|`` under box,
  budget, gross and per-asset turnover bounds, as skfolio states it). Its solutions are sparse
  (a handful of names at the cap, the rest at zero), so it is solved on a *working set* (the
  names held before and the best forecasts) by Clarabel, the solver skfolio's cvxpy problems
  reach (handed its matrices directly: building a cvxpy problem costs 25 times the solve), and the
  Karush-Kuhn-Tucker conditions of the full problem are then checked for every name left out,
  with the working problem's dual values: a name whose marginal utility beats its marginal cost
  and the constraints' prices joins the set and the set is solved again. When no name
  violates them the working solution is the full problem's optimum (the problem is convex and
  strictly so in ``w``, so that optimum is unique): the same weights, not an approximation.
* **Risk parity** (equal risk contributions on the variance). Spinu (2013) shows that the
  solution is ``x / sum(x)`` for the unique minimiser ``x > 0`` of the strictly convex
  ``x'Sx / 2 - b'log(x)``; a damped Newton method reaches it to machine precision in a few
  steps, warm-started from the previous date's book. Written here because no maintained
  library solves it this way: skfolio and riskfolio go through an exponential-cone program.

``benchmarks/reference_portfolio.py`` keeps the per-date skfolio code, and ``make bench``
checks that both give the same weights to 1e-6.
"""

import clarabel
import numpy as np
from scipy import sparse
from sklearn.covariance import ledoit_wolf

# Clarabel's defaults (gaps of 1e-8) leave a 0.2 weight uncertain in the sixth decimal; these
# pin it to about 1e-8 (the working problems are small, so the extra steps cost little)
TOLERANCES = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "max_iter": 500}
DUST = 1e-10  # a weight below this is the solver's rounding of zero


def shrunk_covariance(window: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf covariance of a return window: scikit-learn's estimator, as skfolio's
    ``LedoitWolf`` computes it (always positive definite, so skfolio's nearest-PD step leaves
    it as it is)."""
    return ledoit_wolf(window)[0]


def mean_variance(
    mu: np.ndarray,
    cov: np.ndarray,
    *,
    risk_aversion: float,
    max_weight: float,
    long_short: bool = False,
    previous: np.ndarray | None = None,
    costs: np.ndarray | None = None,
    max_turnover: float | None = None,
    start: int = 10,
) -> np.ndarray | None:
    """Weights maximising ``mu'w - risk_aversion * w'Sw - costs'|w - previous|``.

    Long-only: ``sum(w) = 1``, ``0 <= w <= max_weight``. Long-short: ``sum(w) = 0``,
    ``|w| <= max_weight``, longs and shorts at most 1 each. ``max_turnover`` bounds each
    ``|w - previous|``. Returns None when the problem is infeasible (a turnover bound that the
    budget cannot meet).

    The working set starts with the previously held names and the ``start`` best (and, long-
    short, worst) forecasts beyond the ``1 / max_weight`` names a full book needs."""
    n = len(mu)
    previous = np.zeros(n) if previous is None else np.asarray(previous, dtype=float)
    costs = np.zeros(n) if costs is None else np.broadcast_to(np.asarray(costs, float), (n,))
    need = int(np.ceil(1.0 / max_weight)) + start
    order = np.argsort(-mu, kind="stable")
    chosen = np.zeros(n, dtype=bool)
    chosen[previous != 0] = True
    chosen[order[:need]] = True
    if long_short:
        chosen[order[-need:]] = True
    scale = 1.0 / max(float(np.abs(mu).max()), 1e-12)  # conditioning only: same optimum
    while True:
        idx = np.flatnonzero(chosen)
        solved = _working_problem(
            mu[idx] * scale,
            cov[np.ix_(idx, idx)] * scale,
            risk_aversion,
            max_weight,
            long_short,
            previous[idx],
            costs[idx] * scale,
            max_turnover,
        )
        if solved is None:
            if chosen.all():
                return None
            chosen[:] = True  # infeasible on the set: judge the whole problem
            continue
        w_set, budget_price, long_price, short_price = solved
        if chosen.all():
            break
        out = np.flatnonzero(~chosen)
        # marginal change of the (minimised) objective and the budget's price, per name left out
        grad = (2 * risk_aversion * (cov[np.ix_(out, idx)] @ w_set) - mu[out]) * scale
        grad = grad + budget_price
        tol = 1e-7
        gain_up = -(grad + costs[out] * scale + long_price)  # buying it would pay
        gain_down = grad - costs[out] * scale - short_price if long_short else -np.inf
        gain = np.maximum(gain_up, gain_down)
        violators = np.flatnonzero(gain > tol)
        if not len(violators):
            break
        # the most violated first, at most doubling the set a round: a set solved with too few
        # names prices its budget high and makes hundreds look attractive at once, most of
        # which the next solve leaves at zero
        grow = max(need, len(idx))
        if len(violators) > grow:
            violators = violators[np.argpartition(-gain[violators], grow)[:grow]]
        chosen[out[violators]] = True
    weights = np.zeros(n)
    # an interior-point solve leaves ~1e-15 on the names the optimum holds at zero: they are
    # no position (and would hold every name in the next date's working set)
    weights[idx] = np.where(np.abs(w_set) < DUST, 0.0, w_set)
    return weights


def _working_problem(
    mu: np.ndarray,
    cov: np.ndarray,
    risk_aversion: float,
    max_weight: float,
    long_short: bool,
    previous: np.ndarray,
    costs: np.ndarray,
    max_turnover: float | None,
) -> tuple[np.ndarray, float, float, float] | None:
    """The problem on a working set, handed to Clarabel (the solver skfolio's cvxpy problems
    reach) in its own form, ``min x'Px/2 + q'x`` s.t. ``Ax + s = b``, ``s`` in a zero cone (the
    budget) and a non-negative cone (the bounds): a cvxpy problem of 50 names costs ~25 ms to
    build, the solve itself ~1 ms. Returns the weights and the dual prices of the budget, the
    long and the short exposure (zero when not bound).

    Variables: ``w``; with costs ``u >= |w - previous|``; long-short ``p >= max(w, 0)`` and
    ``g >= max(-w, 0)`` with ``sum(p) <= 1``, ``sum(g) <= 1`` (skfolio's ``max_long`` and
    ``max_short``)."""
    m = len(mu)
    blocks = ["w"] + (["u"] if costs.any() else []) + (["p", "g"] if long_short else [])
    at = {name: i * m for i, name in enumerate(blocks)}
    n = m * len(blocks)
    P = np.zeros((n, n))
    P[:m, :m] = 2 * risk_aversion * cov
    q = np.zeros(n)
    q[:m] = -mu
    if "u" in at:
        q[at["u"] : at["u"] + m] = costs
    rows, rhs = [], []

    def row(terms: dict[str, np.ndarray], bound: np.ndarray | float) -> None:
        block = np.zeros((m, n)) if np.ndim(bound) else np.zeros((1, n))
        for name, coef in terms.items():
            if np.ndim(bound):
                block[:, at[name] : at[name] + m] = np.diag(np.broadcast_to(coef, (m,)))
            else:
                block[0, at[name] : at[name] + m] = coef
        rows.append(block)
        rhs.append(np.atleast_1d(np.broadcast_to(bound, (m,)) if np.ndim(bound) else bound))

    eye = np.ones(m)
    row({"w": eye}, 0.0 if long_short else 1.0)  # the budget: the zero cone's one row
    row({"w": eye}, np.full(m, max_weight))
    row({"w": -eye}, np.full(m, max_weight if long_short else 0.0))
    if "u" in at:
        row({"w": eye, "u": -eye}, previous)
        row({"w": -eye, "u": -eye}, -previous)
    if max_turnover is not None:
        row({"w": eye}, previous + max_turnover)
        row({"w": -eye}, -(previous - max_turnover))
    longs = shorts = None
    if long_short:
        row({"w": eye, "p": -eye}, np.zeros(m))
        row({"p": -eye}, np.zeros(m))
        row({"w": -eye, "g": -eye}, np.zeros(m))
        row({"g": -eye}, np.zeros(m))
        longs = sum(len(r) for r in rhs)
        row({"p": eye}, 1.0)
        shorts = sum(len(r) for r in rhs)
        row({"g": eye}, 1.0)
    A, b = np.vstack(rows), np.concatenate(rhs)
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    for key, value in TOLERANCES.items():
        setattr(settings, key, value)
    solver = clarabel.DefaultSolver(
        sparse.triu(sparse.csc_matrix(P), format="csc"),
        q,
        sparse.csc_matrix(A),
        b,
        [clarabel.ZeroConeT(1), clarabel.NonnegativeConeT(len(b) - 1)],
        settings,
    )
    solution = solver.solve()
    if solution.status not in (clarabel.SolverStatus.Solved, clarabel.SolverStatus.AlmostSolved):
        return None
    x, z = np.asarray(solution.x), np.asarray(solution.z)
    price = lambda i: 0.0 if i is None else float(z[i])  # noqa: E731
    return x[:m], float(z[0]), price(longs), price(shorts)


def risk_parity(
    cov: np.ndarray, start: np.ndarray | None = None, tol: float = 1e-14, max_iter: int = 100
) -> np.ndarray:
    """Equal-risk-contribution weights for ``cov``: ``x / sum(x)`` with ``x`` the minimiser of
    ``x'Sx / 2 - mean(log(x))`` (Spinu 2013), by damped Newton steps from ``start`` (a previous
    book) or the inverse volatilities."""
    n = len(cov)
    b = np.full(n, 1.0 / n)
    vol = np.sqrt(np.diag(cov))
    x = (1.0 / vol) if start is None or not np.all(start > 0) else np.asarray(start, float)
    # rescale so that x'Sx = 1 (the minimiser's own scale: x'Sx = sum(b) at the optimum)
    x = x / np.sqrt(x @ cov @ x)

    def f(z: np.ndarray) -> float:
        return 0.5 * z @ cov @ z - b @ np.log(z)

    for _ in range(max_iter):
        grad = cov @ x - b / x
        hess = cov + np.diag(b / x**2)
        step = np.linalg.solve(hess, -grad)
        decrement = -grad @ step
        if decrement / 2 <= tol:
            break
        t, fx = 1.0, f(x)
        while np.any(x + t * step <= 0) or f(x + t * step) > fx - 0.25 * t * decrement:
            t *= 0.5
            if t < 1e-12:
                break
        x = x + t * step
    return x / x.sum()
