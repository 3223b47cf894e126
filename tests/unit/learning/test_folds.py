"""How the training data are held and fitted: the float32 feature matrix, row views, and the
per-fold fitters that keep binned data across trials (models/learning/dataset.py, models/learning/folds.py)."""

import numpy as np
import polars as pl
import pytest
from conftest import random_walk_panel
from lightgbm import LGBMRegressor
from xgboost import XGBRegressor

from models.features import build_feature_matrix
from models.features.alternative import empty_alt
from models.learning.cv import purged_walk_forward
from models.learning.dataset import assemble, compact_floats, row_view, window_inputs
from models.learning.estimators import get_spec
from models.learning.folds import (
    EstimatorFolds,
    LightGBMFolds,
    XGBoostFolds,
    fit_final,
    fold_fits,
    lightgbm_params,
    xgboost_params,
)
from models.learning.labels import forward_returns

LGB = {
    "n_estimators": 25,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 60,
    "subsample": 0.8,
    "colsample_bytree": 0.7,
    "reg_lambda": 1.0,
}
XGB = {
    "n_estimators": 25,
    "learning_rate": 0.1,
    "max_depth": 4,
    "min_child_weight": 5.0,
    "subsample": 0.8,
    "colsample_bytree": 0.7,
    "reg_lambda": 1.0,
}


@pytest.fixture(scope="module")
def data():
    panel = random_walk_panel(n_symbols=6, n_days=700, seed=5)
    features = build_feature_matrix(panel.lazy(), empty_alt().lazy(), feature_set="minimal")
    features, kept = compact_floats(features.collect())
    assert not kept
    ds = assemble(features, forward_returns(panel.lazy(), 5).collect())
    splits = purged_walk_forward(ds.dates, ds.label_end, n_splits=3, train_size=300, purge=5)
    return features, ds, splits


def test_compact_floats_keeps_float64_only_where_float32_cannot_hold_the_values():
    frame = pl.DataFrame(
        {
            "symbol": ["A", "B", "C"],
            "ret": [0.01, None, -0.02],
            "huge": [1e39, 1.0, 2.0],
            "tiny": [1e-40, 0.0, 1.0],
            "inf": [float("inf"), 1.0, 2.0],  # non-finite values do not decide
        }
    )
    out, kept = compact_floats(frame)
    assert out.schema["ret"] == pl.Float32 and out.schema["inf"] == pl.Float32
    assert out.schema["huge"] == pl.Float64 and out.schema["tiny"] == pl.Float64
    assert set(kept) == {"huge", "tiny"} and "range" in kept["huge"] and "normal" in kept["tiny"]
    assert out["ret"].null_count() == 1  # nulls stay nulls


def test_assemble_gathers_the_matrix_in_date_symbol_order(data):
    features, ds, _ = data
    assert ds.matrix.dtype == np.float32 and ds.matrix.flags["C_CONTIGUOUS"]
    # the rows the old join-then-sort produced, value for value
    joined = features.join(ds.frame.select("symbol", "date"), on=["symbol", "date"]).sort(
        "date", "symbol"
    )
    np.testing.assert_array_equal(
        ds.matrix, joined.select(ds.feature_names).to_numpy(), strict=True
    )
    assert ds.frame.columns == ["symbol", "date", "label", "label_end", "target"]
    # windows from the matrix equal the polars windows of the joined frame
    np.testing.assert_array_equal(
        ds.inputs(ds.feature_names[:3], 4), window_inputs(joined, ds.feature_names[:3], 4)
    )


def test_row_view_is_a_view_exactly_when_the_rows_are_contiguous():
    X = np.arange(40.0).reshape(10, 4)
    assert np.shares_memory(row_view(X, np.arange(2, 7)), X)
    gapped = row_view(X, np.array([1, 2, 4]))
    assert not np.shares_memory(gapped, X)
    np.testing.assert_array_equal(gapped, X[[1, 2, 4]])
    np.testing.assert_array_equal(row_view(X, np.array([3, 2, 1])), X[[3, 2, 1]])


