"""Join features and labels into the arrays the estimators see.

The feature matrix is held once, as one C-ordered numpy matrix in the dataset's row order
(float32 when every feature column is: see :func:`compact_floats`); folds are index arrays into
it, and rows are read as slices (views) where they are contiguous, which walk-forward training
windows and test blocks are in a matrix sorted by date.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl
import polars.selectors as cs

from models.types import DATE, KEYS, SYMBOL

TARGETS = ("rank", "raw")
COLUMN_GROUP = 16  # feature columns read and gathered at a time into the matrix
# float32's finite range and smallest normal number: a value outside (overflow to inf, or a
# denormal that loses relative precision) keeps its column in float64
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def compact_floats(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """``frame`` with its Float64 columns cast to Float32 wherever that keeps every value to
    float32's relative precision (2**-24, about 6e-8), and the columns left in float64, each with
    the reason: a finite value beyond float32's range, or a non-zero one below its smallest
    normal number.

    Tree models are unaffected at that precision (XGBoost reads float32 anyway, LightGBM bins
    the values), and the matrix takes half the memory.
    """
    floats = frame.select(cs.float()).columns
    wide = [c for c in floats if frame.schema[c] == pl.Float64]
    if not wide:
        return frame, {}
    col = pl.col(wide)
    finite = col.filter(col.is_finite())
    big = frame.select(finite.abs().max().name.suffix("__max")).row(0)
    small = frame.select(finite.abs().filter(finite != 0).min().name.suffix("__min")).row(0)
    kept: dict[str, str] = {}
    for name, hi, lo in zip(wide, big, small, strict=True):
        if hi is not None and hi > FLOAT32_MAX:
            kept[name] = f"|value| up to {hi:.3g} exceeds float32's range ({FLOAT32_MAX:.3g})"
        elif lo is not None and lo < FLOAT32_TINY:
            kept[name] = f"|value| down to {lo:.3g} is below float32's smallest normal number"
    cast = [c for c in wide if c not in kept]
    return frame.with_columns(pl.col(cast).cast(pl.Float32)), kept


def matrix_dtype(schema: pl.Schema, names: Sequence[str]) -> type:
    """float32 when every column in ``names`` is Float32 (or narrower), else float64."""
    narrow = (pl.Float32, pl.Int8, pl.Int16, pl.UInt8, pl.UInt16, pl.Boolean)
    return np.float32 if all(schema[n] in narrow for n in names) else np.float64


def gather_matrix(
    frame: pl.DataFrame | pl.LazyFrame, names: Sequence[str], rows: np.ndarray
) -> np.ndarray:
    """``frame[rows, names]`` as one C-ordered matrix (nulls as NaN), filled a group of columns
    at a time: of a lazy frame (a parquet scan) only those columns are read, so besides the
    matrix one group is held, never the whole frame."""
    lazy = frame.lazy()
    dtype = matrix_dtype(lazy.collect_schema(), names)
    out = np.empty((len(rows), len(names)), dtype=dtype)
    index = pl.Series("_rows", rows, dtype=pl.Int64)
    for start in range(0, len(names), COLUMN_GROUP):
        group = list(names[start : start + COLUMN_GROUP])
        part = lazy.select(pl.col(group).gather(index)).collect()
        out[:, start : start + len(group)] = part.to_numpy()
        del part
    return out


def row_view(matrix: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows]``: a view (no copy) when ``rows`` is an increasing run of consecutive
    positions, as walk-forward training windows and test blocks are; else a copy."""
    rows = np.asarray(rows)
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
        return matrix[rows[0] : rows[-1] + 1]
    return matrix[rows]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Rows sorted by (date, symbol): ``frame`` holds the keys, ``label``, ``label_end`` and
    ``target``; ``matrix`` the features in the same row order, missing values as NaN for the
    tree models."""

    frame: pl.DataFrame
    matrix: np.ndarray
    feature_names: list[str]
    target: str

    @property
    def X(self) -> np.ndarray:
        """The feature matrix itself, not a copy: callers must not write to it."""
        return self.matrix

    @cached_property
    def y(self) -> np.ndarray:
        return self.frame["target"].to_numpy()

    @cached_property
    def dates(self) -> np.ndarray:
        return self.frame[DATE].to_numpy()

    @cached_property
    def label(self) -> np.ndarray:
        return self.frame["label"].to_numpy()

    @cached_property
    def label_end(self) -> np.ndarray:
        return self.frame["label_end"].to_numpy()

    def inputs(
        self, names: Sequence[str], window: int = 1, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """The columns ``names`` (``window == 1``: the matrix itself when they are all of its
        columns in order) or their look-back windows, see :func:`window_inputs`; of the rows
        ``rows`` only when given (a view where they are contiguous)."""
        position = {n: i for i, n in enumerate(self.feature_names)}
        columns = [position[n] for n in names]
        if window == 1:
            X = self.matrix if rows is None else row_view(self.matrix, rows)
            return X if columns == list(range(len(self.feature_names))) else X[:, columns]
        if rows is not None:
            return row_view(self.inputs(names, window), rows)
        out = np.empty((len(self.frame), window * len(columns)), dtype=np.float32)
        for block, k in enumerate(range(window - 1, -1, -1)):
            lagged = self._lag_rows(k)
            part = self.matrix[np.maximum(lagged, 0)[:, None], columns]
            part[lagged < 0] = np.nan
            out[:, block * len(columns) : (block + 1) * len(columns)] = part
        return out

    def _lag_rows(self, k: int) -> np.ndarray:
        """For each row, the position of the same symbol's row ``k`` rows earlier (-1 if none)."""
        lag = pl.col("_row").shift(k).over(SYMBOL, order_by=DATE).fill_null(-1)
        keys = self.frame.select(SYMBOL, DATE).with_row_index("_row")
        return keys.select(lag.cast(pl.Int64)).to_series().to_numpy()


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


def assemble(
    features: pl.DataFrame | pl.LazyFrame, labels: pl.DataFrame, target: str = "rank"
) -> Dataset:
    """Inner-join on ``(symbol, date)``; add ``target``.

    ``target="rank"`` trains on each date's cross-sectional rank of the label, centred on zero
    (robust to the fat tails of raw returns); ``"raw"`` on the forward return itself. The join
    runs on the keys alone and the features are gathered once into the matrix, a few columns at
    a time: no joined copy of the feature columns is made, and a lazy ``features`` (the lake's
    parquet scan) is never held whole.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    lazy = features.lazy()
    feature_names = [c for c in lazy.collect_schema().names() if c not in KEYS]
    label = pl.col("label")
    y = (label.rank() / label.count()).over(DATE) - 0.5 if target == "rank" else label
    keys = (
        lazy.select(KEYS)
        .with_row_index("_row")
        .collect()
        .join(labels, on=KEYS, how="inner")
        .with_columns(y.alias("target"))
        .sort(DATE, SYMBOL)
    )
    matrix = gather_matrix(lazy, feature_names, keys["_row"].to_numpy())
    return Dataset(
        frame=keys.drop("_row"), matrix=matrix, feature_names=feature_names, target=target
    )


def check_sample_weight(sample_weight, n_rows: int) -> np.ndarray:
    """``sample_weight`` as float64, refused unless it is one finite, non-negative weight per
    row and not zero everywhere (what the estimators we write accept)."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n_rows,) or not np.all(np.isfinite(w)) or w.min() < 0:
        raise ValueError("sample_weight must be finite and non-negative, one per row")
    if not w.sum() > 0:
        raise ValueError("sample_weight is zero everywhere: nothing to fit")
    return w
