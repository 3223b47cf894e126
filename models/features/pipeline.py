"""The default feature set: technical + market-relative + cross-sectional + alternative."""

from collections.abc import Sequence

import polars as pl
import polars.selectors as cs

from models.features.alternative import join_alt_features
from models.features.technical import cross_sectional_ranks, market_relative, price_features
from models.types import CLOSE, DATE, KEYS, SYMBOL

MARKET_SERIES = "SP500"
RANKED = ("ret_5", "ret_20", "ret_60", "vol_20")


def build_feature_matrix(
    prices: pl.LazyFrame, alt: pl.LazyFrame, windows: Sequence[int] = (5, 20, 60)
) -> pl.LazyFrame:
    """Feature matrix ``[symbol, date, <features>]`` from prices and alternative data.

    Non-finite values (a zero range, a zero loss in RSI) become null so that every model sees
    one missing-value convention.
    """
    panel = price_features(prices.select(SYMBOL, DATE, CLOSE), windows)
    panel = join_alt_features(panel, alt)
    market_ret = f"{MARKET_SERIES}_ret_1"
    if market_ret in panel.collect_schema().names():
        panel = market_relative(panel, market_ret, window=max(windows))
    panel = cross_sectional_ranks(panel, [c for c in RANKED if c in _names(panel)])
    return (
        panel.drop(CLOSE)
        .with_columns(
            cs.float().fill_nan(None),
        )
        .with_columns(
            pl.when(cs.float().is_infinite()).then(None).otherwise(cs.float()).name.keep()
        )
        .sort(KEYS)
    )


def feature_columns(frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """Names of the feature columns (everything but the keys)."""
    return [c for c in _names(frame) if c not in KEYS]


def _names(frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    return frame.collect_schema().names()
