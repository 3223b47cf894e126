"""Explain group: SHAP explanations of the tree base models on the most recent rows."""

import mlflow
import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, ResourceParam, asset
from pydantic import Field

from assets._meta import frame_metadata, image, png_bytes, table
from assets.ports import ReportStore, Tracker
from models.estimators import get_spec
from models.explain import mean_abs_shap, tree_shap
from models.plots import shap_summary
from models.training import BaseModels


class ShapConfig(Config):
    model: str = Field(default="lightgbm", description="Base model to explain (a tree model).")
    n_rows: int = Field(default=2000, description="Most recent feature rows explained.")


@asset(group_name="explain", kinds={"shap", "mlflow"}, io_manager_key="lake")
def shap_explanations(
    context: AssetExecutionContext,
    config: ShapConfig,
    base_models: BaseModels,
    feature_matrix: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """Mean absolute SHAP value per feature of one tuned base model on the latest rows, with the
    beeswarm summary plot attached."""
    if config.model not in base_models.fitted:
        raise ValueError(
            f"explain.model {config.model!r} is not among the trained models "
            f"{list(base_models.fitted)}"
        )
    columns = get_spec(config.model).columns(base_models.feature_names)
    rows = feature_matrix.sort("date").tail(config.n_rows)
    explanation = tree_shap(
        base_models.fitted[config.model], rows.select(columns).to_numpy(), columns
    )
    importance = mean_abs_shap(explanation)
    png = png_bytes(shap_summary(explanation))
    path = reports.write("shap_summary.png", png)
    with tracker.asset_run(context) as run:
        mlflow.log_artifact(str(path), "explain")
        mlflow.log_table(importance.to_pandas(), "explain/mean_abs_shap.json")
    return Output(
        importance,
        metadata={
            **frame_metadata(importance),
            "top_features": table(importance.head(10)),
            "shap_summary": image(png, "SHAP summary"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.info.run_id)),
        },
    )
