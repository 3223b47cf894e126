"""Turnover-aware ML books: Qlib's TopkDropout, a rank hold buffer, and smoothed scores.

A plain top-k book replaces most of its names at every rebalance (the forecasts' ranks move
more than their edge); these books trade only where the ranking says it must:

* **TopkDropout** (Qlib's ``TopkDropoutStrategy`` with ``method_sell="bottom"``,
  ``method_buy="top"``): hold ``k`` names; at each rebalance rank the held names and the best
  ``n_drop + k - held`` names not held together, sell the held names among the ``n_drop``
  lowest of that list and buy as many of the best new names as the book then lacks. So at most
  ``n_drop`` names change a day, and none when the new candidates rank below the holdings.
* **Hold buffer**: buy a name when it ranks in the top ``k``, sell it only once it falls past
  rank ``k + buffer``; the book is refilled to ``k`` from the best names not held.

In both, held names keep their drifted weights (the targets are null: "keep") and the buys
share what the sales free, equally, as Qlib spends its cash (``models.backtest.engine`` executes the
null targets so). The selections are path dependent, so they are computed date by date (one
iteration per rebalance date, the cross-section in numpy).
"""

import numpy as np
import polars as pl

from models.portfolio.allocators import WEIGHT_SCHEMA
from models.types import DATE, SYMBOL


def smooth_scores(signals: pl.DataFrame, halflife: float, score: str = "score") -> pl.DataFrame:
    """Each name's score replaced by an exponential average over its past dates (half-life in
    trading days), of the score's cross-sectional percentile rank on each date (so that fold
    to fold changes in the forecasts' scale do not move the average). Point in time: a date's
    value uses that date and earlier ones only. ``halflife <= 0`` returns the signals as they
    are."""
    if halflife <= 0:
        return signals
    pct = (pl.col(score).rank("average") / pl.col(score).count()).over(DATE)
    return (
        signals.with_columns(pct.alias(score))
        .sort(SYMBOL, DATE)
        .with_columns(pl.col(score).ewm_mean(half_life=halflife, adjust=True).over(SYMBOL))
        .sort(DATE, SYMBOL)
    )


def _per_date(signals: pl.DataFrame, dates: pl.Series, score: str):
    """``(date, symbols)`` of each rebalance date, the scored symbols best first (ties by
    symbol)."""
    frame = (
        signals.filter(pl.col(DATE).is_in(dates.implode()) & pl.col(score).is_not_nan())
        .drop_nulls(score)
        .sort([DATE, score, SYMBOL], descending=[False, True, False])
    )
    for (day,), part in frame.group_by(DATE, maintain_order=True):
        yield day, part[SYMBOL].to_list()


def _book(day, kept: list[str], bought: list[str], k: int) -> pl.DataFrame:
    """Targets of one date: held names kept (null), new ones at ``1/k`` (the backtest spreads
    what the sales free over them)."""
    return pl.DataFrame(
        {
            "date": [day] * (len(kept) + len(bought)),
            "symbol": kept + bought,
            "weight": [None] * len(kept) + [1.0 / k] * len(bought),
        },
        schema=WEIGHT_SCHEMA,
    )


def _frame(parts: list[pl.DataFrame]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=WEIGHT_SCHEMA)
    return pl.concat(parts).sort("date", "symbol")


def topk_dropout_weights(
    signals: pl.DataFrame, dates: pl.Series, k: int, n_drop: int, score: str = "score"
) -> pl.DataFrame:
    """Qlib's TopkDropout book on ``dates`` (see the module docstring); a held name without a
    score on a date ranks last. ``n_drop = 0`` never sells (Qlib's list slice ``[-0:]`` would
    sell everything)."""
    if k < 1 or n_drop < 0:
        raise ValueError(f"TopkDropout needs k >= 1 and n_drop >= 0, got {k}, {n_drop}")
    held: list[str] = []
    parts = []
    for day, names in _per_date(signals, dates, score):
        rank = dict(zip(names, range(len(names)), strict=True))
        last = sorted(held, key=lambda s: rank.get(s, len(names)))  # best first, unscored last
        held_set = set(last)
        new = [s for s in names if s not in held_set][: n_drop + k - len(last)]
        combined = sorted(last + new, key=lambda s: rank.get(s, len(names)))
        bottom = set(combined[-n_drop:]) if n_drop > 0 else set()
        sell = [s for s in last if s in bottom]
        buy = new[: len(sell) + k - len(last)]
        kept = [s for s in last if s not in bottom]
        parts.append(_book(day, kept, buy, k))
        held = kept + buy
    return _frame(parts)


def hold_buffer_weights(
    signals: pl.DataFrame, dates: pl.Series, k: int, buffer: int, score: str = "score"
) -> pl.DataFrame:
    """Buy at rank ``<= k``, sell only past rank ``k + buffer`` (or without a score), refill to
    ``k`` from the best names not held (see the module docstring)."""
    if k < 1 or buffer < 0:
        raise ValueError(f"the hold buffer needs k >= 1 and buffer >= 0, got {k}, {buffer}")
    held: list[str] = []
    parts = []
    for day, names in _per_date(signals, dates, score):
        rank = dict(zip(names, range(1, len(names) + 1), strict=True))
        kept = [s for s in held if rank.get(s, np.inf) <= k + buffer]
        kept_set = set(kept)
        buy = [s for s in names if s not in kept_set][: max(0, k - len(kept))]
        parts.append(_book(day, kept, buy, k))
        held = kept + buy
    return _frame(parts)
