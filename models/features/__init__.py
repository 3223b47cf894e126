"""Point-in-time feature engineering on the long panel, as polars expressions.

Every function here maps a ``LazyFrame`` to a ``LazyFrame`` and uses only rows whose date (or,
for alternative data, whose ``available_date``) is on or before the row being computed:
``tests/unit/features/test_features.py`` proves it by perturbing the future and comparing.
"""

from models.features.alternative import alt_features, join_alt_features
from models.features.pipeline import (
    FEATURE_SETS,
    build_feature_matrix,
    feature_columns,
    feature_names,
    plan,
)
from models.features.registry import REGISTRY, describe
from models.features.technical import (
    ENGINE,
    compute,
    cross_sectional_ranks,
    cross_sectional_zscores,
    price_features,
    sector_neutral,
    spec,
)

__all__ = [
    "ENGINE",
    "FEATURE_SETS",
    "REGISTRY",
    "alt_features",
    "build_feature_matrix",
    "compute",
    "cross_sectional_ranks",
    "cross_sectional_zscores",
    "describe",
    "feature_columns",
    "feature_names",
    "join_alt_features",
    "plan",
    "price_features",
    "sector_neutral",
    "spec",
]
