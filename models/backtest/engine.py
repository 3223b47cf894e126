"""A vectorised daily backtest: drifting weights, proportional costs, square-root market impact
and a borrowing fee on shorts."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from skfolio.measures import get_drawdowns, max_drawdown, semi_deviation

from models.backtest.costs import CostSpec, has_ohlcv, spread_forecasts
from models.data.panel import daily_returns, session_returns, to_dense
from models.types import DATE, SYMBOL

TRADING_DAYS = 252


@dataclass(frozen=True)
class Costs:
    """What trading costs, per unit of portfolio value traded or held.

    ``cost_bps`` is charged on every unit bought, and on every unit sold unless ``sell_bps`` is
    given (asymmetric costs: a stamp duty or fee on sales, as in Qlib's 5 bp buy / 15 bp sell
    protocol). Market
    impact follows the square-root law: trading a fraction ``q`` of the book in an asset with
    daily volatility ``sigma`` and average daily dollar volume ``adv`` costs
    ``impact_coef * sigma * sqrt(q * capital / adv)`` per unit traded (Almgren et al. 2005;
    Tóth et al. 2011 find ``impact_coef`` near 1), so it grows with the square root of the
    participation ``q * capital / adv``. ``borrow_bps`` is the annual fee on short exposure,
    charged daily on the drifted short weights. The half-spread charged per unit traded (when
    the backtest is given spreads) is held within ``[spread_floor_bps, spread_cap_bps]``; a
    name without a spread figure pays the floor.
    """

    cost_bps: float = 10.0
    impact_coef: float = 0.0
    capital: float = 1e7
    borrow_bps: float = 0.0
    sell_bps: float | None = None
    spread_floor_bps: float = 0.0
    spread_cap_bps: float = np.inf

    @property
    def sell_rate(self) -> float:
        return self.cost_bps if self.sell_bps is None else self.sell_bps


def liquidity(prices: pl.DataFrame, window: int = 20) -> pl.DataFrame:
    """``[symbol, date, sigma, adv]``: each asset's daily return volatility and average dollar
    volume over the ``window`` days *before* each date, known when trading at that date's close.
    """
    ret = pl.col("close") / pl.col("close").shift(1) - 1
    return (
        prices.sort(SYMBOL, DATE)
        .select(
            SYMBOL,
            DATE,
            ret.rolling_std(window, min_samples=window // 2).shift(1).over(SYMBOL).alias("sigma"),
            (pl.col("close") * pl.col("volume"))
            .rolling_mean(window, min_samples=window // 2)
            .shift(1)
            .over(SYMBOL)
            .alias("adv"),
        )
        .drop_nulls()
    )


def run_backtest(
    weights: pl.DataFrame,
    returns: pl.DataFrame,
    *,
    cost_bps: float = 10.0,
    lag: int = 1,
    costs: Costs | None = None,
    liquid: pl.DataFrame | None = None,
    spreads: pl.DataFrame | None = None,
    fill: Literal["close", "open"] = "close",
    band: float = 0.0,
) -> pl.DataFrame:
    """Daily gross and net returns of a strategy given its rebalance-date target weights.

    Targets decided on a date's close are traded ``lag`` trading days later, at that day's close
    (``fill="close"``) or open (``fill="open"``: the old book earns the night, the new one the
    day), so a signal never earns the return of the day it was computed on. Between rebalances
    the weights drift with prices. Costs (``costs``, or just ``cost_bps`` per unit of turnover)
    are charged on the trading day; borrowing daily.

    A null target weight means *keep the holding as it has drifted* (no trade in that name), and
    ``band`` skips every trade smaller than ``band`` (a no-trade band, in units of portfolio
    value). In a long-only book the names that do trade are then scaled so that the book stays
    as invested as its targets say (the value the kept names hold is taken from, or given to,
    the traded ones), the way Qlib's TopkDropout spends the proceeds of its sales on its buys.

    Parameters
    ----------
    weights : ``[date, symbol, weight]`` targets on rebalance dates (negative for shorts; null:
        keep the drifted holding)
    returns : ``[date, symbol, ret]`` simple daily close-to-close returns; fills at the open
        need ``overnight`` and ``intraday`` too (``models.data.panel.session_returns``)
    costs : the cost model; market impact needs ``liquid``
    liquid : ``[date, symbol, sigma, adv]`` from :func:`liquidity`; an asset without a figure
        on a trade date (no volume data) is charged no impact there
    spreads : ``[date, symbol, spread_forecast]`` (see ``models.backtest.costs``): half the
        forecast bid-ask spread is charged per unit traded, on top of ``cost_bps``

    Returns
    -------
    ``[date, gross, turnover, commission, spread, impact, borrow, cost, net]`` from the first
    trade on; ``cost`` is the sum of the charges and ``net = gross - cost``.
    """
    costs = costs or Costs(cost_bps=cost_bps)
    if fill == "open":
        missing = {"overnight", "intraday"} - set(returns.columns)
        if missing:
            raise ValueError(f"fill='open' needs the returns' {sorted(missing)} columns")
    dates, symbols, R = to_dense(returns, "ret")
    unknown = set(weights["symbol"].unique()) - set(symbols)
    if unknown:
        raise ValueError(f"weights on symbols without returns: {sorted(unknown)[:10]}")
    target_dates, W = _targets(weights, symbols)
    trade_at = np.searchsorted(dates, target_dates, side="left") + lag
    keep = trade_at < len(dates)
    trade_at, W = trade_at[keep], W[keep]
    if len(trade_at) == 0:
        raise ValueError("no rebalance date leaves a trading day to hold the portfolio")
    impact_per_unit = _impact_rates(costs, liquid, dates, symbols, trade_at)
    half_spread = (
        None
        if spreads is None
        else np.clip(
            0.5 * _at_trades(spreads, "spread_forecast", dates, symbols, trade_at),
            costs.spread_floor_bps / 1e4,
            costs.spread_cap_bps / 1e4,
        )
    )
    n = len(dates)
    if fill == "open":
        # Each day split in two periods, the night (close to open) and the day (open to close):
        # a trade at the open of day d is a trade after period 2d. The same engine runs on the
        # periods; the day's figures are the two periods' compounded returns and summed costs.
        halves = np.empty((2 * n, len(symbols)))
        halves[0::2] = to_dense(returns, "overnight")[2]
        halves[1::2] = to_dense(returns, "intraday")[2]
        out = _simulate(np.nan_to_num(halves), 2 * trade_at, W, impact_per_unit, half_spread, band)
        gross = (1 + out["gross"][0::2]) * (1 + out["gross"][1::2]) - 1
        short = out["short"][0::2]  # borrowed overnight: the exposure at the day's start
        turnover, spread, impact, sold = (
            out[k][0::2] + out[k][1::2] for k in ("turnover", "spread", "impact", "sold")
        )
    else:
        out = _simulate(np.nan_to_num(R), trade_at, W, impact_per_unit, half_spread, band)
        gross, short, turnover, spread, impact, sold = (
            out[k] for k in ("gross", "short", "turnover", "spread", "impact", "sold")
        )
    commission = ((turnover - sold) * costs.cost_bps + sold * costs.sell_rate) / 1e4
    borrow = short * costs.borrow_bps / 1e4 / TRADING_DAYS
    frame = pl.DataFrame(
        {
            "date": dates,
            "gross": gross,
            "turnover": turnover,
            "commission": commission,
            "spread": spread,
            "impact": impact,
            "borrow": borrow,
        }
    )
    return (
        frame.with_columns(
            cost=pl.col("commission") + pl.col("spread") + pl.col("impact") + pl.col("borrow")
        )
        .with_columns(net=pl.col("gross") - pl.col("cost"))
        .slice(int(trade_at[0]))
    )


def _simulate(
    R: np.ndarray,
    trade_at: np.ndarray,
    W: np.ndarray,
    impact_per_unit: np.ndarray | None,
    half_spread: np.ndarray | None,
    band: float = 0.0,
) -> dict[str, np.ndarray]:
    """Per-period gross return, turnover (and its sold part), spread and impact charges and
    short exposure of the books ``W`` bought after the periods ``trade_at`` of the return matrix
    ``R`` (NaN in ``W``: keep the drifted holding; trades under ``band`` skipped)."""
    n = len(R)
    gross, turnover, impact, short, spread, sold = (np.zeros(n) for _ in range(6))
    held = np.zeros(R.shape[1])
    bounds = np.append(trade_at, n)
    W = W.copy()
    # One iteration per rebalance (not per row): inside a holding period everything is numpy.
    # Book i is bought at the end of period trade_at[i] and earns every period up to and
    # including the next trade's (at whose end it is sold).
    for i, start in enumerate(trade_at):
        W[i] = _executed(W[i], held, band)
        traded = np.abs(W[i] - held)
        turnover[start] = traded.sum()
        sold[start] = np.maximum(held - W[i], 0.0).sum()
        if half_spread is not None:
            spread[start] = float(traded @ half_spread[i])
        if impact_per_unit is not None:
            # square-root law: the cost per unit traded grows with sqrt(traded fraction)
            impact[start] = float(traded @ (impact_per_unit[i] * np.sqrt(traded)))
        stop = min(bounds[i + 1] + 1, n)
        growth = np.cumprod(1.0 + R[start + 1 : stop], axis=0)
        value = np.concatenate([[1.0], 1.0 + (growth - 1.0) @ W[i]])
        gross[start + 1 : stop] = value[1:] / value[:-1] - 1.0
        # short exposure at each period's start, from the weights drifted since the trade
        shorts = np.minimum(W[i], 0.0)
        short[start + 1 : stop] = (
            -np.concatenate([[shorts.sum()], (growth[:-1] @ shorts)])[: len(growth)] / value[:-1]
        )
        held = W[i] * (growth[-1] if len(growth) else 1.0) / value[-1]
    return {
        "gross": gross,
        "turnover": turnover,
        "impact": impact,
        "short": short,
        "spread": spread,
        "sold": sold,
    }


def _executed(target: np.ndarray, held: np.ndarray, band: float) -> np.ndarray:
    """The book actually traded to from ``held`` for ``target`` (NaN: keep), with trades
    smaller than ``band`` skipped; a long-only book's traded names absorb what the kept ones
    hold beyond (or short of) their targets, so it stays as invested as the targets."""
    keep = np.isnan(target)
    if band > 0:
        keep |= np.abs(np.nan_to_num(target, nan=0.0) - held) < band
    if not keep.any():
        return target
    wanted = np.where(np.isnan(target), 0.0, target)
    out = np.where(keep, held, wanted)
    if (wanted >= 0).all():
        # a book of only keeps (NaN) and buys is fully invested; else it is what its targets sum to
        budget = 1.0 if np.isnan(target).any() else wanted.sum()
        traded = ~keep & (wanted > 0)
        free = budget - out[keep].sum()
        if traded.any() and free > 0:
            out[traded] = wanted[traded] * free / wanted[traded].sum()
    return out


def _impact_rates(
    costs: Costs,
    liquid: pl.DataFrame | None,
    dates: np.ndarray,
    symbols: np.ndarray,
    trade_at: np.ndarray,
) -> np.ndarray | None:
    """``impact_coef * sigma * sqrt(capital / adv)`` per (rebalance, symbol): times
    ``sqrt(traded)`` it is the impact cost per unit traded."""
    if costs.impact_coef == 0:
        return None
    if liquid is None:
        raise ValueError("market impact needs the liquidity frame (sigma, adv) of the assets")
    rate = pl.col("sigma") * (costs.capital / pl.col("adv")).sqrt() * costs.impact_coef
    usable = liquid.filter(pl.col("adv") > 0).with_columns(rate.alias("rate"))
    return _at_trades(usable, "rate", dates, symbols, trade_at)


def _at_trades(
    frame: pl.DataFrame, value: str, dates: np.ndarray, symbols: np.ndarray, trade_at: np.ndarray
) -> np.ndarray:
    """``frame[value]`` as a ``(rebalance, symbol)`` matrix on the trade days (0 where absent)."""
    index = pl.DataFrame({DATE: dates[trade_at], "_row": np.arange(len(trade_at))})
    cols = pl.DataFrame({SYMBOL: symbols, "_col": np.arange(len(symbols))})
    hits = frame.join(index, on=DATE).join(cols, on=SYMBOL)
    out = np.zeros((len(trade_at), len(symbols)))
    out[hits["_row"].to_numpy(), hits["_col"].to_numpy()] = hits[value].to_numpy()
    return out


def _targets(weights: pl.DataFrame, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rebalance dates and a ``(dates, symbols)`` weight matrix, zero where not held, NaN where
    the holding is kept."""
    dates = weights["date"].unique().sort().to_numpy()
    W = np.zeros((len(dates), len(symbols)))
    W[
        np.searchsorted(dates, weights["date"].to_numpy()),
        np.searchsorted(symbols, weights["symbol"].to_numpy()),
    ] = weights["weight"].to_numpy().astype(float)  # null (keep the holding) becomes NaN
    return dates, W


