"""Training group: Optuna-tuned base models, their out-of-fold predictions, the stacked ensemble,
the leakage check and the champion/challenger gate."""

import gc
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import optuna
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
)
from optuna.trial import TrialState
from pydantic import Field

from assets._config import CostConfig, keyword_settings
from assets._meta import frame_metadata, image, measure_peak, png_bytes, table, yield_to_fits
from assets.ports import (
    REGISTERED_MODEL,
    Compute,
    ModelRefused,
    ModelRegistry,
    TrackedRun,
    Tracker,
    Tuning,
)
from models.learning.dataset import assemble
from models.learning.leakage import feature_label_ic, feature_leaks, oos_leaks, split_leaks
from models.learning.metrics import (
    daily_ic,
    long_short,
)
from models.learning.promotion import (
    champion_test_rank_ic,
    final_ensemble,
    ic_summaries,
    promotion_decision,
    version_description,
)
from models.learning.training import (
    BaseModels,
    ImpossibleCV,
    oof_frame,
    plan_training,
    tune_and_fit,
)
from models.reporting.plots import (
    cumulative_long_short,
    ic_over_time,
    optimisation_history,
    parameter_importance,
)

PIP_REQUIREMENTS = ["scikit-learn", "lightgbm", "xgboost", "numpy", "polars", "torch"]
MODEL_DESCRIPTION = (
    "AlphaForge's stacked ensemble: a meta-learner over the base models' out-of-fold "
    "predictions, scoring each symbol's next-horizon return rank per day. @challenger is the "
    "latest run's version; @champion the one the champion gate promoted (test Rank IC "
    "significantly above zero and beating the previous champion on the same test period); "
    "each version's description says what it was trained on and how it tested. Score with "
    "`alphaforge score` (default @champion)."
)


class TrainingConfig(CostConfig):
    models: list[str] = Field(default=["lightgbm", "xgboost"], description="Base models to tune.")
    objective: str = Field(
        default="rank_ic",
        description="What a tuning fold is scored by: 'rank_ic' (mean per-date Rank IC) or "
        "'net_return' (the annualised net return of the top-k book its forecasts build, after "
        "the commission and the half-spread the backtest charges).",
    )
    book_top_k: int = Field(default=5, description="net_return: names in the scored book.")
    book_every: int = Field(default=5, description="net_return: dates between its rebalances.")
    n_trials: int = Field(default=30, description="Optuna trials per model (TPE, median pruning).")
    inner_splits: int = Field(
        default=4,
        description="Folds inside the tuning window (walk-forward test blocks, or CPCV groups).",
    )
    cv_scheme: str = Field(
        default="walk_forward",
        description="Tuning CV: 'walk_forward' (purged) or 'cpcv' (combinatorial purged, "
        "embargoed).",
    )
    tune_fraction: float = Field(default=0.5, description="Share of dates in the tuning window.")
    test_days: int = Field(
        default=126,
        description="Last trading days held out as the final test period: registered models "
        "are fitted before it and the champion is chosen on it.",
    )
    target: str = Field(
        default="rank", description="'rank' (cross-sectional rank of the label) or 'raw'."
    )
    seed: int = Field(default=42, description="Seed for samplers and estimators.")
    n_jobs: int = Field(default=2, description="Threads per model fit.")
    horizon: int = Field(
        default=5,
        description="Label horizon in trading days (labels.horizon): the purge between every "
        "training window and its test block, on the panel's calendar.",
    )
    outer_splits: int = Field(
        default=5,
        description="Walk-forward test blocks after the tuning window (cv.outer_splits): "
        "checked here, with the other CV settings, before any tuning starts.",
    )
    workers: int = Field(
        default=1,
        description="Processes that run each model's Optuna trials together, sharing its study "
        "(this one and workers - 1 more).",
    )
    engine: str = Field(
        default="local",
        description="Where LightGBM and XGBoost fit: 'local' (this process) or 'dask' "
        "(lightgbm.dask / xgboost.dask on the Dask cluster of models.dask_scheduler, else a "
        "local one); out-of-fold predictions use the same engine.",
    )


