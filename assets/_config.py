"""Settings more than one asset module reads: what trading costs and how a book is traded
(the portfolio and strategy assets backtest with them, training scores its net-return objective
with them)."""

import inspect
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Literal

import polars as pl
from dagster import Config
from pydantic import Field

from models.backtest import engine
from models.backtest.costs import SPREAD_ESTIMATORS, CostSpec

SPREAD_SOURCES = (*SPREAD_ESTIMATORS, "none")


class CostConfig(Config):
    """What a unit traded costs: the backtest charges it, the cost-aware books optimise it."""

    cost_bps: float = Field(
        default=10.0, description="Transaction cost per unit of turnover, in basis points."
    )
    sell_cost_bps: float | None = Field(
        default=None,
        description="Cost per unit sold, in basis points, when it differs from cost_bps "
        "(which then applies to buys): e.g. Qlib's 5 bp buy / 15 bp sell.",
    )
    costs: Literal[SPREAD_SOURCES] = Field(
        default="edge",
        description="Spread source: half its forecast spread is charged per unit traded "
        "(needs open/high/low/close): edge (Ardia-Guidotti-Kroencke 2024, the bidask "
        "package), corwin_schultz, abdi_ranaldo, or none.",
    )
    spread_floor_bps: float = Field(
        default=1.0, description="Least half-spread charged per unit traded, in basis points."
    )
    spread_cap_bps: float = Field(
        default=50.0, description="Largest half-spread charged per unit traded, in basis points."
    )

    def spec(self) -> CostSpec:
        """These fields as the models' cost specification (the same names)."""
        return CostSpec(**self.model_dump(include={f.name for f in fields(CostSpec)}))


class BacktestConfig(CostConfig):
    lag: int = Field(default=1, description="Trading days between a signal's close and its trade.")
    fill: Literal["close", "open"] = Field(
        default="close",
        description="Trade at the close or at the open of the trading day (open needs open "
        "prices: the old book earns the night, the new one the day).",
    )
    impact_coef: float = Field(
        default=1.0,
        description="Square-root market impact: cost per unit traded = coef * daily volatility "
        "* sqrt(traded value / average daily dollar volume); needs volume data.",
    )
    capital: float = Field(
        default=1e7, description="Book size in currency, which sets the share of volume traded."
    )
    borrow_bps: float = Field(
        default=50.0, description="Annual fee on short positions, in basis points."
    )
    no_trade_band: float = Field(
        default=0.0,
        description="Skip every trade smaller than this share of the book (all books).",
    )


def build_cost_model(config: BacktestConfig, market_prices: pl.DataFrame) -> engine.CostModel:
    """The backtest's setting for ``config`` on ``market_prices`` (``models.backtest.engine``),
    carrying the settings it was built from."""
    model = engine.cost_model(
        market_prices,
        config.spec(),
        lag=config.lag,
        fill=config.fill,
        impact_coef=config.impact_coef,
        capital=config.capital,
        borrow_bps=config.borrow_bps,
        band=config.no_trade_band,
    )
    return replace(model, settings=config.model_dump())


def keyword_settings(config: Config, function: Callable) -> dict:
    """The ``config`` fields that ``function`` takes as keyword-only arguments, under the same
    names: what an asset hands its ``models/`` call without copying a list of names."""
    keywords = {
        name
        for name, p in inspect.signature(function).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    return config.model_dump(include=keywords & set(type(config).model_fields))
