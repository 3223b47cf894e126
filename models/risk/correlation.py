"""Dynamic correlation of a book's holdings, three ways, scored on one out-of-sample loss:

- ``ewma``: RiskMetrics exponentially weighted correlation (lambda 0.94);
- ``dcc``: DCC(1,1) (Engle 2002) on GARCH(1,1)-standardised returns: the marginals from arch,
  the two DCC parameters by quasi-maximum likelihood with scipy;
- ``lstm``: a recurrent net reading the last ``lookback`` days of standardised returns and
  forecasting the next ``horizon`` days' correlation matrix (the seed's recurrent forecaster);
- ``rolling``: the trailing-year sample correlation, the naive reference.

Every model is fitted on the days before ``split`` only. From ``split`` on, every ``horizon``
days each method forecasts the correlation of the next ``horizon`` days from what it knew
the day before; the loss is the mean squared error of the off-diagonal entries against the
realised correlation of those days.

Why hand-written: arch is univariate, and no maintained Python library fits a DCC (mgarch and
others are unmaintained); the recursion is a few lines. It loops over days: each state
depends on the previous one.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from arch import arch_model
from scipy.optimize import minimize
from torch import nn

from models.learning.nets import one_torch_thread

METHODS = ("rolling", "ewma", "dcc", "lstm")


def _to_correlation(q: np.ndarray) -> np.ndarray:
    d = 1 / np.sqrt(np.einsum("...ii->...i", q))
    return q * d[..., :, None] * d[..., None, :]


def ewma_correlation(r: np.ndarray, lam: float = 0.94, init: int = 60) -> np.ndarray:
    """``R[t]``: the EWMA correlation known at the start of day ``t`` (returns before ``t``)."""
    T, n = r.shape
    q = np.empty((T, n, n))
    state = np.cov(r[:init], rowvar=False)
    for t in range(T):
        q[t] = state
        state = lam * state + (1 - lam) * np.outer(r[t], r[t])
    return _to_correlation(q)


def garch_standardise(r: np.ndarray, split: int) -> np.ndarray:
    """Returns over each asset's GARCH(1,1) volatility, parameters fitted before ``split``."""
    z = np.empty_like(r)
    for j in range(r.shape[1]):
        model = arch_model(100 * r[:, j], mean="Constant", vol="GARCH", p=1, q=1, rescale=False)
        params = model.fit(last_obs=split, disp="off").params
        fixed = model.fix(params)
        z[:, j] = (100 * r[:, j] - params["mu"]) / fixed.conditional_volatility
    return z


def _dcc_states(z: np.ndarray, a: float, b: float, qbar: np.ndarray) -> np.ndarray:
    T, n = z.shape
    q = np.empty((T, n, n))
    state = qbar.copy()
    for t in range(T):
        q[t] = state
        state = (1 - a - b) * qbar + a * np.outer(z[t], z[t]) + b * state
    return q


def dcc_fit(z: np.ndarray) -> tuple[float, float]:
    """DCC(1,1) parameters ``(a, b)`` by the correlation part of the quasi-likelihood."""
    qbar = np.cov(z, rowvar=False)

    def nll(theta: np.ndarray) -> float:
        a, b = theta
        if a < 0 or b < 0 or a + b >= 0.999:
            return 1e10
        rt = _to_correlation(_dcc_states(z, a, b, qbar))
        sign, logdet = np.linalg.slogdet(rt)
        quad = np.einsum("ti,tij,tj->t", z, np.linalg.inv(rt), z)
        return float(0.5 * (logdet + quad).sum())

    best = minimize(nll, x0=[0.03, 0.95], method="Nelder-Mead", options={"xatol": 1e-4})
    return float(best.x[0]), float(best.x[1])


def dcc_correlation(z: np.ndarray, split: int) -> tuple[np.ndarray, tuple[float, float]]:
    a, b = dcc_fit(z[:split])
    return _to_correlation(_dcc_states(z, a, b, np.cov(z[:split], rowvar=False))), (a, b)


