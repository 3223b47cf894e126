"""Incremental features for a stream of daily bars.

Each new day's bars join a buffer of the last ``keep`` trading days and the feature matrix is
computed on that buffer only, not on the whole history; the new day's rows are returned. Every
feature reads a bounded window (at most 60 days in the default set) and the cross-sectional
ranks read that day only, so with ``keep`` above the longest window the rows equal the batch
feature matrix's (tested against it).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from models.features import ENGINE

KEEP_DAYS = 130


@dataclass
class IncrementalFeatures:
    history: pl.DataFrame  # [symbol, date, close, ...]: bars before the stream starts
    build: Callable[[pl.LazyFrame], pl.LazyFrame]  # prices -> feature matrix
    keep: int = KEEP_DAYS
    days: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.history = self._trim(self.history)

    def _trim(self, frame: pl.DataFrame) -> pl.DataFrame:
        dates = frame["date"].unique().sort()
        return frame.filter(pl.col("date") >= dates[-min(self.keep, len(dates))]).sort(
            "symbol", "date"
        )

    def _as_panel(self, bars: pl.DataFrame) -> pl.DataFrame:
        """``bars`` with the panel's columns: a bar's close is as traded, so the reconciled
        panel's ``raw_close`` (and ``adj_close``) is its close and ``dollar_volume`` its close
        times its volume; any other column the bars lack is null."""
        derived = {"raw_close": pl.col("close"), "adj_close": pl.col("close")}
        if "volume" in bars.columns:
            derived["dollar_volume"] = pl.col("close") * pl.col("volume")
        missing = [c for c in self.history.columns if c not in bars.columns]
        return bars.with_columns(derived.get(c, pl.lit(None)).alias(c) for c in missing).select(
            self.history.columns
        )

    def update(self, bars: pl.DataFrame) -> pl.DataFrame:
        """Add one day's bars (one row per symbol) and return that day's feature rows."""
        day = bars["date"].max()
        if bars["date"].n_unique() != 1:
            raise ValueError(f"one day of bars at a time, got {bars['date'].n_unique()} dates")
        if self.history.height and day <= self.history["date"].max():
            raise ValueError(f"bars for {day} arrive after {self.history['date'].max()}")
        self.history = self._trim(
            pl.concat([self.history, self._as_panel(bars)], how="vertical_relaxed")
        )
        self.days.append(day)
        return self.build(self.history.lazy()).filter(pl.col("date") == day).collect(engine=ENGINE)
