"""Transformer pairs: cointegrated pairs found on a formation window, their spread forecast by
a Transformer, traded on the forecast.

At each formation date (every ``reform_every`` trading days) the pairs are chosen from the
``formation_days`` before it: the ``candidates`` most correlated pairs of daily returns are
tested for cointegration (Engle-Granger, statsmodels), the ``n_pairs`` lowest p-values under
``p_max`` kept (no asset in two pairs). The spread ``log y - beta log x - alpha`` (OLS on the
formation window) is z-scored with the formation window's mean and deviation. A Transformer,
fitted on the formation window's spreads only, forecasts the change of the z-score over the next
``horizon`` days from its last ``window`` values. A pair goes long the spread (long y, short
beta x) when the forecast rise exceeds ``entry``, short when the forecast fall does, and is
closed when the forecast move is smaller than ``exit``; both thresholds are in units of the
deviation of the net's forecasts on its formation window (a net's forecasts shrink towards zero,
so fixed spread units would rarely trade).
"""

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view
from statsmodels.tsa.stattools import coint

from models.data.panel import to_dense
from models.learning.nets import TorchRegressor
from models.types import DATE, SYMBOL


def cointegrated_pairs(
    log_prices: np.ndarray, n_pairs: int, candidates: int = 40, p_max: float = 0.05
) -> list[tuple[int, int, float, float, float]]:
    """``(y, x, beta, alpha, p_value)`` column pairs of a ``(days, assets)`` log-price window,
    best first, no column in two pairs."""
    corr = np.corrcoef(np.diff(log_prices, axis=0), rowvar=False)
    i, j = np.triu_indices(len(corr), k=1)
    best = np.argsort(-corr[i, j])[:candidates]
    tested = []
    for a, b in zip(i[best], j[best], strict=True):
        # maxlag 1 without a lag search: ~20x faster than statsmodels' AIC search, and the
        # daily spreads need no more than one lag
        p = coint(log_prices[:, a], log_prices[:, b], maxlag=1, autolag=None)[1]
        if p < p_max:
            tested.append((p, a, b))
    chosen, used = [], set()
    for p, a, b in sorted(tested):
        if a in used or b in used:
            continue
        beta, alpha = np.polyfit(log_prices[:, b], log_prices[:, a], 1)
        chosen.append((int(a), int(b), float(beta), float(alpha), float(p)))
        used |= {a, b}
        if len(chosen) == n_pairs:
            break
    return chosen


def _samples(z: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Look-back windows of a z-scored spread and the change over the next ``horizon`` days."""
    if len(z) < window + horizon:
        return np.empty((0, window)), np.empty(0)
    x = sliding_window_view(z, window)[: len(z) - window - horizon + 1]
    y = z[window - 1 + horizon :] - z[window - 1 : len(z) - horizon]
    return x, y


def positions(forecast: np.ndarray, entry: float, exit: float) -> np.ndarray:
    """+1 / -1 / 0 per day: enter on a forecast beyond ``entry``, close when it falls within
    ``exit``, otherwise keep the last position (hysteresis, as a forward fill)."""
    signal = np.where(
        forecast > entry,
        1.0,
        np.where(forecast < -entry, -1.0, np.where(np.abs(forecast) < exit, 0.0, np.nan)),
    )
    return pl.Series(signal).fill_nan(None).forward_fill().fill_null(0.0).to_numpy()


def transformer_pairs_weights(
    prices: pl.DataFrame,
    start: object,
    end: object,
    *,
    n_pairs: int = 5,
    formation_days: int = 252,
    reform_every: int = 126,
    window: int = 20,
    horizon: int = 5,
    entry: float = 1.0,
    exit: float = 0.25,
    epochs: int = 5,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Daily targets ``[date, symbol, weight]`` from ``start`` to ``end`` (a row for every symbol of
    the current pairs on each day the book changes) and the pairs ``[formed, y, x, beta,
    p_value]``. Each pair's legs weigh ``1 / (1 + |beta|)`` and ``beta / (1 + |beta|)`` of
    ``1 / n_pairs``: gross exposure at most 1."""
    dates, symbols, close = to_dense(prices.filter(pl.col(DATE) <= end), "close")
    logp = np.log(close)
    first = int(np.searchsorted(dates, np.datetime64(start)))
    W = np.zeros_like(logp)
    formed = []
    for f in range(max(first, formation_days), len(dates), reform_every):
        block = logp[f - formation_days : f]
        complete = ~np.isnan(block).any(axis=0) & ~np.isnan(logp[f : f + reform_every]).any(axis=0)
        cols = np.flatnonzero(complete)
        if len(cols) < 2:
            continue
        pairs = [
            (cols[a], cols[b], beta, alpha, p)
            for a, b, beta, alpha, p in cointegrated_pairs(block[:, cols], n_pairs)
        ]
        if not pairs:
            continue
        spreads, kept = [], []
        xs, ys = [], []
        for a, b, beta, alpha, p in pairs:
            spread = logp[:, a] - beta * logp[:, b] - alpha
            mean, std = spread[f - formation_days : f].mean(), spread[f - formation_days : f].std()
            if not std > 0:  # a constant spread over the formation: nothing to forecast
                continue
            z = (spread - mean) / std
            x, y = _samples(z[f - formation_days : f], window, horizon)
            xs.append(x)
            ys.append(y)
            spreads.append(z)
            kept.append((a, b, beta, alpha, p))
            formed.append(
                (dates[f].astype("datetime64[D]").item(), symbols[a], symbols[b], beta, p)
            )
        pairs = kept
        if not sum(len(y) for y in ys):  # formation too short for one sample
            continue
        net = TorchRegressor(
            arch="transformer",
            window=window,
            hidden=16,
            layers=1,
            dropout=0.0,
            epochs=epochs,
            batch_size=256,
            random_state=seed,
            device="cpu",
        ).fit(np.vstack(xs), np.concatenate(ys))
        unit = float(np.std(net.predict(np.vstack(xs)))) or 1.0
        stop = min(f + reform_every, len(dates))
        for (a, b, beta, _, _), z in zip(pairs, spreads, strict=True):
            # forecasts from each day's window ending that day (known at its close)
            inputs = sliding_window_view(z[f - window + 1 : stop], window)
            side = positions(net.predict(inputs) / unit, entry, exit)
            scale = 1.0 / (1.0 + abs(beta)) / len(pairs)
            W[f:stop, a] += side * scale
            W[f:stop, b] -= side * beta * scale
    rows = W[first:]
    changed = np.flatnonzero(np.r_[True, np.any(rows[1:] != rows[:-1], axis=1)])
    traded = np.flatnonzero(np.any(W != 0, axis=0))
    d, s = np.meshgrid(changed + first, traded, indexing="ij")
    weights = pl.DataFrame(
        {DATE: dates[d.ravel()], SYMBOL: symbols[s.ravel()], "weight": W[d.ravel(), s.ravel()]}
    ).with_columns(pl.col(DATE).cast(pl.Date))
    pairs_frame = pl.DataFrame(
        formed,
        schema={
            "formed": pl.Date,
            "y": pl.String,
            "x": pl.String,
            "beta": pl.Float64,
            "p_value": pl.Float64,
        },
        orient="row",
    )
    return weights, pairs_frame
