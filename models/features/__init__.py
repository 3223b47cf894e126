"""Point-in-time feature engineering on the long panel, as polars expressions.

Every function here maps a ``LazyFrame`` to a ``LazyFrame`` and uses only rows whose date (or,
for alternative data, whose ``available_date``) is on or before the row being computed:
``tests/unit/test_features.py`` proves it by truncating the inputs and comparing.
"""

from models.features.alternative import alt_features, join_alt_features
from models.features.pipeline import build_feature_matrix, feature_columns
from models.features.technical import cross_sectional_ranks, market_relative, price_features

__all__ = [
    "alt_features",
    "build_feature_matrix",
    "cross_sectional_ranks",
    "feature_columns",
    "join_alt_features",
    "market_relative",
    "price_features",
]
