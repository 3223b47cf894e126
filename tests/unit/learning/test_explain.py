"""TreeSHAP additivity for every tree model, reasons per row, the distilled surrogate."""

import numpy as np
import polars as pl
import pytest
from lightgbm import LGBMRegressor
from numpy.testing import assert_allclose
from sklearn.ensemble import RandomForestRegressor
from xgboost import XGBRegressor

from models.learning.explain import (
    distil,
    ensemble_shap,
    gradient_shap,
    mean_abs_shap,
    reasons,
    tree_contributions,
    tree_shap,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6))
    X[rng.random(X.shape) < 0.03] = np.nan  # features have gaps; the trees route them
    y = 0.01 * np.nan_to_num(X[:, 0]) - 0.005 * np.nan_to_num(X[:, 1] * X[:, 2])
    return X, y + 0.002 * rng.normal(size=len(y))


MODELS = {
    "lightgbm": lambda: LGBMRegressor(n_estimators=60, num_leaves=15, verbose=-1, random_state=0),
    "xgboost": lambda: XGBRegressor(n_estimators=60, max_depth=4, random_state=0),
    "random_forest": lambda: RandomForestRegressor(
        n_estimators=20, max_depth=6, min_samples_leaf=20, random_state=0
    ),
}


@pytest.mark.parametrize("name", MODELS)
def test_shap_values_sum_to_the_prediction(data, name):
    X, y = data
    model = MODELS[name]().fit(np.nan_to_num(X) if name == "random_forest" else X, y)
    X = np.nan_to_num(X) if name == "random_forest" else X
    values, base = tree_contributions(model, X)
    assert values.shape == X.shape and base.shape == (len(X),)
    assert_allclose(values.sum(axis=1) + base, model.predict(X), atol=1e-6, rtol=0)


def test_importance_ranks_the_features_that_drive_the_target(data):
    X, y = data
    model = MODELS["lightgbm"]().fit(X, y)
    importance = mean_abs_shap(tree_shap(model, X, [f"f{i}" for i in range(6)]))
    assert importance["feature"][0] == "f0"
    assert set(importance["feature"][:3]) == {"f0", "f1", "f2"}


def test_reasons_name_the_largest_contributions_per_row(data):
    X, y = data
    model = MODELS["lightgbm"]().fit(X, y)
    explanation = tree_shap(model, X[:50], [f"f{i}" for i in range(6)])
    keys = pl.DataFrame({"symbol": [f"S{i}" for i in range(50)]})
    out = reasons(explanation, keys, top=2)
    assert_allclose(out["prediction"], model.predict(X[:50]), atol=1e-9)
    row = np.asarray(explanation.values)[7]
    assert out["feature_1"][7] == f"f{np.argmax(np.abs(row))}"
    assert abs(out["shap_1"][7]) >= abs(out["shap_2"][7])


def test_distilled_tree_reports_its_fidelity(data):
    X, y = data
    model = MODELS["lightgbm"]().fit(X, y)
    pred = model.predict(X)
    _, fidelity, rules = distil(np.nan_to_num(X), pred, [f"f{i}" for i in range(6)])
    assert 0.3 < fidelity <= 1.0
    assert "f0" in rules
    _, shallow, _ = distil(np.nan_to_num(X), pred, [f"f{i}" for i in range(6)], max_depth=1)
    assert shallow < fidelity


def test_ensemble_shap_is_the_meta_weighted_sum_and_stays_additive(data):
    from sklearn.linear_model import LinearRegression

    from models.learning.stacking import StackedEnsemble

    X, y = data
    bases = {name: MODELS[name]().fit(X, y) for name in ("lightgbm", "xgboost")}
    # each base model reads its own columns of the ensemble's input
    columns = {"lightgbm": [0, 1, 2, 3, 4, 5], "xgboost": [0, 1, 2]}
    bases["xgboost"] = MODELS["xgboost"]().fit(X[:, :3], y)
    oof = np.column_stack([bases["lightgbm"].predict(X), bases["xgboost"].predict(X[:, :3])])
    ensemble = StackedEnsemble(bases, LinearRegression(positive=True), columns).fit(oof, y)
    names = [f"f{i}" for i in range(6)]
    out = ensemble_shap(ensemble, X[:200], names)
    assert_allclose(out.values.sum(axis=1) + out.base_values, ensemble.predict(X[:200]), atol=1e-6)
    w = ensemble.final_estimator_.coef_
    v_lgb, _ = tree_contributions(bases["lightgbm"], X[:200])
    v_xgb, _ = tree_contributions(bases["xgboost"], X[:200, :3])
    assert_allclose(out.values[:, 4], w[0] * v_lgb[:, 4])  # read by LightGBM only
    assert_allclose(out.values[:, 0], w[0] * v_lgb[:, 0] + w[1] * v_xgb[:, 0], rtol=1e-6)
    nonlinear = StackedEnsemble(bases, MODELS["lightgbm"](), columns).fit(oof, y)
    with pytest.raises(ValueError, match="linear meta-learner"):
        ensemble_shap(nonlinear, X[:10], names)


def test_gradient_shap_of_a_net_ranks_the_driving_feature_and_adds_up_on_average():
    from models.learning.nets import TorchRegressor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 6))
    y = 2 * X[:, 0] + 0.5 * X[:, 1] + 0.1 * rng.normal(size=2000)
    net = TorchRegressor(arch="mlp", hidden=16, layers=1, epochs=40, random_state=0).fit(X, y)
    explanation = gradient_shap(net, X[:100], [f"f{i}" for i in range(6)])
    assert explanation.values.shape == (100, 6)
    importance = mean_abs_shap(explanation)
    assert importance["feature"][0] == "f0"
    # expected gradients are additive in expectation: the mean gap is small next to the spread
    gap = explanation.values.sum(axis=1) + explanation.base_values - net.predict(X[:100])
    assert abs(gap.mean()) < 0.2 * net.predict(X[:100]).std()
