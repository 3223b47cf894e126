"""Features group: the point-in-time feature matrix and the labels."""

import polars as pl
import polars.selectors as cs
from dagster import Config, MetadataValue, Output, asset
from pydantic import Field

from assets._meta import frame_metadata, table
from models.data.universe import investable, without_stale_days
from models.features import (
    ENGINE,
    build_feature_matrix,
    describe,
    feature_columns,
    feature_names,
    plan,
)
from models.features.alternative import describe_sentiment, sentiment_features
from models.features.pipeline import RANKED
from models.features.statistical import describe_statistical, statistical_features
from models.features.technical import MARKET_RET
from models.learning.dataset import compact_floats
from models.learning.label_transforms import transform_labels
from models.learning.labels import excess_returns, forward_returns, triple_barrier


class FeaturesConfig(Config):
    feature_set: str = Field(
        default="default", description="minimal, default, alpha158, all or custom."
    )
    names: list[str] = Field(
        default=[], description="Feature names for the custom set (see the registry)."
    )
    windows: list[int] = Field(
        default=[5, 20, 60],
        description="Rolling windows of the default and minimal sets (trading days).",
    )
    cs_rank: list[str] = Field(
        default=list(RANKED), description="Features also ranked across symbols per date."
    )
    cs_zscore: list[str] = Field(
        default=[], description="Features also z-scored across symbols per date."
    )
    winsorize: float | None = Field(
        default=None,
        description="Clip z-scored features at this per-date quantile and its complement.",
    )
    sector_neutral: list[str] = Field(
        default=[], description="Features also demeaned within their sector per date."
    )
    statistical: bool = Field(
        default=False,
        description="Add ARMA(1,1) return and GARCH(1,1) volatility forecasts (stat_* columns, "
        "refitted yearly per symbol, point-in-time); on by itself for the arima, garch and "
        "hybrid models.",
    )
    horizon: int = Field(default=5, description="Horizon of the ARMA forecast (trading days).")
    n_jobs: int = Field(default=2, description="Processes for the per-symbol statistical fits.")
    dtype: str = Field(
        default="float32",
        description="float32: feature columns stored and trained on in float32 (half the "
        "memory; a column whose values float32 cannot hold stays float64, and the metadata "
        "names it); float64: every column as computed.",
    )


class LabelsConfig(Config):
    kind: str = Field(
        default="forward", description="forward, excess (over the S&P 500) or triple_barrier."
    )
    horizon: int = Field(default=5, description="Forward-return horizon in trading days.")
    skip: int = Field(
        default=0,
        description="forward: trading days between the feature date and the label's start "
        "(1: the next close to the close after, as a book trading at the next close earns).",
    )
    barrier_k: float = Field(
        default=2.0, description="Triple barrier: width in trailing volatilities."
    )
    vol_window: int = Field(default=20, description="Triple barrier: days of trailing volatility.")
    max_gap_days: int | None = Field(
        default=10,
        description="Drop a label whose horizon spans more than horizon + this many business "
        "days (a hole in the symbol's history; data.max_gap_days); none keeps every label.",
    )
    transform: str = Field(
        default="none",
        description="Per-date label transform before training: none, rank, zscore, "
        "market_neutral (minus the date's mean), sector_neutral (minus the sector's), "
        "sector_rank (rank within the sector).",
    )


