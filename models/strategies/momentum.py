"""LSTM momentum: an LSTM reads each asset's recent volatility-scaled daily returns and
forecasts its cross-sectional rank over the next ``horizon`` days; the forecasts, ranked, make a
momentum book.

Walk-forward: the net is refitted every ``refit_every`` trading days on the samples whose label
window ended before the refit day (purged by the horizon), and scores only the days up to the
next refit. It sees prices only, none of the feature matrix: a momentum model, not another copy
of the ensemble.
"""

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view
from scipy.stats import rankdata

from models.data.panel import to_dense
from models.learning.nets import TorchRegressor
from models.types import DATE, SYMBOL


def momentum_inputs(R: np.ndarray, lookback: int, vol_window: int = 60) -> np.ndarray:
    """``(days, assets, lookback)``: the last ``lookback`` daily returns up to and including
    each day, divided by the asset's trailing ``vol_window``-day volatility on that day (NaN
    where either is incomplete)."""
    days, assets = R.shape
    out = np.full((days, assets, lookback), np.nan)
    if days < max(lookback, vol_window):
        return out
    vol = np.full((days, assets), np.nan)
    vol[vol_window - 1 :] = sliding_window_view(R, vol_window, axis=0).std(axis=2, ddof=1)
    out[lookback - 1 :] = sliding_window_view(R, lookback, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return out / vol[:, :, None]


def forward_ranks(R: np.ndarray, horizon: int) -> np.ndarray:
    """``(days, assets)``: each asset's rank in ``[-0.5, 0.5]`` by its compounded return over
    the ``horizon`` days after each day (NaN where unknown)."""
    growth = np.vstack([np.zeros(R.shape[1]), np.cumsum(np.log1p(R), axis=0)])
    forward = np.full(R.shape, np.nan)
    forward[: len(R) - horizon] = growth[horizon + 1 :] - growth[1 : len(R) - horizon + 1]
    ranks = rankdata(forward, axis=1, nan_policy="omit")
    counts = np.sum(~np.isnan(forward), axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ranks - 1) / np.maximum(counts - 1, 1) - 0.5


def lstm_momentum_scores(
    returns: pl.DataFrame,
    dates: pl.Series,
    *,
    lookback: int = 20,
    horizon: int = 5,
    refit_every: int = 252,
    min_train_days: int = 252,
    max_samples: int = 10_000,
    hidden: int = 16,
    epochs: int = 5,
    seed: int = 0,
) -> pl.DataFrame:
    """``[date, symbol, score]`` on ``dates`` (the book's rebalance dates), each from the LSTM
    fitted on earlier days only."""
    all_dates, symbols, R = to_dense(returns, "ret")
    X = momentum_inputs(np.nan_to_num(R), lookback)
    X[np.isnan(R)] = np.nan  # an asset not trading that day is not scored
    y = forward_ranks(np.nan_to_num(R), horizon)
    y[np.isnan(R)] = np.nan
    at = np.searchsorted(all_dates, dates.to_numpy())
    at = at[(at < len(all_dates)) & (at >= min_train_days)]
    parts, model, fitted_at = [], None, -(10**9)
    for t in at:
        if t - fitted_at >= refit_every:
            # samples whose label window (t' + 1 .. t' + horizon) closed by day t
            days = np.arange(t - horizon, lookback + 60, -1)
            rows_x, rows_y = X[days].reshape(-1, lookback), y[days].reshape(-1)
            ok = np.flatnonzero(~np.isnan(rows_x).any(axis=1) & ~np.isnan(rows_y))
            # at most max_samples, spread evenly over the whole history (a large universe
            # would otherwise fill them with its last few weeks)
            ok = ok[np.linspace(0, len(ok) - 1, min(len(ok), max_samples)).astype(int)]
            rows_x, rows_y = rows_x[ok], rows_y[ok]
            if len(rows_y) < 200:
                continue
            model = TorchRegressor(
                arch="lstm",
                window=lookback,
                hidden=hidden,
                layers=1,
                dropout=0.0,
                epochs=epochs,
                lr=3e-3,
                batch_size=256,
                random_state=seed,
                device="cpu",
            ).fit(rows_x, rows_y)
            fitted_at = t
        if model is None:
            continue
        ok = ~np.isnan(X[t]).any(axis=1)
        if ok.sum() < 2:
            continue
        parts.append(
            pl.DataFrame(
                {
                    DATE: np.repeat(all_dates[t], int(ok.sum())),
                    SYMBOL: symbols[ok],
                    "score": model.predict(X[t][ok]),
                }
            )
        )
    if not parts:
        return pl.DataFrame(schema={DATE: pl.Date, SYMBOL: pl.String, "score": pl.Float64})
    return pl.concat(parts).with_columns(pl.col(DATE).cast(pl.Date))
