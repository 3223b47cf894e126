"""Value at risk and expected shortfall: six estimators, their rolling one-day-ahead forecasts.

Losses are positive fractions of value (VaR 0.02 = a 2 % loss). ``level`` is the confidence
(0.99: the loss is exceeded on 1 % of days). Every estimator takes a sample of past returns
and nothing after it, so a rolling forecast dated ``t`` uses returns strictly before ``t``.

- ``historical``: the empirical quantile and tail mean (skfolio's measures);
- ``normal`` and ``student_t``: parametric fits (scipy);
- ``cornish_fisher``: the normal quantile corrected for sample skewness and excess kurtosis;
  its ES integrates the corrected quantile over the tail;
- ``evt``: peaks over a threshold with a generalized Pareto tail (scipy), the threshold the
  ``evt_threshold`` quantile of losses, reported with the fitted shape;
- ``fhs_garch``: filtered historical simulation: a GARCH(1,1) (arch) scales the empirical
  quantile of its standardised residuals by the forecast volatility; beyond one day, arch's
  bootstrap simulates the paths;
- ``neural``: an MLP on recent returns and volatilities trained with the FZ0 joint VaR-ES loss
  (``models.risk.neural_var``).

A horizon ``h`` > 1 fits the static methods to overlapping compounded ``h``-day returns.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from arch import arch_model
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats
from skfolio.measures import cvar, value_at_risk

METHODS = ("historical", "normal", "student_t", "cornish_fisher", "evt", "fhs_garch", "neural")
MIN_OBS = 30


@dataclass(frozen=True)
class Estimate:
    var: float
    es: float
    detail: dict = field(default_factory=dict)


def horizon_returns(returns: np.ndarray, horizon: int) -> np.ndarray:
    """Overlapping compounded ``horizon``-day returns."""
    if horizon == 1:
        return returns
    log = np.convolve(np.log1p(returns), np.ones(horizon), "valid")
    return np.expm1(log)


def _t_fit(returns: np.ndarray) -> tuple[float, float, float]:
    df, loc, scale = stats.t.fit(returns)
    return max(df, 2.05), loc, scale  # the ES of a t needs df > 1; below 2 no variance


def _t_risk(params: tuple[float, float, float], level: float) -> Estimate:
    df, loc, scale = params
    q = stats.t.ppf(1 - level, df)
    # Lower-tail mean of a standard t: -f(q) / p * (df + q^2) / (df - 1).
    tail = stats.t.pdf(q, df) / (1 - level) * (df + q**2) / (df - 1)
    return Estimate(float(-(loc + scale * q)), float(-loc + scale * tail), {"df": float(df)})


def _cornish_fisher_z(z: np.ndarray, skew: np.ndarray, kurt: np.ndarray) -> np.ndarray:
    """Cornish-Fisher expansion of a normal quantile ``z`` (excess kurtosis ``kurt``)."""
    return (
        z + (z**2 - 1) * skew / 6 + (z**3 - 3 * z) * kurt / 24 - (2 * z**3 - 5 * z) * skew**2 / 36
    )


def _cornish_fisher(windows: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise Cornish-Fisher VaR and ES of ``windows`` (one sample per row)."""
    mu = windows.mean(axis=1, keepdims=True)
    sigma = windows.std(axis=1, ddof=1, keepdims=True)
    skew = stats.skew(windows, axis=1)[:, None]
    kurt = stats.kurtosis(windows, axis=1)[:, None]
    p = 1 - level
    # ES = mean of the quantile function over the tail (0, p): midpoints of 200 slices.
    grid = stats.norm.ppf(p * (np.arange(200) + 0.5) / 200)[None, :]
    var = -(mu + sigma * _cornish_fisher_z(np.full_like(mu, stats.norm.ppf(p)), skew, kurt))
    es = -(mu + sigma * _cornish_fisher_z(grid, skew, kurt).mean(axis=1, keepdims=True))
    return var[:, 0], es[:, 0]


def _gpd_fit(returns: np.ndarray, threshold: float = 0.9) -> dict:
    """Peaks over threshold: losses above their ``threshold`` quantile follow a GPD."""
    losses = -returns
    u = float(np.quantile(losses, threshold))
    excess = losses[losses > u] - u
    if len(excess) < 10:
        raise ValueError(f"EVT needs at least 10 exceedances of the threshold, got {len(excess)}")
    xi, _, beta = stats.genpareto.fit(excess, floc=0)
    return {"threshold": u, "xi": float(xi), "beta": float(beta), "tail": len(excess) / len(losses)}