@asset(group_name="features", kinds={"polars"}, io_manager_key="lake")
def feature_matrix(
    config: FeaturesConfig,
    market_prices: pl.DataFrame,
    alt_data: pl.DataFrame,
    sector_map: pl.DataFrame,
    news_sentiment: pl.DataFrame,
    universe: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """``[symbol, date, <features>]``: the configured feature set (technical, Alpha158, market-
    relative), alternative data and news sentiment joined as of their publication, cross-sectional
    transforms, ARMA/GARCH forecasts when asked; each
    value uses only data known on or before its date. Computed on the whole panel (windows
    read every earlier row) without market-wide stale days, then kept only on the rows the
    universe screen lets in: the models train and score on the investable universe alone."""
    if config.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {config.dtype!r}")
    panel = market_prices
    market_prices = without_stale_days(market_prices, universe)

    def build(dtype: str) -> pl.LazyFrame:
        return build_feature_matrix(
            market_prices.lazy(),
            alt_data.lazy(),
            config.windows,
            feature_set=config.feature_set,
            names=config.names,
            cs_rank=config.cs_rank,
            cs_zscore=config.cs_zscore,
            winsorize=config.winsorize,
            sectors=sector_map.lazy() if len(sector_map) else None,
            sector_neutral=config.sector_neutral,
            dtype=dtype,
        )

    frame = build(config.dtype).collect(engine=ENGINE)
    # float32 reads inf only where a finite value exceeded its range (non-finite values are
    # null by then): those columns are built again, and kept, in float64
    overflow: list[str] = []
    if config.dtype == "float32":
        floats = frame.select(cs.float())
        flags = floats.select(pl.all().is_infinite().any()).row(0)
        overflow = [c for c, bad in zip(floats.columns, flags, strict=True) if bad]
    if overflow:
        wide = build("float64").select(overflow).collect(engine=ENGINE)
        frame = frame.with_columns(wide)
    if len(news_sentiment):  # news the user supplied (data.texts), as of its availability
        sentiment = sentiment_features(frame.lazy(), news_sentiment.lazy()).collect()
        frame = frame.join(sentiment, on=["symbol", "date"], how="left")
    if config.statistical:
        stats = statistical_features(market_prices, horizon=config.horizon, n_jobs=config.n_jobs)
        frame = frame.join(stats, on=["symbol", "date"], how="left")
    rows = len(frame)
    frame = investable(frame, universe)
    kept: dict[str, str] = {}
    if config.dtype == "float32":  # what is float64 now: those columns, and any joined since
        frame, kept = compact_floats(frame)
    columns = feature_columns(frame)
    requested = feature_names(config.feature_set, config.windows, config.names)
    skipped = plan(requested, market_prices.columns, MARKET_RET in frame.columns).skipped
    null_share = frame.select(pl.col(columns).null_count() / max(len(frame), 1)).row(0)
    described = pl.concat(
        [describe(columns), describe_statistical(columns), describe_sentiment(columns)]
    )
    return Output(
        frame,
        metadata={
            **frame_metadata(frame, dict(described.select("feature", "description").iter_rows())),
            "n_features": len(columns),
            "feature_set": config.feature_set,
            "features": table(described),
            "skipped_for_missing_inputs": MetadataValue.json(
                {k: list(v) for k, v in skipped.items()}
            ),
            "max_null_share": float(max(null_share, default=0.0)),
            "rows_screened_out": rows - len(frame),
            "panel_rows": len(panel),
            "dtype": config.dtype,
            "float64_columns": MetadataValue.json(kept),
            "matrix_mib": round(frame.estimated_size("mb"), 1),
        },
    )


@asset(group_name="features", kinds={"polars"}, io_manager_key="lake")
def labels(
    config: LabelsConfig,
    market_prices: pl.DataFrame,
    alt_data: pl.DataFrame,
    universe: pl.DataFrame,
    sector_map: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """``[symbol, date, label, label_end]``: the configured label and the date its horizon ends,
    on the panel without market-wide stale days, for the rows the universe screen lets in; a
    label across a hole in a symbol's history is dropped (``max_gap_days``); transformed per
    date when asked (``models.learning.label_transforms``), over the screened rows."""
    prices = without_stale_days(market_prices, universe).lazy()
    if config.kind == "forward":
        frame = forward_returns(
            prices, config.horizon, config.skip, max_gap_days=config.max_gap_days
        )
    elif config.skip:
        raise ValueError(f"labels.skip applies to forward labels, not {config.kind!r}")
    elif config.kind == "excess":
        market = (
            alt_data.lazy()
            .filter(pl.col("series") == "SP500")
            .select("date", pl.col("value").alias("close"))
        )
        frame = excess_returns(prices, market, config.horizon, config.max_gap_days)
    elif config.kind == "triple_barrier":
        frame = triple_barrier(
            prices, config.horizon, config.barrier_k, config.vol_window, config.max_gap_days
        )
    else:
        raise ValueError(f"unknown label kind {config.kind!r}")
    frame = investable(frame.collect(), universe).lazy()
    if config.transform != "none":  # a one-name date (or sector) has no z-score: dropped
        sectors = sector_map.lazy() if len(sector_map) else None
        frame = transform_labels(frame, config.transform, sectors).drop_nans("label")
    frame = frame.collect()
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "kind": config.kind,
            "horizon": config.horizon,
            "transform": config.transform,
            "label_mean": float(frame["label"].mean()),
        },
    )
