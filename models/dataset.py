"""Join features and labels into the arrays the estimators see."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from models.types import DATE, KEYS, SYMBOL

TARGETS = ("rank", "raw")


@dataclass(frozen=True)
class Dataset:
    """Rows sorted by (date, symbol); ``X`` keeps missing values as NaN for the tree models."""

    frame: pl.DataFrame
    feature_names: list[str]
    target: str

    @property
    def X(self) -> np.ndarray:
        return self.frame.select(self.feature_names).to_numpy().astype(np.float64)

    @property
    def y(self) -> np.ndarray:
        return self.frame["target"].to_numpy()

    @property
    def dates(self) -> np.ndarray:
        return self.frame[DATE].to_numpy()

    @property
    def label(self) -> np.ndarray:
        return self.frame["label"].to_numpy()

    @property
    def label_end(self) -> np.ndarray:
        return self.frame["label_end"].to_numpy()

    def inputs(self, names: Sequence[str], window: int = 1) -> np.ndarray:
        """The columns ``names`` (``window == 1``) or their look-back windows, see
        :func:`window_inputs`."""
        return feature_inputs(self.frame, names, window)


def feature_inputs(frame: pl.DataFrame, names: Sequence[str], window: int = 1) -> np.ndarray:
    """``names`` of ``frame`` as float64 (``window == 1``), or their look-back windows."""
    if window == 1:
        return frame.select(names).to_numpy().astype(np.float64)
    return window_inputs(frame, names, window)


def window_columns(names: Sequence[str], window: int) -> list[str]:
    """Column names of a flattened window: oldest lag first, ``f@k`` is ``f`` k rows earlier."""
    return [f"{n}@{k}" if k else n for k in range(window - 1, -1, -1) for n in names]


def window_inputs(frame: pl.DataFrame, names: Sequence[str], window: int) -> np.ndarray:
    """``(n, window * len(names))`` float32: each row's features and those of the same symbol's
    ``window - 1`` previous rows (null before the symbol's first row), oldest first.

    Only earlier rows of the same symbol enter a row, so windows add no look-ahead.
    """
    lagged = [
        pl.col(n).shift(k).over(SYMBOL, order_by=DATE).alias(f"{n}@{k}") if k else pl.col(n)
        for k in range(window - 1, -1, -1)
        for n in names
    ]
    return frame.select(lagged).to_numpy().astype(np.float32)


def assemble(features: pl.DataFrame, labels: pl.DataFrame, target: str = "rank") -> Dataset:
    """Inner-join on ``(symbol, date)``; add ``target``.

    ``target="rank"`` trains on each date's cross-sectional rank of the label, centred on zero
    (robust to the fat tails of raw returns); ``"raw"`` on the forward return itself.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    feature_names = [c for c in features.columns if c not in KEYS]
    label = pl.col("label")
    y = (label.rank() / label.count()).over(DATE) - 0.5 if target == "rank" else label
    frame = (
        features.join(labels, on=KEYS, how="inner")
        .with_columns(y.alias("target"))
        .sort(DATE, "symbol")
    )
    return Dataset(frame=frame, feature_names=feature_names, target=target)
