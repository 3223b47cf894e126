"""Explain group: SHAP explanations of a tree base model on the most recent rows."""

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, ResourceParam, asset
from pydantic import Field

from assets._meta import frame_metadata, image, png_bytes, table, to_markdown
from assets.ports import ReportStore, Tracker
from models.features.registry import describe
from models.learning.dataset import feature_inputs
from models.learning.estimators import get_spec
from models.learning.explain import (
    distil,
    ensemble_shap,
    gradient_shap,
    mean_abs_shap,
    reasons,
    tree_shap,
)
from models.learning.nets import TorchRegressor
from models.learning.stacking import StackedEnsemble
from models.learning.training import BaseModels
from models.reporting.plots import shap_dependence, shap_summary


class ShapConfig(Config):
    model: str = Field(
        default="lightgbm",
        description="Base model to explain: a tree model (exact TreeSHAP) or a torch net "
        "(mlp, lstm, tcn, transformer: expected-gradients SHAP).",
    )
    n_rows: int = Field(default=2000, description="Most recent feature rows explained.")
    top_features: int = Field(default=3, description="Features given a dependence plot.")
    surrogate_depth: int = Field(default=3, description="Depth of the distilled surrogate tree.")


@asset(group_name="explain", kinds={"shap", "mlflow"}, io_manager_key="lake")
def shap_explanations(
    context: AssetExecutionContext,
    config: ShapConfig,
    base_models: BaseModels,
    ensemble_model: StackedEnsemble,
    feature_matrix: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """SHAP values of one tuned base model on the latest rows (exact TreeSHAP for tree models,
    expected gradients for the torch nets): global importance with each
    feature described, beeswarm and dependence plots, the reasons behind the newest day's
    predictions, a shallow surrogate tree with its fidelity, and the stacked ensemble's own
    attribution carried through its meta-learner."""
    if config.model not in base_models.fitted:
        raise ValueError(
            f"explain.model {config.model!r} is not among the trained models "
            f"{list(base_models.fitted)}"
        )
    spec = get_spec(config.model)
    columns = spec.columns(base_models.feature_names)
    model = base_models.fitted[config.model]
    history = feature_matrix.sort("date", "symbol")
    rows = history.tail(config.n_rows)
    if isinstance(model, TorchRegressor):  # expected gradients over the net's look-back window
        inputs = feature_inputs(history, columns, spec.window)[-config.n_rows :]
        explanation = gradient_shap(model, inputs, columns, seed=0)
        X, prediction = explanation.data, model.predict(inputs)
    elif hasattr(model, "predict") and _is_tree(model):
        X = rows.select(columns).to_numpy()
        explanation, prediction = tree_shap(model, X, columns), model.predict(X)
    else:
        raise ValueError(
            f"explain.model {config.model!r} is neither a tree ensemble nor a torch net: "
            "no exact or gradient SHAP for it"
        )
    importance = mean_abs_shap(explanation).join(
        describe(columns).select("feature", "description"), on="feature", how="left"
    )
    top = importance["feature"].head(config.top_features).to_list()
    newest = rows["date"].max()
    why = (
        reasons(explanation, rows.select("symbol", "date"))
        .filter(pl.col("date") == newest)
        .sort("prediction", descending=True)
    )
    _, fidelity, rules = distil(np.nan_to_num(X), prediction, columns, config.surrogate_depth)
    ensemble_part = _ensemble_attribution(ensemble_model, base_models, rows, context)
    summary = png_bytes(shap_summary(explanation))
    dependence = png_bytes(shap_dependence(explanation, top))
    written = [
        reports.write("shap_summary.png", summary),
        reports.write("shap_dependence.png", dependence),
        reports.write(
            "shap_explanations.md",
            "\n\n".join(
                [
                    f"# SHAP explanations of `{config.model}`",
                    to_markdown(importance),
                    f"## Why these assets on {newest}",
                    to_markdown(why, ".5f"),
                    f"## Surrogate tree (depth {config.surrogate_depth}), fidelity R² "
                    f"{fidelity:.3f}",
                    f"```\n{rules}```",
                ]
            ),
        ),
    ]
    with tracker.asset_run(context) as run:
        run.log_metric("surrogate_fidelity_r2", fidelity)
        for path in written:
            run.log_artifact(str(path), "explain")
        run.log_table(importance, "explain/mean_abs_shap.json")
    return Output(
        importance,
        metadata={
            **frame_metadata(importance),
            "top_features": table(importance.head(10)),
            "shap_summary": image(summary, "SHAP summary"),
            "shap_dependence": image(dependence, "SHAP dependence"),
            f"why_{newest}": table(why.head(10)),
            "surrogate_fidelity_r2": fidelity,
            **ensemble_part,
            "surrogate_rules": MetadataValue.md(f"```\n{rules}```"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


def _ensemble_attribution(
    ensemble: StackedEnsemble, base: BaseModels, rows: pl.DataFrame, context
) -> dict:
    """Metadata of the ensemble's SHAP values, or why there are none (a non-linear
    meta-learner, a base model that is not a tree ensemble, or a look-back window)."""
    if base.window > 1:
        return {"ensemble_shap": "not available: a base model reads a look-back window"}
    try:
        explanation = ensemble_shap(ensemble, base.ensemble_inputs(rows), base.input_names)
    except ValueError as exc:
        context.log.info(f"ensemble SHAP skipped: {exc}")
        return {"ensemble_shap": f"not available: {exc}"}
    error = float(
        np.abs(
            explanation.values.sum(axis=1)
            + explanation.base_values
            - ensemble.predict(explanation.data)
        ).max()
    )
    return {
        "ensemble_top_features": table(mean_abs_shap(explanation).head(10)),
        "ensemble_shap_additivity_error": error,
        "ensemble_shap_summary": image(
            png_bytes(shap_summary(explanation)), "ensemble SHAP summary"
        ),
    }


def _is_tree(model) -> bool:
    from lightgbm import LGBMModel
    from xgboost import XGBModel

    return isinstance(model, LGBMModel | XGBModel) or hasattr(model, "estimators_")