def _gpd_risk(fit: dict, level: float) -> Estimate:
    u, xi, beta, tail = fit["threshold"], fit["xi"], fit["beta"], fit["tail"]
    p = 1 - level
    if abs(xi) < 1e-6:
        var = u - beta * np.log(p / tail)
    else:
        var = u + beta / xi * ((p / tail) ** -xi - 1)
    # Mean excess of a GPD over var (xi < 1): ES = (VaR + beta - xi u) / (1 - xi).
    es = (var + beta - xi * u) / (1 - xi) if xi < 1 else np.inf
    return Estimate(float(var), float(es), {"threshold": u, "xi": xi})


def _garch(returns: np.ndarray):
    # arch fits best on percent returns; rescaling is fixed so every window is comparable.
    return arch_model(100 * returns, mean="Constant", vol="GARCH", p=1, q=1, rescale=False)


def _fhs_levels(
    returns: np.ndarray,
    levels: Sequence[float],
    horizon: int = 1,
    simulations: int = 2000,
    seed: int = 0,
) -> dict[float, Estimate]:
    res = _garch(returns).fit(disp="off")
    z = res.std_resid[np.isfinite(res.std_resid)]
    if horizon == 1:
        mu = res.params["mu"]
        sigma = np.sqrt(res.forecast(horizon=1).variance.to_numpy()[-1, 0])
        return {
            level: Estimate(
                float(-(mu + sigma * -value_at_risk(z, beta=level)) / 100),
                float(-(mu + sigma * -cvar(z, beta=level)) / 100),
                {"sigma_1d": float(sigma / 100)},
            )
            for level in levels
        }
    fc = res.forecast(
        horizon=horizon,
        method="bootstrap",
        simulations=simulations,
        random_state=np.random.RandomState(seed),
    )
    paths = fc.simulations.values[-1] / 100  # (simulations, horizon) daily returns
    total = np.expm1(np.log1p(paths).sum(axis=1))
    return {level: _static(total, "historical", level) for level in levels}


DAILY = ("historical", "normal", "cornish_fisher")  # closed forms, vectorised over windows


def _static(sample: np.ndarray, method: str, level: float) -> Estimate:
    var, es = _daily(sample[None, :], method, level)
    return Estimate(float(np.asarray(var)[0]), float(np.asarray(es)[0]))


def estimate_levels(
    returns: np.ndarray, method: str, levels: Sequence[float], horizon: int = 1
) -> dict[float, Estimate]:
    """VaR and ES of the next ``horizon`` days at every level from a sample of past daily
    returns; a fitted method is fitted once for all levels."""
    r = np.asarray(returns, dtype=float)
    r = r[np.isfinite(r)]
    if len(r) < MIN_OBS:
        raise ValueError(f"need at least {MIN_OBS} returns for VaR, got {len(r)}")
    if method == "fhs_garch":
        return _fhs_levels(r, levels, horizon)
    h = horizon_returns(r, horizon)
    if method == "neural":
        from models.risk.neural_var import fit_predict  # torch: imported only when asked for

        fitted = fit_predict(np.append(h, 0.0), slice(0, len(h)), slice(len(h), None), levels)
        return {lv: Estimate(float(v[0]), float(e[0])) for lv, (v, e) in fitted.items()}
    if method in HELD:
        fit, risk = HELD[method]
        params = fit(h)
        return {level: risk(params, level) for level in levels}
    if method not in DAILY:
        raise ValueError(f"unknown VaR method {method!r}; choose from {METHODS}")
    return {level: _static(h, method, level) for level in levels}


def estimate(returns: np.ndarray, method: str, level: float, horizon: int = 1) -> Estimate:
    """VaR and ES of the next ``horizon`` days from a sample of past daily returns."""
    return estimate_levels(returns, method, (level,), horizon)[level]


def var_table(
    returns: np.ndarray,
    levels: Sequence[float] = (0.95, 0.99),
    horizons: Sequence[int] = (1,),
    methods: Sequence[str] = METHODS,
) -> pl.DataFrame:
    """VaR and ES of every method, level and horizon from one return series."""
    rows = []
    for method in methods:
        for horizon in horizons:
            for level, e in estimate_levels(returns, method, tuple(levels), horizon).items():
                note = ", ".join(f"{k} {v:.4g}" for k, v in e.detail.items())
                rows.append((method, level, horizon, e.var, e.es, note))
    return pl.DataFrame(
        rows,
        schema={
            "method": pl.String,
            "level": pl.Float64,
            "horizon_days": pl.Int64,
            "var": pl.Float64,
            "es": pl.Float64,
            "note": pl.String,
        },
        orient="row",
    )


