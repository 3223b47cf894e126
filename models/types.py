"""Shared type aliases and column names for the long panel ``[symbol, date, ...]``."""

from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import polars as pl

Frame: TypeAlias = pl.DataFrame | pl.LazyFrame
FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
Split: TypeAlias = tuple[IntArray, IntArray]

SYMBOL = "symbol"
DATE = "date"
CLOSE = "close"
KEYS = [SYMBOL, DATE]
