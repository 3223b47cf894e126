"""``models.engine: dask`` on a two-worker LocalCluster of this machine: the fits of
lightgbm.dask / xgboost.dask against the local engine's, and base_models + oof_predictions
materialized through Dagster on a scheduler given by reference, logged to MLflow as the local
engine logs."""

import shutil

import mlflow
import numpy as np
import polars as pl
import pytest
from conftest import random_walk_panel, temp_pipeline
from dagster import AssetKey, DagsterInstance

from models.features import build_feature_matrix
from models.features.alternative import empty_alt
from models.learning.dataset import assemble
from models.learning.folds import fit_final, fold_fits
from models.learning.labels import forward_returns
from models.learning.training import inner_splits, tuning_window
from pipelines.resources import DaskResource

pytestmark = [pytest.mark.integration]

PARAMS = {
    "lightgbm": {
        "n_estimators": 20,
        "learning_rate": 0.1,
        "num_leaves": 7,
        "min_child_samples": 50,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
    },
    "xgboost": {
        "n_estimators": 20,
        "learning_rate": 0.1,
        "max_depth": 3,
        "min_child_weight": 5.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
    },
}


@pytest.fixture(scope="module")
def engine():
    """The resource's own local cluster: two one-thread worker processes on loopback, the
    dashboard on a free loopback port."""
    with DaskResource(n_workers=2, dashboard="127.0.0.1:0").engine("dask") as engine:
        yield engine


@pytest.fixture(scope="module")
def problem():
    panel = random_walk_panel(n_symbols=8, n_days=500, seed=4)
    features = build_feature_matrix(panel.lazy(), empty_alt().lazy(), feature_set="minimal")
    ds = assemble(features.collect(), forward_returns(panel.lazy(), 5).collect())
    _, mask = tuning_window(ds, 0.6)
    return ds, inner_splits(ds, mask, 2)


def test_the_local_cluster_is_on_loopback(engine):
    workers = engine.client.scheduler_info(n_workers=-1)["workers"]
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    assert engine.client.scheduler.address.startswith("tcp://127.0.0.1:")
    assert engine.client.dashboard_link.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("model", ["lightgbm", "xgboost"])
def test_dask_fits_equal_the_local_engine_on_one_worker_and_follow_it_on_two(
    engine, problem, model
):
    ds, splits = problem
    X, y, params = ds.X, ds.y, PARAMS[model]
    local = fold_fits(model, X, y, splits, seed=2, n_jobs=1)
    expected = [local.predict(params, f) for f in range(len(splits))]
    # every row on one worker: the same algorithm on the same bins, bit for bit
    engine.partitions = 1
    one = fold_fits(model, X, y, splits, seed=2, n_jobs=1, engine=engine)
    for fold, want in enumerate(expected):
        np.testing.assert_array_equal(one.predict(params, fold), want)
    one.close()
    rows = np.arange(len(y) - 800)
    final = fit_final(model, params, X, y, rows, seed=2, n_jobs=1, engine=engine)
    alone = fit_final(model, params, X, y, rows, seed=2, n_jobs=1)
    assert type(final) is type(alone)  # the local scikit-learn estimator, ready to register
    np.testing.assert_array_equal(final.predict(X[-300:]), alone.predict(X[-300:]))
    # rows split over the two workers: the distributed bin edges (LightGBM: each feature's
    # from one worker's rows; XGBoost: merged quantile sketches) are not the serial ones, so
    # the fits are close to the local engine's, not equal
    engine.partitions = None
    two = fold_fits(model, X, y, splits, seed=2, n_jobs=1, engine=engine)
    held = engine.client.run(lambda dask_worker: len(dask_worker.data))
    for fold, want in enumerate(expected):
        got = two.predict(params, fold)
        assert got.shape == want.shape and np.isfinite(got).all()
        assert np.corrcoef(got, want)[0, 1] > 0.8
    assert all(n > 0 for n in held.values()) and len(held) == 2  # both workers hold rows
    two.close()


def test_base_models_on_dask_train_predict_and_log_like_the_local_engine(
    engine, materialized, tmp_path, monkeypatch
):
    """The Dagster steps on a scheduler named by reference (``${env:...}``), on the fast
    profile's feature matrix; the home's MLflow store is a copy of the materialized one."""
    home = tmp_path / "home"
    (home / "lake").mkdir(parents=True)
    for name in ("feature_matrix", "labels", "market_prices"):  # the costs base_models reads
        shutil.copy(materialized.home / "lake" / f"{name}.parquet", home / "lake")
    shutil.copy(materialized.home / "mlflow.db", home / "mlflow.db")  # migrated once already
    monkeypatch.setenv("TEST_DASK_SCHEDULER", engine.client.scheduler.address)
    env = {"ALPHAFORGE_HOME": str(home), "ALPHAFORGE_PROFILE": "fast"}
    pipeline = temp_pipeline(
        env,
        overrides={
            "models.engine": "dask",
            "models.dask_scheduler": "${env:TEST_DASK_SCHEDULER}",
            "models.n_trials": "1",
            "cv.inner_splits": "2",
            "cv.outer_splits": "2",
            "tracking.experiment": "dask-engine",
        },
        instance=DagsterInstance.ephemeral(),
        prepare=False,  # the copied store stays as it is
    )
    settings, resolved = pipeline.settings, pipeline.resolved
    assert "${env:TEST_DASK_SCHEDULER}" in resolved.to_yaml()  # the address itself is not
    job = pipeline.job("all_assets_job")
    result = job.execute_in_process(
        run_config=resolved.run_config({"base_models", "oof_predictions"}),
        instance=pipeline.instance,
        asset_selection=[AssetKey("base_models"), AssetKey("oof_predictions")],
    )
    assert result.success
    meta = result.asset_materializations_for_node("base_models")[0].metadata
    assert meta["engine"].value == "dask" and meta["peak_rss_mib"].value > 0
    base = result.output_for_node("base_models")
    assert base.engine == "dask" and set(base.fitted) == {"lightgbm", "xgboost"}
    oof = result.output_for_node("oof_predictions")
    assert oof["fold"].n_unique() == 2
    assert oof.select(pl.col("pred_lightgbm", "pred_xgboost").is_finite().all()).row(0) == (
        True,
        True,
    )
    # MLflow: as the local engine logs, a run per model with its CV score and a run per trial
    client = mlflow.MlflowClient(settings.mlflow_uri)
    experiment = client.get_experiment_by_name("dask-engine")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    step = next(r for r in runs if r.data.params.get("engine") == "dask")  # base_models' run
    for model in ("lightgbm", "xgboost"):
        assert by_name[model].data.tags["mlflow.parentRunId"] == step.info.run_id
        assert np.isfinite(by_name[model].data.metrics["cv_rank_ic"])
        trial = by_name[f"{model}-trial-0"]
        assert trial.data.tags["mlflow.parentRunId"] == by_name[model].info.run_id
    oof_run = next(r for r in runs if "lightgbm_rank_ic" in r.data.metrics)
    assert np.isfinite(oof_run.data.metrics["xgboost_rank_ic"])
