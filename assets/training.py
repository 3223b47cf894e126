"""Training group: Optuna-tuned base models, their out-of-fold predictions, the stacked ensemble."""

from pathlib import Path

import mlflow
import numpy as np
import optuna
import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, ResourceParam, asset
from mlflow.models import infer_signature
from pydantic import Field
from sklearn.linear_model import LinearRegression, Ridge

import models
from assets._meta import frame_metadata, image, png_bytes, table
from assets.ports import Tracker
from models.dataset import assemble
from models.metrics import daily_ic, ic_summary
from models.plots import ic_over_time
from models.stacking import StackedEnsemble
from models.training import BaseModels, inner_splits, oof_frame, tune_and_fit, tuning_window

REGISTERED_MODEL = "alphaforge-ensemble"
# skops (MLflow 3's safe sklearn format) loads only the types listed here.
SKOPS_TRUSTED = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBRegressor",
    "models.stacking.StackedEnsemble",
]
PIP_REQUIREMENTS = ["scikit-learn", "lightgbm", "xgboost", "numpy", "polars"]


class TrainingConfig(Config):
    models: list[str] = Field(default=["lightgbm", "xgboost"], description="Base models to tune.")
    n_trials: int = Field(default=30, description="Optuna trials per model (TPE, median pruning).")
    inner_splits: int = Field(
        default=4, description="Purged walk-forward folds inside the tuning window."
    )
    tune_fraction: float = Field(default=0.5, description="Share of dates in the tuning window.")
    target: str = Field(
        default="rank", description="'rank' (cross-sectional rank of the label) or 'raw'."
    )
    seed: int = Field(default=42, description="Seed for samplers and estimators.")
    n_jobs: int = Field(default=2, description="Threads per model fit.")


class EnsembleConfig(Config):
    meta_learner: str = Field(
        default="positive_linear",
        description="'positive_linear' (non-negative least squares) or 'ridge' (non-negative, alpha 1).",
    )


META_LEARNERS = {
    "positive_linear": lambda: LinearRegression(positive=True),
    "ridge": lambda: Ridge(alpha=1.0, positive=True),
}


class OOFConfig(Config):
    outer_splits: int = Field(
        default=5, description="Walk-forward test blocks after the tuning window."
    )


def _trial_logger(context: AssetExecutionContext, model: str, n_trials: int):
    """Log each finished trial as a nested MLflow run and as a progress line."""

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with mlflow.start_run(
            run_name=f"{model}-trial-{trial.number}",
            nested=True,
            tags={"optuna.study": study.study_name, "optuna.state": trial.state.name},
        ):
            mlflow.log_params(trial.params)
            for fold, score in enumerate(trial.user_attrs.get("fold_scores", [])):
                mlflow.log_metric("fold_rank_ic", score, step=fold)
            if trial.value is not None:
                mlflow.log_metric("mean_rank_ic", trial.value)
            if trial.duration is not None:
                mlflow.log_metric("duration_s", trial.duration.total_seconds())
        value = f"{trial.value:+.4f}" if trial.value is not None else "—"
        context.log.info(
            f"{model} trial {trial.number + 1}/{n_trials} {trial.state.name.lower()}: rank IC {value}"
        )

    return callback