def performance(net: np.ndarray, turnover: np.ndarray | None = None) -> dict[str, float]:
    """Annual return (CAGR), volatility, Sharpe and Sortino (rf = 0), max drawdown, its
    duration (longest stretch under a previous peak, in trading days), Calmar, daily hit rate
    and mean annual turnover. Every figure is a float (NaN where undefined); a book whose wealth
    reaches zero has lost everything: total and annual return -1, max drawdown -1."""
    net = np.asarray(net, dtype=float)
    years = len(net) / TRADING_DAYS
    wealth = np.cumprod(1.0 + net)
    # a book whose wealth reaches zero is wiped out: it cannot trade on, and a negative
    # wealth raised to 1 / years is a complex number (polars then types the summary "object")
    wiped = bool((wealth <= 0).any())
    total = 0.0 if wiped else float(wealth[-1]) if len(net) else 1.0
    vol = float(net.std(ddof=1) * np.sqrt(TRADING_DAYS))
    downside = float(semi_deviation(net) * np.sqrt(TRADING_DAYS))
    annual = float(total ** (1.0 / years) - 1.0) if years > 0 else np.nan
    drawdowns = get_drawdowns(net, compounded=True)
    mdd = -1.0 if wiped else -float(max_drawdown(drawdowns))
    out = {
        "annual_return": annual,
        "annual_volatility": vol,
        "sharpe": float(net.mean() * TRADING_DAYS / vol) if vol > 0 else np.nan,
        "sortino": float(net.mean() * TRADING_DAYS / downside) if downside > 0 else np.nan,
        "max_drawdown": mdd,
        "max_drawdown_days": float(_longest_run(drawdowns < 0)),
        "calmar": annual / -mdd if mdd < 0 else np.nan,
        "hit_rate": float(np.mean(net > 0)),
        "total_return": total - 1.0,
        "n_days": len(net),
    }
    if turnover is not None:
        out["annual_turnover"] = float(np.sum(turnover) / years) if years > 0 else np.nan
    return out


