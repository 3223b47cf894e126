"""A vectorised daily backtest with drifting weights and proportional transaction costs."""

import numpy as np
import polars as pl
from skfolio.measures import get_drawdowns, max_drawdown

from models.panel import to_dense

TRADING_DAYS = 252


def run_backtest(
    weights: pl.DataFrame, returns: pl.DataFrame, *, cost_bps: float = 10.0, lag: int = 1
) -> pl.DataFrame:
    """Daily gross and net returns of a strategy given its rebalance-date target weights.

    Targets decided on a date's close are traded ``lag`` trading days later (at that close), so a
    signal never earns the return of the day it was computed on. Between rebalances the weights
    drift with prices. Costs are ``cost_bps`` per unit of turnover, charged on the trading day.

    Parameters
    ----------
    weights : ``[date, symbol, weight]`` targets on rebalance dates
    returns : ``[date, symbol, ret]`` simple daily close-to-close returns
    """
    dates, symbols, R = to_dense(returns, "ret")
    R = np.nan_to_num(R, nan=0.0)
    unknown = set(weights["symbol"].unique()) - set(symbols)
    if unknown:
        raise ValueError(f"weights on symbols without returns: {sorted(unknown)[:10]}")
    target_dates, W = _targets(weights, symbols)
    trade_at = np.searchsorted(dates, target_dates, side="left") + lag
    keep = trade_at < len(dates)
    trade_at, W = trade_at[keep], W[keep]
    if len(trade_at) == 0:
        raise ValueError("no rebalance date leaves a trading day to hold the portfolio")

    gross = np.zeros(len(dates))
    turnover = np.zeros(len(dates))
    held = np.zeros(len(symbols))
    bounds = np.append(trade_at, len(dates))
    # One iteration per rebalance (not per row): inside a holding period everything is numpy.
    for i, start in enumerate(trade_at):
        turnover[start] = np.abs(W[i] - held).sum()
        growth = np.cumprod(1.0 + R[start + 1 : bounds[i + 1]], axis=0)
        value = np.concatenate([[1.0], 1.0 + (growth - 1.0) @ W[i]])
        gross[start + 1 : bounds[i + 1]] = value[1:] / value[:-1] - 1.0
        held = W[i] * (growth[-1] if len(growth) else 1.0) / value[-1]
    cost = turnover * cost_bps / 1e4
    frame = pl.DataFrame({"date": dates, "gross": gross, "turnover": turnover, "cost": cost})
    return frame.with_columns(net=pl.col("gross") - pl.col("cost")).slice(int(trade_at[0]))


def _targets(weights: pl.DataFrame, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rebalance dates and a ``(dates, symbols)`` weight matrix, zero where not held."""
    dates = weights["date"].unique().sort().to_numpy()
    W = np.zeros((len(dates), len(symbols)))
    W[
        np.searchsorted(dates, weights["date"].to_numpy()),
        np.searchsorted(symbols, weights["symbol"].to_numpy()),
    ] = weights["weight"].to_numpy()
    return dates, W


def performance(net: np.ndarray, turnover: np.ndarray | None = None) -> dict[str, float]:
    """Annual return (CAGR), volatility, Sharpe (rf = 0), max drawdown and mean annual turnover."""
    net = np.asarray(net, dtype=float)
    years = len(net) / TRADING_DAYS
    total = float(np.prod(1.0 + net))
    vol = float(net.std(ddof=1) * np.sqrt(TRADING_DAYS))
    out = {
        "annual_return": total ** (1.0 / years) - 1.0 if years > 0 else np.nan,
        "annual_volatility": vol,
        "sharpe": float(net.mean() * TRADING_DAYS / vol) if vol > 0 else np.nan,
        "max_drawdown": -float(max_drawdown(get_drawdowns(net, compounded=True))),
        "total_return": total - 1.0,
        "n_days": len(net),
    }
    if turnover is not None:
        out["annual_turnover"] = float(np.sum(turnover) / years) if years > 0 else np.nan
    return out