class _CorrLSTM(nn.Module):
    def __init__(self, n: int, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(n, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n * (n - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return torch.tanh(self.head(out[:, -1]))


def _pairs(c: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(c.shape[-1], 1)
    return c[..., i, j]


def _from_pairs(p: np.ndarray, n: int) -> np.ndarray:
    """A symmetric matrix with unit diagonal from its upper-triangle entries, nudged to the
    nearest positive semi-definite correlation matrix (eigenvalues clipped, rescaled)."""
    c = np.eye(n)
    i, j = np.triu_indices(n, 1)
    c[i, j] = c[j, i] = p
    w, v = np.linalg.eigh(c)
    c = (v * np.clip(w, 1e-6, None)) @ v.T
    return _to_correlation(c)


def _realised(r: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    return np.stack([np.corrcoef(r[s : s + horizon], rowvar=False) for s in starts])


def lstm_correlation(
    z: np.ndarray,
    r: np.ndarray,
    split: int,
    starts: np.ndarray,
    lookback: int = 60,
    horizon: int = 20,
    epochs: int = 30,
    seed: int = 0,
) -> np.ndarray:
    """Forecasts for the days in ``starts`` from a net that reads standardised returns ``z``
    and was trained on windows before ``split`` to predict the realised correlation of the
    returns ``r`` (targets too end by ``split``)."""
    with one_torch_thread():
        return _lstm_correlation(z, r, split, starts, lookback, horizon, epochs, seed)


def _lstm_correlation(z, r, split, starts, lookback, horizon, epochs, seed) -> np.ndarray:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n = z.shape[1]
    train_starts = np.arange(lookback, split - horizon + 1, 3)
    X = torch.tensor(np.stack([z[s - lookback : s] for s in train_starts]), dtype=torch.float32)
    y = torch.tensor(_pairs(_realised(r, train_starts, horizon)), dtype=torch.float32)
    net = _CorrLSTM(n, 32)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(X), generator=gen).split(64):
            opt.zero_grad()
            loss = ((net(X[batch]) - y[batch]) ** 2).mean()
            loss.backward()
            opt.step()
    with torch.no_grad():
        Xt = torch.tensor(np.stack([z[s - lookback : s] for s in starts]), dtype=torch.float32)
        pred = net(Xt).numpy().astype(float)
    return np.stack([_from_pairs(p, n) for p in pred])


@dataclass(frozen=True)
class CorrelationForecasts:
    scores: pl.DataFrame  # method, loss, vs_rolling
    latest: dict[str, np.ndarray]  # each method's forecast for the day after the data
    previous: dict[str, np.ndarray]  # and ``horizon`` days before that
    dcc_params: tuple[float, float]


def compare_correlation_forecasts(
    r: np.ndarray, split: int, horizon: int = 20, lookback: int = 60, seed: int = 0
) -> CorrelationForecasts:
    """Score every method on the non-overlapping ``horizon``-day blocks from ``split`` on."""
    T, n = r.shape
    if n < 2 or split < max(250, lookback + horizon) or T - split < horizon:
        raise ValueError(
            f"need 2+ assets, 250+ days before the split and a {horizon}-day block after it; "
            f"got {n} assets, split at {split} of {T} days"
        )
    starts = np.arange(split, T - horizon + 1, horizon)
    ends = np.r_[starts, T]  # the last entry: the day after the data
    # one placeholder day after the data: row T of each state is known from days before T
    r_ext = np.vstack([r, np.zeros((1, n))])
    z_ext = np.vstack([garch_standardise(r, split), np.zeros((1, n))])
    realised = _realised(r, starts, horizon)
    dcc, params = dcc_correlation(z_ext, split)
    forecasts = {
        "rolling": np.stack([np.corrcoef(r[max(0, s - 250) : s], rowvar=False) for s in ends]),
        "ewma": ewma_correlation(r_ext)[ends],
        "dcc": dcc[ends],
        "lstm": lstm_correlation(z_ext, r_ext, split, ends, lookback, horizon, seed=seed),
    }
    loss = {
        m: float(((_pairs(f[:-1]) - _pairs(realised)) ** 2).mean()) for m, f in forecasts.items()
    }
    scores = pl.DataFrame(
        {
            "method": list(loss),
            "mse": list(loss.values()),
            "vs_rolling": [v / loss["rolling"] for v in loss.values()],
            "blocks": len(starts),
        }
    ).sort("mse")
    latest = {m: f[-1] for m, f in forecasts.items()}
    previous = {m: f[-2] for m, f in forecasts.items()}
    return CorrelationForecasts(scores, latest, previous, params)