class EnsembleConfig(Config):
    meta_learner: str = Field(
        default="positive_linear",
        description="'positive_linear' (non-negative least squares), 'ridge' (non-negative, "
        "alpha 1) or 'lightgbm' (a small one).",
    )
    max_champion_age_days: float = Field(
        default=30.0,
        description="Warn (check_ensemble_model_champion_age) when the @champion model is older than this.",
    )
    promotion_margin: float = Field(
        default=0.0,
        description="Rank IC on the final test period by which the challenger must beat the "
        "champion to be promoted.",
    )
    min_test_rank_ic: float = Field(
        default=0.0,
        description="Floor on the challenger's mean daily Rank IC on the final test period: at "
        "or below it, no promotion, champion or not.",
    )
    min_test_rank_ic_t: float = Field(
        default=2.0,
        description="t-statistic (Newey-West over the label horizon) of the challenger's mean "
        "daily test Rank IC that it must exceed to be promoted, champion or not: significantly "
        "above zero.",
    )


class OOFConfig(Config):
    outer_splits: int = Field(
        default=5, description="Walk-forward test blocks after the tuning window."
    )


PROGRESS_EVERY_S = 5.0  # the Dagster log's trial lines, at most one per this many seconds


def _study_figures(study: optuna.Study, model: str, run: TrackedRun) -> dict[str, bytes]:
    """Optimisation history and (with two or more scored trials) parameter importance, logged
    to the model's ``run`` (which names its run on every call, so this can run on a background
    thread: see ``base_models``)."""
    figures = {
        "optimisation_history": optimisation_history(
            [t.value for t in study.trials], f"{model}: Optuna optimisation history"
        )
    }
    scored = [t for t in study.trials if t.value is not None]
    if len(scored) >= 2 and scored[0].params:
        try:
            importance = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # constant scores: nothing to attribute
            importance = {}
        if importance:
            figures["parameter_importance"] = parameter_importance(
                importance, f"{model}: hyper-parameter importance (fANOVA)"
            )
    pngs = {name: png_bytes(fig) for name, fig in figures.items()}
    for name, png in pngs.items():
        run.log_png(png, f"{model}_{name}.png")
    return pngs


