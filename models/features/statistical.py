"""Statistical forecasts as features: ARMA(1,1) expected return and GARCH(1,1) volatility.

Both are fitted per symbol with their libraries (statsmodels ``ARIMA``, arch ``arch_model``) on
a trailing window of daily returns, refitted every ``refit_every`` trading days, and between
refits *filtered* forward with the fixed parameters. A value dated ``t`` uses parameters
estimated on returns strictly before the block it lies in and returns up to ``t`` only, so it is
known at ``t``'s close (the perturbation test in ``tests/unit/features/test_statistical.py`` proves it).

Why the filter is written here: statsmodels and arch re-run their filters over the whole
sample on each call (``apply``/``fix``), which makes a point-in-time series O(n^2). The two
recursions are linear filters, so ``scipy.signal.lfilter`` runs each block in one vectorised
pass:

* ARMA(1,1) innovations ``e_t = x_t - phi x_{t-1} - theta e_{t-1}`` (``x = r - mu``), one-step
  forecast ``f_t = phi x_t + theta e_t``, h-step cumulative ``h mu + f_t (1 - phi^h)/(1 - phi)``;
* GARCH(1,1) next-day variance ``s_{t+1} = omega + alpha e_t^2 + beta s_t``.
"""

import warnings

import numpy as np
import polars as pl
from arch import arch_model
from joblib import Parallel, delayed
from scipy.signal import lfilter, lfiltic
from statsmodels.tsa.arima.model import ARIMA

from models.features.registry import describe_rows
from models.types import CLOSE, DATE, SYMBOL

STAT_COLUMNS = ("stat_arima", "stat_garch_vol", "stat_arima_z")
PREFIX = "stat_"
DESCRIPTIONS = {
    "stat_arima": "ARMA(1,1) forecast of the h-day log return (statsmodels, refitted on a "
    "trailing window, filtered point-in-time)",
    "stat_garch_vol": "GARCH(1,1) forecast of next-day volatility (arch, refitted on a trailing "
    "window, filtered point-in-time)",
    "stat_arima_z": "ARMA forecast divided by the GARCH volatility over the horizon",
}


def _arma_block(x: np.ndarray, phi: float, theta: float, horizon: int) -> np.ndarray:
    e = lfilter([1.0, -phi], [1.0, theta], x)
    one_step = phi * x + theta * e
    scale = horizon if abs(1.0 - phi) < 1e-8 else (1.0 - phi**horizon) / (1.0 - phi)
    return one_step * scale


def _garch_block(e: np.ndarray, omega: float, alpha: float, beta: float, s0: float) -> np.ndarray:
    drive = omega + alpha * e**2
    zi = lfiltic([1.0], [1.0, -beta], y=[s0])
    return lfilter([1.0], [1.0, -beta], drive, zi=zi)[0]


def symbol_forecasts(
    returns: np.ndarray,
    *,
    horizon: int = 5,
    refit_every: int = 252,
    train_window: int = 756,
    min_train: int = 252,
    burn_in: int = 126,
) -> np.ndarray:
    """``(n, 3)`` point-in-time forecasts for one symbol's daily log returns (NaN until the first
    fit): the ARMA h-day forecast, the GARCH next-day volatility and their ratio."""
    n = len(returns)
    out = np.full((n, 3), np.nan)
    r = np.nan_to_num(returns, nan=0.0) * 100.0  # percent: both optimisers prefer this scale
    for start in range(min_train, n, refit_every):
        end = min(start + refit_every, n)
        train = r[max(0, start - train_window) : start]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arma = ARIMA(train, order=(1, 0, 1), trend="c").fit()
            garch = arch_model(train, mean="Constant", vol="GARCH", rescale=False).fit(
                disp="off", show_warning=False
            )
        mu, phi, theta = (float(v) for v in arma.params[:3])
        g = garch.params
        omega, alpha, beta = float(g["omega"]), float(g["alpha[1]"]), float(g["beta[1]"])
        lo = max(0, start - burn_in)
        seg = r[lo:end]
        forecast = horizon * mu + _arma_block(seg - mu, phi, theta, horizon)
        variance = _garch_block(seg - float(g["mu"]), omega, alpha, beta, float(np.var(train)))
        vol = np.sqrt(np.maximum(variance, 1e-12))
        keep = slice(start - lo, end - lo)
        out[start:end, 0] = forecast[keep] / 100.0
        out[start:end, 1] = vol[keep] / 100.0
        out[start:end, 2] = forecast[keep] / (vol[keep] * np.sqrt(horizon))
    return out


def statistical_features(
    prices: pl.DataFrame,
    *,
    horizon: int = 5,
    refit_every: int = 252,
    train_window: int = 756,
    n_jobs: int = 1,
) -> pl.DataFrame:
    """``[symbol, date, stat_arima, stat_garch_vol, stat_arima_z]`` for every symbol of a
    ``[symbol, date, close]`` panel; the per-symbol fits run in ``n_jobs`` processes."""
    panel = prices.select(SYMBOL, DATE, CLOSE).sort(SYMBOL, DATE)
    panel = panel.with_columns(ret=pl.col(CLOSE).log().diff().over(SYMBOL))
    groups = panel.partition_by(SYMBOL, maintain_order=True)
    blocks = Parallel(n_jobs=n_jobs)(
        delayed(symbol_forecasts)(
            g["ret"].to_numpy(), horizon=horizon, refit_every=refit_every, train_window=train_window
        )
        for g in groups
    )
    parts = [
        g.select(SYMBOL, DATE).with_columns(
            *(pl.Series(name, block[:, i]) for i, name in enumerate(STAT_COLUMNS))
        )
        for g, block in zip(groups, blocks, strict=True)
    ]
    if not parts:
        return panel.select(SYMBOL, DATE).with_columns(
            *(pl.lit(None, pl.Float64).alias(c) for c in STAT_COLUMNS)
        )
    return pl.concat(parts).with_columns(pl.col(STAT_COLUMNS).fill_nan(None))


def describe_statistical(names: list[str]) -> pl.DataFrame:
    """Registry-shaped rows (feature, family, window, inputs, description) for ``stat_*``."""
    return describe_rows(
        (n, "statistical", 756, "close", DESCRIPTIONS[n]) for n in STAT_COLUMNS if n in names
    )
