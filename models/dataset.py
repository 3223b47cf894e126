"""Join features and labels into the arrays the estimators see."""

from dataclasses import dataclass

import numpy as np
import polars as pl

from models.types import DATE, KEYS

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