@asset(
    group_name="training", kinds={"lightgbm", "xgboost", "optuna", "mlflow"}, io_manager_key="lake"
)
def base_models(
    context: AssetExecutionContext,
    config: TrainingConfig,
    feature_matrix: pl.DataFrame,
    labels: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    optuna_storage: ResourceParam[str],
) -> Output[BaseModels]:
    """Each base model tuned by Optuna TPE on purged walk-forward folds inside the tuning window,
    then refitted on every labelled row (for live predictions and explanations)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress goes through context.log
    ds = assemble(feature_matrix, labels, config.target)
    tune_end, mask = tuning_window(ds, config.tune_fraction)
    splits = inner_splits(ds, mask, config.inner_splits)
    result = BaseModels(
        {}, {}, tune_end, config.target, ds.feature_names, config.seed, config.n_jobs
    )
    with tracker.asset_run(context) as run:
        mlflow.log_params(
            {
                "tune_end": tune_end,
                "n_rows": len(ds.frame),
                "n_features": len(ds.feature_names),
                **config.model_dump(exclude={"models"}),
            }
        )
        for name in config.models:
            study_name = f"{name}-{context.run_id}"
            with mlflow.start_run(run_name=name, nested=True):
                params, score, fitted = tune_and_fit(
                    ds,
                    name,
                    splits=splits,
                    n_trials=config.n_trials,
                    seed=config.seed,
                    n_jobs=config.n_jobs,
                    storage=optuna_storage,
                    study_name=study_name,
                    callbacks=[_trial_logger(context, name, config.n_trials)],
                )
                mlflow.log_params(params)
                mlflow.log_metric("cv_rank_ic", score)
            result.params[name], result.cv_scores[name], result.fitted[name] = params, score, fitted
            result.studies[name] = study_name
    scores = pl.DataFrame(
        {"model": list(result.cv_scores), "cv_rank_ic": list(result.cv_scores.values())}
    )
    return Output(
        result,
        metadata={
            "cv_rank_ic": table(scores),
            "tune_end": str(tune_end),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.info.run_id)),
        },
    )


@asset(group_name="training", kinds={"polars", "mlflow"}, io_manager_key="lake")
def oof_predictions(
    context: AssetExecutionContext,
    config: OOFConfig,
    feature_matrix: pl.DataFrame,
    labels: pl.DataFrame,
    base_models: BaseModels,
    tracker: ResourceParam[Tracker],
) -> Output[pl.DataFrame]:
    """Out-of-fold predictions of every base model on walk-forward blocks after the tuning window:
    ``[symbol, date, label, label_end, target, fold, train_end, pred_<model>...]``."""
    ds = assemble(feature_matrix, labels, base_models.target)
    oof = oof_frame(ds, base_models, config.outer_splits)
    ic = pl.concat(
        daily_ic(
            oof["date"].to_numpy(), oof[f"pred_{m}"].to_numpy(), oof["label"].to_numpy()
        ).with_columns(model=pl.lit(m))
        for m in base_models.params
    )
    summary = pl.DataFrame(
        [
            {
                "model": m,
                **ic_summary(
                    oof["date"].to_numpy(), oof[f"pred_{m}"].to_numpy(), oof["label"].to_numpy()
                ),
            }
            for m in base_models.params
        ]
    )
    figure = ic_over_time(ic)
    with tracker.asset_run(context) as run:
        for row in summary.to_dicts():
            mlflow.log_metrics(
                {
                    f"{row['model']}_{k}": v
                    for k, v in row.items()
                    if k != "model" and np.isfinite(v)
                }
            )
        mlflow.log_figure(figure, "oof_rank_ic.png")
    return Output(
        oof,
        metadata={
            **frame_metadata(oof),
            "oos_metrics": table(summary),
            "rank_ic_over_time": image(png_bytes(figure), "Rank IC over time"),
            "first_oof_date": str(oof["date"].min()),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.info.run_id)),
        },
    )


@asset(group_name="training", kinds={"sklearn", "mlflow"}, io_manager_key="lake")
def ensemble_model(
    context: AssetExecutionContext,
    config: EnsembleConfig,
    oof_predictions: pl.DataFrame,
    base_models: BaseModels,
    feature_matrix: pl.DataFrame,
    tracker: ResourceParam[Tracker],
) -> Output[StackedEnsemble]:
    """Non-negative linear meta-learner (configurable) fitted only on out-of-fold predictions, over the base
    models refitted on all labelled rows; registered in MLflow as ``alphaforge-ensemble`` with
    alias ``challenger``."""
    pred_cols = [f"pred_{m}" for m in base_models.params]
    ensemble = StackedEnsemble(base_models.fitted, META_LEARNERS[config.meta_learner]()).fit(
        oof_predictions.select(pred_cols).to_numpy(), oof_predictions["target"].to_numpy()
    )
    weights = dict(zip(base_models.params, ensemble.final_estimator_.coef_.tolist(), strict=True))
    example = feature_matrix.select(base_models.feature_names).tail(5).to_pandas()
    with tracker.asset_run(context) as run:
        mlflow.log_params({f"meta_weight_{k}": round(v, 6) for k, v in weights.items()})
        info = mlflow.sklearn.log_model(
            ensemble,
            name="ensemble",
            registered_model_name=REGISTERED_MODEL,
            signature=infer_signature(example, ensemble.predict(example)),
            pip_requirements=PIP_REQUIREMENTS,
            code_paths=[str(Path(models.__file__).parent)],
            skops_trusted_types=SKOPS_TRUSTED,
        )
        version = info.registered_model_version
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(REGISTERED_MODEL, "challenger", version)
        client.set_model_version_tag(REGISTERED_MODEL, version, "dagster_run_id", context.run_id)
    context.log.info(f"registered {REGISTERED_MODEL} version {version} as @challenger")
    return Output(
        ensemble,
        metadata={
            "meta_weights": MetadataValue.json(weights),
            "registered_model": f"{REGISTERED_MODEL}@challenger (version {version})",
            "mlflow_run": MetadataValue.url(tracker.run_url(run.info.run_id)),
        },
    )