@asset(
    group_name="training",
    kinds={"lightgbm", "xgboost", "pytorch", "optuna", "mlflow"},
    io_manager_key="lake",
)
def base_models(
    context: AssetExecutionContext,
    config: TrainingConfig,
    feature_matrix: pl.LazyFrame,  # a scan of the lake's file: read a few columns at a time
    labels: pl.DataFrame,
    market_prices: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    tuning: ResourceParam[Tuning],
    compute: ResourceParam[Compute],
) -> Output[BaseModels]:
    """Each base model tuned by Optuna TPE (median pruning on fold scores) on purged folds inside
    the tuning window, then fitted on every row whose label ends before the final test period.
    Studies persist in Optuna storage under a name derived from the data and splits, so a killed
    run resumes its studies; with ``workers`` > 1, more processes share each study (and workers
    on other machines may join it: ``alphaforge tune-worker``)."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress goes through context.log
    peaks: dict[str, float] = {}
    with measure_peak(peaks, "peak_rss_mib_dataset"):
        ds = assemble(feature_matrix, labels, config.target)
    try:
        plan = plan_training(
            ds, market_prices, config.spec(), **keyword_settings(config, plan_training)
        )
    except ImpossibleCV as err:  # before any tuning: nothing to resume, nothing half-written
        raise Failure(description=str(err), allow_retries=False) from err
    tune_end, test_start, splits = plan.tune_end, plan.test_start, plan.splits
    result = BaseModels(
        {}, {}, tune_end, config.target, ds.feature_names, config.seed, config.n_jobs, test_start
    )
    result.horizon = config.horizon
    result.engine = config.engine  # out-of-fold predictions fit where these models did
    pictures: dict[str, MetadataValue] = {}
    fit_seconds = refit_seconds = 0.0
    # each study's figures render on a thread of their own while the next model fits: the
    # fits leave a core idle now and then (dataset construction is single-threaded)
    figures = ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="study-figures", initializer=yield_to_fits
    )
    drawn: dict[str, Future] = {}
    tuned_at: list[float] = []
    with (
        tracker.asset_run(context) as run,
        figures,
        compute.engine(config.engine, context.log.info) as engine,
    ):
        run.log_params(
            {
                "tune_end": tune_end,
                "test_start": test_start,
                "n_rows": len(ds.frame),
                "n_features": len(ds.feature_names),
                "n_folds": len(splits),
                **config.model_dump(exclude={"models"}),
            }
        )
        for i, name in enumerate(config.models, start=1):
            context.log.info(f"model {i}/{len(config.models)}: tuning {name}")
            with run.nested(name) as model_run:
                parent = model_run.run_id
                logger = tracker.trial_logger(
                    context.log.info,
                    name,
                    config.n_trials,
                    parent,
                    every_s=PROGRESS_EVERY_S,
                    score_name=config.objective,
                )

                def tuned(study, name=name, model_run=model_run) -> None:
                    tuned_at.append(time.perf_counter())
                    drawn[name] = figures.submit(_study_figures, study, name, model_run)

                try:
                    with measure_peak(peaks, f"peak_rss_mib_{name}"):
                        params, score, fitted, study = tune_and_fit(
                            ds,
                            name,
                            splits=splits,
                            fit_rows=plan.fit_rows,
                            n_trials=config.n_trials,
                            seed=config.seed,
                            n_jobs=config.n_jobs,
                            storage=tuning.storage_url,
                            callbacks=[logger],
                            shared=tuning.shared,
                            heartbeat_s=tuning.heartbeat_s,
                            workers=tuning.workers(config.workers - 1, parent, config.n_trials),
                            # the workers started here share this machine's cores
                            trial_jobs=max(1, config.n_jobs // config.workers),
                            on_tuned=tuned,
                            scorer=plan.scorer,
                            engine=engine,
                        )
                    refit_seconds += time.perf_counter() - tuned_at[-1]
                finally:
                    logger.close()
                model_run.log_params(params)
                model_run.log_metric("cv_rank_ic", score)
                model_run.set_tags({"optuna.study": study.study_name})
            fit_seconds += sum(t.user_attrs.get("fit_seconds", 0.0) for t in study.trials)
            result.params[name], result.cv_scores[name], result.fitted[name] = params, score, fitted
            result.studies[name] = study.study_name
            # trials that were scored (pruned ones on some folds); a trial killed with its run
            # and failed on resume never scored, and its replacement is counted instead
            result.n_trials[name] = len(
                study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            )
        for name, future in drawn.items():
            for kind, png in future.result().items():
                pictures[f"{kind}_{name}"] = image(png, f"{name} {kind}")
    scores = pl.DataFrame(
        {
            "model": list(result.cv_scores),
            "cv_rank_ic": list(result.cv_scores.values()),
            "study": list(result.studies.values()),
        }
    )
    return Output(
        result,
        metadata={
            "cv_rank_ic": table(scores),
            "tune_end": str(tune_end),
            "test_start": str(test_start),
            "cv_scheme": config.cv_scheme,
            "trial_fit_seconds": round(fit_seconds, 2),
            "refit_seconds": round(refit_seconds, 2),
            "step_seconds": round(time.perf_counter() - started, 2),
            "engine": config.engine,
            "matrix_mib": round(ds.matrix.nbytes / 2**20, 1),
            **peaks,
            **pictures,
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


LEAKAGE = "check_oof_predictions_no_leakage"


@asset(
    group_name="training",
    kinds={"polars", "mlflow"},
    io_manager_key="lake",
    check_specs=[
        AssetCheckSpec(
            LEAKAGE,
            asset="oof_predictions",
            blocking=True,
            description="No training label overlaps the fold it predicts, no feature is the "
            "label, no out-of-sample Rank IC too good to be true.",
        )
    ],
)
def oof_predictions(
    context: AssetExecutionContext,
    config: OOFConfig,
    feature_matrix: pl.LazyFrame,
    labels: pl.DataFrame,
    base_models: BaseModels,
    tracker: ResourceParam[Tracker],
    compute: ResourceParam[Compute],
):
    """Out-of-fold predictions of every base model on walk-forward blocks after the tuning window:
    ``[symbol, date, label, label_end, target, fold, train_end, train_label_end, pred_<model>...]``,
    with the blocking leakage check."""
    started, peaks = time.perf_counter(), {}
    with measure_peak(peaks, "peak_rss_mib_predictions"):
        ds = assemble(feature_matrix, labels, base_models.target)
        with compute.engine(base_models.engine, context.log.info) as engine:
            oof = oof_frame(
                ds,
                base_models,
                config.outer_splits,
                engine=engine,
                on_fold=lambda model, fold: context.log.info(
                    f"{model}: fold {fold + 1}/{config.outer_splits} predicted"
                ),
            )
        del ds  # the matrix is not needed past the fits
        gc.collect()
    pred_cols = [f"pred_{m}" for m in base_models.params]
    d, y = oof["date"].to_numpy(), oof["label"].to_numpy()
    ic = pl.concat(
        daily_ic(d, oof[c].to_numpy(), y).with_columns(model=pl.lit(c[5:])) for c in pred_cols
    )
    ls = pl.concat(
        long_short(d, oof[c].to_numpy(), y).with_columns(model=pl.lit(c[5:])) for c in pred_cols
    )
    summary = ic_summaries(oof, pred_cols)
    horizon = int(np.median((oof["label_end"] - oof["date"]).dt.total_days().to_numpy()) * 5 / 7)
    figures = {
        "oof_rank_ic": ic_over_time(ic),
        "oof_long_short": cumulative_long_short(ls, max(horizon, 1)),
    }
    with tracker.asset_run(context) as run:
        for row in summary.to_dicts():
            run.log_metrics(
                {
                    f"{row['model']}_{k}": v
                    for k, v in row.items()
                    if k != "model" and np.isfinite(v)
                }
            )
        for name, fig in figures.items():
            run.log_figure(fig, f"{name}.png")
    yield Output(
        oof,
        metadata={
            **frame_metadata(oof),
            "oos_metrics": table(summary),
            "rank_ic_over_time": image(png_bytes(figures["oof_rank_ic"]), "Rank IC over time"),
            "long_short": image(png_bytes(figures["oof_long_short"]), "Cumulative long-short"),
            "first_oof_date": str(oof["date"].min()),
            "fit_seconds": round(time.perf_counter() - started, 2),
            **peaks,
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )
    feature_ic = feature_label_ic(feature_matrix, labels, base_models.feature_names)
    leaks = [*split_leaks(oof), *feature_leaks(feature_ic), *oos_leaks(summary)]
    for leak in leaks:
        context.log.error(f"leak ({leak.kind}) in {leak.where}: {leak.detail}")
    yield AssetCheckResult(
        check_name=LEAKAGE,
        passed=not leaks,
        description="\n".join(f"{x.kind} in {x.where}: {x.detail}" for x in leaks)
        or "no leak found",
        metadata={
            "leaks": MetadataValue.json([x.__dict__ for x in leaks]),
            "max_abs_feature_rank_ic": float(
                feature_ic["mean_rank_ic"].fill_nan(None).abs().max() or 0.0
            ),
            "max_oos_rank_ic": float(summary["rank_ic"].max()),
            "folds_checked": int(oof["fold"].n_unique()),
        },
    )


GATE = "check_ensemble_model_champion_gate"
CHAMPION_AGE = "check_ensemble_model_champion_age"


@asset(
    group_name="training",
    kinds={"sklearn", "mlflow"},
    io_manager_key="lake",
    check_specs=[
        AssetCheckSpec(
            GATE,
            asset="ensemble_model",
            description="Promote the new version to @champion only if its Rank IC on the final "
            "test period is significantly above zero (t-statistic and floor) and beats the "
            "champion's on the same period by the configured margin.",
        ),
        AssetCheckSpec(
            CHAMPION_AGE,
            asset="ensemble_model",
            description="The model in production (@champion) was trained within "
            "max_champion_age_days: warns when no newer challenger has beaten it for that long "
            "(passes with nothing in production: nothing has aged).",
        ),
    ],
)
def ensemble_model(
    context: AssetExecutionContext,
    config: EnsembleConfig,
    oof_predictions: pl.DataFrame,
    base_models: BaseModels,
    feature_matrix: pl.DataFrame,
    labels: pl.DataFrame,
    tracker: ResourceParam[Tracker],
):
    """The meta-learner fitted only on out-of-fold predictions dated before the final test
    period, over base models fitted before it; scored on that period, registered in MLflow as
    ``alphaforge-ensemble`` with alias ``challenger``, and promoted to ``champion`` by the gate."""
    base, test_start = base_models, base_models.test_start
    fit = final_ensemble(oof_predictions, base, feature_matrix, labels, config.meta_learner)
    registry = tracker.registry()
    with tracker.asset_run(context) as run:
        run.log_params({f"meta_weight_{k}": round(v, 6) for k, v in fit.weights.items()})
        run.log_metrics({f"test_{k}": v for k, v in fit.test_metrics.items() if np.isfinite(v)})
        version = registry.register(
            fit.ensemble,
            name=REGISTERED_MODEL,
            artifact="ensemble",
            example=fit.example,
            output=fit.ensemble.predict(fit.example.to_numpy()),
            pip_requirements=PIP_REQUIREMENTS,
        )
        registry.describe(REGISTERED_MODEL, MODEL_DESCRIPTION)
        symbols = feature_matrix["symbol"].n_unique()
        described = version_description(fit, base, config.meta_learner, symbols, context.run_id)
        registry.describe(REGISTERED_MODEL, described, version=version)
        registry.tag_version(REGISTERED_MODEL, version, _version_tags(fit, base, context.run_id))
        decision = _champion_gate(
            registry,
            version,
            fit.test_rank_ic,
            fit.test_metrics["rank_ic_t"],
            config,
            feature_matrix,
            fit.ds,
            test_start,
        )
        run.set_tags({f"gate.{k}": str(v) for k, v in decision.items()})
        champion = registry.version(REGISTERED_MODEL, "champion")
        tracker.log_headline(
            context,
            {
                "ensemble_test_rank_ic": fit.test_metrics["rank_ic"],
                "ensemble_test_rank_ic_t": fit.test_metrics["rank_ic_t"],
                "ensemble_promoted": float(decision["decision"] == "promoted"),
            },
        )
    context.log.info(
        f"registered {REGISTERED_MODEL} version {version} as @challenger; gate: "
        f"{decision['decision']} ({decision['reason']})"
    )
    yield Output(
        fit.ensemble,
        metadata={
            "meta_weights": MetadataValue.json(fit.weights),
            "registered_model": f"{REGISTERED_MODEL}@challenger (version {version})",
            "promotion": f"{decision['decision']}: {decision['reason']}",
            "model_version": MetadataValue.url(tracker.model_url(REGISTERED_MODEL, version)),
            "oos_metrics_same_dates": table(fit.same_dates),
            "test_period": f"{test_start} to {fit.last_date}",
            "test_metrics": table(pl.DataFrame([{"model": "ensemble", **fit.test_metrics}])),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )
    yield from _gate_checks(decision, champion, config.max_champion_age_days)


def _version_tags(fit, base: BaseModels, run_id: str) -> dict[str, str]:
    return {
        "dagster_run_id": run_id,
        "test_start": str(base.test_start),
        "train_label_end": fit.train_label_end,
        "test_rank_ic": f"{fit.test_metrics['rank_ic']:.6f}",
        "test_rank_ic_t": f"{fit.test_metrics['rank_ic_t']:.4f}",
        "base_models": ",".join(base.params),
    }


def _gate_checks(decision: dict, champion, max_age_days: float):
    """The gate's check (a warning unless promoted or already champion) and the champion's
    age check."""
    yield AssetCheckResult(
        check_name=GATE,
        passed=decision["decision"] in ("promoted", "already champion"),
        severity=AssetCheckSeverity.WARN,
        description=f"{decision['decision']}: {decision['reason']}",
        metadata={
            k: MetadataValue.float(round(v, 4))
            if isinstance(v, float)
            else MetadataValue.text(str(v))
            for k, v in decision.items()
        },
    )
    if champion is None:
        yield AssetCheckResult(
            check_name=CHAMPION_AGE,
            passed=True,
            description="no @champion: no version has passed the gate, nothing in production "
            "has aged",
        )
        return
    age_days = (time.time() * 1000 - champion.creation_timestamp) / 86_400_000
    yield AssetCheckResult(
        check_name=CHAMPION_AGE,
        passed=age_days <= max_age_days,
        severity=AssetCheckSeverity.WARN,
        description=f"@champion is version {champion.version}, trained {age_days:.1f} days ago "
        f"(limit {max_age_days})",
        metadata={
            "champion_version": MetadataValue.text(str(champion.version)),
            "age_days": MetadataValue.float(round(age_days, 2)),
        },
    )


def _champion_gate(
    registry: ModelRegistry,
    version: str,
    challenger_ic: float,
    t: float,
    config,
    features,
    ds,
    test_start,
) -> dict:
    """``models.learning.promotion.promotion_decision`` on the registry's champion (loaded as the scorer
    loads it, and only when the comparison needs it); the alias follows the decision and the
    evidence is tagged on the challenger version."""

    def score_champion() -> tuple[float | None, str | None]:
        try:  # the champion as the scorer loads it: registry, digest, trusted types
            model = registry.load(REGISTERED_MODEL, "champion")
        except ModelRefused as err:
            return None, str(err)
        return champion_test_rank_ic(model, features, ds, test_start), None

    evidence = promotion_decision(
        version,
        challenger_ic,
        t,
        registry.version(REGISTERED_MODEL, "champion"),
        test_start,
        min_test_rank_ic=config.min_test_rank_ic,
        min_test_rank_ic_t=config.min_test_rank_ic_t,
        margin=config.promotion_margin,
        score_champion=score_champion,
    )
    if evidence["decision"] == "promoted":
        registry.set_alias(REGISTERED_MODEL, "champion", version)
    registry.tag_version(
        REGISTERED_MODEL,
        version,
        {
            "promotion": evidence["decision"],
            "promotion_reason": evidence["reason"],
            "promotion_evidence": json.dumps(evidence, default=str),
        },
    )
    return evidence