def rolling_forecasts(
    returns: np.ndarray,
    methods: Sequence[str] = METHODS,
    levels: Sequence[float] = (0.95, 0.99),
    window: int = 500,
    refit_every: int = 20,
) -> dict[tuple[str, float], tuple[np.ndarray, np.ndarray]]:
    """One-day-ahead VaR and ES for every day ``t >= window`` from ``returns[t - window:t]``.

    Returns ``{(method, level): (var, es)}``, arrays as long as ``returns`` with NaN for the
    first ``window`` days. Historical, normal and Cornish-Fisher are re-estimated every day
    (vectorised over windows); Student-t and EVT, maximum-likelihood fits, every
    ``refit_every`` days and held in between; GARCH is refitted every ``refit_every`` days
    and filters its volatility forward every day with the fitted parameters; the neural net
    is refitted every ``max(refit_every, 60)`` days and reads each day's recent returns.
    """
    r = np.asarray(returns, dtype=float)
    if not np.isfinite(r).all():
        raise ValueError("rolling VaR needs a gap-free return series (no NaN)")
    n = len(r)
    if n <= window:
        raise ValueError(f"need more than window={window} returns, got {n}")
    windows = sliding_window_view(r, window)[:-1]  # row i: r[i:i+window], forecasts day i+window
    out: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}

    def place(values: np.ndarray) -> np.ndarray:
        full = np.full(n, np.nan)
        full[window:] = values
        return full

    for method in methods:
        if method in HELD:
            fit, risk = HELD[method]
            for level, (var, es) in _held(windows, refit_every, fit, risk, levels).items():
                out[(method, level)] = (place(var), place(es))
        elif method == "fhs_garch":
            for level, (var, es) in _rolling_fhs(r, levels, window, refit_every).items():
                out[(method, level)] = (var, es)
        elif method == "neural":
            from models.risk.neural_var import rolling_neural

            for level, (var, es) in rolling_neural(r, levels, window, refit_every).items():
                out[(method, level)] = (var, es)
        elif method in DAILY:
            for level in levels:
                out[(method, level)] = tuple(place(a) for a in _daily(windows, method, level))
        else:
            raise ValueError(f"unknown VaR method {method!r}; choose from {METHODS}")
    return out


def _daily(windows: np.ndarray, method: str, level: float) -> tuple[np.ndarray, np.ndarray]:
    """VaR and ES of every window (row) at once: the empirical quantile and tail mean
    (skfolio), the normal's, or Cornish-Fisher's."""
    if method == "historical":
        return value_at_risk(windows.T, beta=level), cvar(windows.T, beta=level)
    if method == "normal":
        mu, sigma = windows.mean(axis=1), windows.std(axis=1, ddof=1)
        z = stats.norm.ppf(1 - level)
        return -(mu + sigma * z), -mu + sigma * stats.norm.pdf(z) / (1 - level)
    return _cornish_fisher(windows, level)


HELD = {"student_t": (_t_fit, _t_risk), "evt": (_gpd_fit, _gpd_risk)}


def _held(
    windows: np.ndarray, every: int, fit, risk, levels: Sequence[float]
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Refit on every ``every``-th window and hold the estimate for the days in between."""
    # A maximum-likelihood fit per window has no vectorised form in scipy; refits are spaced.
    starts = np.arange(0, len(windows), every)
    fits = [fit(windows[s]) for s in starts]
    idx = np.repeat(np.arange(len(starts)), every)[: len(windows)]
    out = {}
    for level in levels:
        risks = [risk(f, level) for f in fits]
        out[level] = (np.array([e.var for e in risks])[idx], np.array([e.es for e in risks])[idx])
    return out


def _rolling_fhs(
    r: np.ndarray, levels: Sequence[float], window: int, every: int
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    n = len(r)
    model = _garch(r)
    var = {lv: np.full(n, np.nan) for lv in levels}
    es = {lv: np.full(n, np.nan) for lv in levels}
    for start in range(window, n, every):
        # Parameters from the window before ``start``; the variance recursion then runs over
        # the whole series with them fixed, and row t of the forecast is made at t for t + 1.
        res = model.fit(first_obs=start - window, last_obs=start, disp="off")
        stop = min(start + every, n)
        sigma = np.sqrt(res.forecast(horizon=1, start=start - 1).variance.to_numpy()[:, 0])
        sigma = sigma[: stop - start]
        z = res.std_resid[start - window : start]
        mu = res.params["mu"]
        for lv in levels:
            var[lv][start:stop] = -(mu - sigma * value_at_risk(z, beta=lv)) / 100
            es[lv][start:stop] = -(mu - sigma * cvar(z, beta=lv)) / 100
    return {lv: (var[lv], es[lv]) for lv in levels}