def test_lightgbm_folds_bin_each_fold_once_and_equal_the_estimator(data):
    _, ds, splits = data
    X, y = ds.X, ds.y
    fits = LightGBMFolds("lightgbm", X, y, splits, seed=3, n_jobs=1, keep=10.0)  # keep all
    assert isinstance(fold_fits("lightgbm", X, y, splits, seed=3, n_jobs=1), LightGBMFolds)
    binned = {}
    # three trials, another min_child_samples each, on the same binned Datasets
    for params in (LGB, {**LGB, "min_child_samples": 200}, {**LGB, "min_child_samples": 20}):
        for fold, (train, test) in enumerate(splits):
            model = get_spec("lightgbm").build(params, 3, 1)
            expected = model.fit(X[train], y[train]).predict(X[test])
            np.testing.assert_array_equal(fits.predict(params, fold), expected)
            assert binned.setdefault(fold, fits._folds[fold]) is fits._folds[fold]
    assert fits._folds[0].data is None  # the raw rows were not kept
    fits.release(1)
    assert set(fits._folds) == {0, 2}
    fits.close()
    assert not fits._folds


def test_xgboost_folds_equal_the_estimator_on_every_fold_and_trial(data):
    _, ds, splits = data
    X, y = ds.X, ds.y
    fits = XGBoostFolds("xgboost", X, y, splits, seed=3, n_jobs=1, keep=10.0)
    assert isinstance(fold_fits("xgboost", X, y, splits, seed=3, n_jobs=1), XGBoostFolds)
    for params in (XGB, {**XGB, "max_depth": 2}):
        for fold, (train, test) in enumerate(splits):
            expected = (
                get_spec("xgboost").build(params, 3, 1).fit(X[train], y[train]).predict(X[test])
            )
            np.testing.assert_array_equal(fits.predict(params, fold), expected)
    assert len(fits._folds) == 3  # one quantile matrix per fold, built once for both trials
    fits.close()


def test_folds_are_kept_across_trials_only_within_the_row_budget(data):
    _, ds, splits = data
    sizes = [len(tr) for tr, _ in splits]
    keep = (sizes[0] + sizes[1]) / len(ds.y)  # room for folds 0 and 1, not 2
    fits = XGBoostFolds("xgboost", ds.X, ds.y, splits, seed=3, n_jobs=1, keep=keep)
    first = [fits.predict(XGB, f) for f in range(3)]
    assert set(fits._folds) == {0, 1}
    again = [fits.predict(XGB, f) for f in range(3)]  # fold 2 binned again: the same fit
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    fits.close()


def test_native_parameters_are_the_wrappers_own(data):
    _, ds, splits = data
    native, rounds = lightgbm_params(LGBMRegressor(**LGB, n_jobs=2, random_state=1))
    assert rounds == 25 and native["num_threads"] == 2 and native["min_child_samples"] == 60
    assert native["feature_pre_filter"] is False and "n_estimators" not in native
    native, rounds = xgboost_params(XGBRegressor(**XGB, n_jobs=2))
    assert rounds == 25 and native["max_depth"] == 4


def test_other_models_and_final_fits_use_their_estimators(data):
    _, ds, splits = data
    X, y = ds.X, ds.y
    fits = fold_fits("ridge", X, y, splits, seed=0, n_jobs=1)
    assert isinstance(fits, EstimatorFolds) and fits.dtype == np.float64
    train, test = splits[1]
    model = get_spec("ridge").build({"alpha": 10.0}, 0, 1)
    expected = model.fit(X[train].astype(np.float64), y[train]).predict(X[test].astype(float))
    np.testing.assert_allclose(fits.predict({"alpha": 10.0}, 1), expected, rtol=1e-12)
    rows = np.arange(0, 2000)
    final = fit_final("lightgbm", LGB, X, y, rows, seed=3, n_jobs=1)
    assert isinstance(final, LGBMRegressor)
    np.testing.assert_array_equal(
        final.predict(X[-100:]),
        LGBMRegressor(**LGB, subsample_freq=1, random_state=3, n_jobs=1, verbose=-1)
        .fit(X[rows], y[rows])
        .predict(X[-100:]),
    )


def test_float32_features_are_the_float64_ones_rounded_and_sorted_alike():
    panel = random_walk_panel(n_symbols=4, n_days=300, seed=7)
    wide = build_feature_matrix(panel.lazy(), empty_alt().lazy()).collect()
    narrow = build_feature_matrix(panel.lazy(), empty_alt().lazy(), dtype="float32").collect()
    names = [c for c in wide.columns if c not in ("symbol", "date")]
    assert all(narrow.schema[c] == pl.Float32 for c in names)
    assert narrow.select("symbol", "date").equals(wide.select("symbol", "date"))
    np.testing.assert_array_equal(
        narrow.select(names).to_numpy(), wide.select(names).to_numpy().astype(np.float32)
    )
