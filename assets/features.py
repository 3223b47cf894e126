"""Features group: the point-in-time feature matrix and forward-return labels."""

import polars as pl
from dagster import Config, Output, asset
from pydantic import Field

from assets._meta import frame_metadata
from models.features import build_feature_matrix, feature_columns
from models.labels import forward_returns


class FeaturesConfig(Config):
    windows: list[int] = Field(default=[5, 20, 60], description="Rolling windows in trading days.")


class LabelsConfig(Config):
    horizon: int = Field(default=5, description="Forward-return horizon in trading days.")


@asset(group_name="features", kinds={"polars"}, io_manager_key="lake")
def feature_matrix(
    config: FeaturesConfig, market_prices: pl.DataFrame, alt_data: pl.DataFrame
) -> Output[pl.DataFrame]:
    """``[symbol, date, <features>]``: technical, market-relative, cross-sectional and alternative
    features, each using only data known on or before its date."""
    frame = build_feature_matrix(market_prices.lazy(), alt_data.lazy(), config.windows).collect()
    null_share = frame.select(pl.col(feature_columns(frame)).null_count() / len(frame)).transpose(
        include_header=True, header_name="feature", column_names=["null_share"]
    )
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "n_features": len(feature_columns(frame)),
            "max_null_share": float(null_share["null_share"].max()),
        },
    )


@asset(group_name="features", kinds={"polars"}, io_manager_key="lake")
def labels(config: LabelsConfig, market_prices: pl.DataFrame) -> Output[pl.DataFrame]:
    """``[symbol, date, label, label_end]``: forward return over the horizon and its end date."""
    frame = forward_returns(market_prices.lazy(), config.horizon).collect()
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "horizon": config.horizon,
            "label_mean": float(frame["label"].mean()),
        },
    )
