"""Neural conditional VaR and ES: a small MLP reads recent volatility and returns and outputs
tomorrow's quantile and tail mean, trained with the Fissler-Ziegel FZ0 joint loss (Patton,
Ziegel & Chen 2019), the strictly consistent scoring function for the (VaR, ES) pair.

Why hand-written: no maintained library fits a joint VaR-ES network; the loss is four terms
and the net two layers. Refitted every ``refit_every`` days on every day before.
"""

import numpy as np
import torch
from scipy import stats
from torch import nn

from models.learning.nets import one_torch_thread

LAGS = 5
VOL_WINDOWS = (5, 20, 60)
WARMUP = max(VOL_WINDOWS)


def _features(r: np.ndarray) -> np.ndarray:
    """Row t describes returns strictly before t: the last ``LAGS`` returns and rolling
    volatilities; rows before ``WARMUP`` are NaN."""
    n = len(r)
    out = np.full((n, LAGS + len(VOL_WINDOWS)), np.nan)
    for k in range(1, LAGS + 1):
        out[k:, k - 1] = r[:-k]
    sq = np.concatenate([[0.0], np.cumsum(r**2)])
    for j, w in enumerate(VOL_WINDOWS):
        t = np.arange(w, n)
        out[t, LAGS + j] = np.sqrt((sq[t] - sq[t - w]) / w)
    out[:WARMUP] = np.nan
    return out


def _inverse_softplus(y: float) -> float:
    return float(np.log(np.expm1(y)))


class _VarEsNet(nn.Module):
    """Outputs, per level, multiples of the input's 20-day volatility, started at the normal's:
    the net learns how far the tail departs from a volatility-scaled normal, not the scale."""

    def __init__(self, n_in: int, hidden: int, levels: tuple[float, ...]):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, 2 * len(levels))
        )
        start = []
        for level in levels:
            z = float(stats.norm.ppf(level))
            tail = float(stats.norm.pdf(z) / (1 - level))
            start += [_inverse_softplus(z), _inverse_softplus(tail - z)]
        with torch.no_grad():
            self.body[-1].weight.mul_(0.01)
            self.body[-1].bias.copy_(torch.tensor(start))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(var, es)``, each ``(rows, levels)``: return quantiles and tail means (< 0)."""
        # the 20-day volatility, floored: a book in cash for 20 days has none
        vol = x[:, LAGS + 1 : LAGS + 2].clamp_min(1e-4)
        # scale-free inputs: lagged returns and the other volatilities in units of it
        out = self.body(x / vol)
        var = -vol * nn.functional.softplus(out[:, 0::2])
        es = var - vol * nn.functional.softplus(out[:, 1::2])  # the tail mean lies below
        return var, es


def fz0_loss(y: torch.Tensor, var: torch.Tensor, es: torch.Tensor, alpha: float) -> torch.Tensor:
    """FZ0 loss of return quantile ``var`` and tail mean ``es`` (both negative) at tail
    probability ``alpha``: -1{y <= v}(v - y) / (alpha e) + v / e + log(-e) - 1."""
    hit = (y <= var).float()
    return (-hit * (var - y) / (alpha * es) + var / es + torch.log(-es) - 1).mean()


def fit_predict(
    r: np.ndarray,
    train: slice,
    predict: slice,
    levels: tuple[float, ...],
    hidden: int = 8,
    epochs: int = 100,
    seed: int = 0,
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Fit one net for every level on the days in ``train`` (the sum of their FZ0 losses)
    and forecast ``{level: (VaR, ES)}`` as positive losses for the days in ``predict``."""
    with one_torch_thread():
        return _fit_predict(r, train, predict, levels, hidden, epochs, seed)


def _fit_predict(r, train, predict, levels, hidden, epochs, seed):
    torch.manual_seed(seed)
    levels = tuple(levels)
    x = _features(r)
    scale = float(np.nanstd(r[train])) or 1.0
    rows = np.arange(len(r))[train]
    rows = rows[np.isfinite(x[rows]).all(axis=1)]
    if len(rows) < 100:
        raise ValueError(f"neural VaR needs at least 100 training days, got {len(rows)}")
    X = torch.tensor(x[rows] / scale, dtype=torch.float32)
    y = torch.tensor(r[rows] / scale, dtype=torch.float32)
    net = _VarEsNet(X.shape[1], hidden, levels)
    opt = torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=1e-3)
    for _ in range(epochs):  # full batch: a few thousand rows at most
        opt.zero_grad()
        var, es = net(X)
        loss = sum(fz0_loss(y, var[:, i], es[:, i], 1 - lv) for i, lv in enumerate(levels))
        loss.backward()
        opt.step()
    with torch.no_grad():
        var, es = net(torch.tensor(x[predict] / scale, dtype=torch.float32))
    var, es = -var.numpy().astype(float) * scale, -es.numpy().astype(float) * scale
    return {lv: (var[:, i], es[:, i]) for i, lv in enumerate(levels)}


def rolling_neural(
    r: np.ndarray, levels, window: int, refit_every: int, seed: int = 0
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """One-day-ahead forecasts for every day from ``window`` on, refitted every
    ``refit_every`` days (at least every 60) on all the days before."""
    n = len(r)
    every = max(refit_every, 60)
    out = {lv: (np.full(n, np.nan), np.full(n, np.nan)) for lv in levels}
    for start in range(window, n, every):
        stop = min(start + every, n)
        # Expanding: every day before the refit. A 500-day window holds five 99 % exceedances,
        # too few for a net (it overfits them: twice the promised exceptions, measured).
        fitted = fit_predict(r, slice(0, start), slice(start, stop), tuple(levels), seed=seed)
        for lv, (var, es) in fitted.items():
            out[lv][0][start:stop], out[lv][1][start:stop] = var, es
    return out