def _longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of ``True``."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max()) if len(starts) else 0


@dataclass(frozen=True)
class CostModel:
    """A backtest's whole setting, built once from the prices (:func:`cost_model`): returns,
    costs, liquidity and spread forecasts, and when and how the books trade."""

    returns: pl.DataFrame  # [symbol, date, ret] (+ overnight, intraday for fills at the open)
    costs: Costs
    liquid: pl.DataFrame | None  # sigma and ADV for the impact, when volume exists
    spreads: pl.DataFrame | None  # forecast spreads, when high, low and volume exist
    has: dict[str, bool]
    lag: int = 1
    fill: Literal["close", "open"] = "close"
    band: float = 0.0
    spread_source: str = "none"  # the spread estimator behind ``spreads`` (CostSpec.costs)
    settings: Mapping[str, Any] = field(default_factory=dict)  # what it was built from

    def run(self, weights: pl.DataFrame) -> pl.DataFrame:
        """:func:`run_backtest` of target ``weights`` under this setting."""
        return run_backtest(
            weights,
            self.returns,
            lag=self.lag,
            fill=self.fill,
            costs=self.costs,
            liquid=self.liquid,
            spreads=self.spreads,
            band=self.band,
        )

    def describe(self) -> dict[str, str | float]:
        """What is charged, in words, and the spread forecast's out-of-sample mean absolute
        error next to the naive forecast's (the last realised spread)."""
        c = self.costs
        if self.spreads is not None:
            spread = (
                f"half the LightGBM forecast of the {self.spread_source} spread, within "
                f"[{c.spread_floor_bps}, {c.spread_cap_bps}] bp"
            )
        elif self.spread_source == "none":
            spread = "not charged (portfolio.costs: none)"
        else:
            spread = f"not charged: the prices lack the columns {self.spread_source} needs"
        out: dict[str, str | float] = {
            "market_impact": "square-root law on volume"
            if self.has["volume"]
            else "not charged: the prices carry no volume",
            "spread_cost": spread,
        }
        if self.spreads is not None:
            scored = self.spreads.drop_nulls("spread_realised")
            for name, column in (("lightgbm", "spread_forecast"), ("naive", "spread_naive")):
                err = (scored[column] - scored["spread_realised"]).abs().mean()
                out[f"spread_mae_{name}"] = float(err)
        return out


def cost_model(
    prices: pl.DataFrame,
    spec: CostSpec,
    *,
    lag: int = 1,
    fill: Literal["close", "open"] = "close",
    impact_coef: float = 1.0,
    capital: float = 1e7,
    borrow_bps: float = 50.0,
    band: float = 0.0,
) -> CostModel:
    """Returns (close to close, or split at the open for fills there), proportional buy and
    sell costs, square-root impact (where volume exists) and the forecast spread of
    ``spec.costs`` (where its columns exist)."""
    returns = (session_returns if fill == "open" else daily_returns)(prices)
    has = has_ohlcv(prices)
    costs = Costs(
        spec.cost_bps,
        impact_coef if has["volume"] else 0.0,
        capital,
        borrow_bps,
        sell_bps=spec.sell_cost_bps,
        spread_floor_bps=spec.spread_floor_bps,
        spread_cap_bps=spec.spread_cap_bps,
    )
    liquid = liquidity(prices) if has["volume"] else None
    spreads = spread_forecasts(prices, spec)
    return CostModel(returns, costs, liquid, spreads, has, lag, fill, band, spec.costs)
