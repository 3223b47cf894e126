"""Every model of the zoo on a small real-shaped panel: the scikit-learn contract, declared
search spaces, finite predictions, reproducibility under a seed, and the ensemble's safe
(skops) round trip with nets and trees inside."""

import numpy as np
import optuna
import pytest
import skops.io
from conftest import random_walk_panel
from sklearn.base import clone
from sklearn.linear_model import LinearRegression

from models.features import build_feature_matrix
from models.features.alternative import empty_alt
from models.features.statistical import statistical_features
from models.learning.dataset import assemble
from models.learning.estimators import MODEL_SPECS, get_spec
from models.learning.labels import forward_returns
from models.learning.stacking import StackedEnsemble
from models.learning.training import BaseModels, model_inputs
from pipelines.registry import TRUSTED_TYPES, trusted_types

TREES = {"lightgbm", "xgboost", "random_forest", "hybrid"}


@pytest.fixture(scope="module")
def dataset(request):
    panel = random_walk_panel(n_symbols=8, n_days=900, seed=3)
    alt = empty_alt()
    features = build_feature_matrix(panel.lazy(), alt.lazy(), feature_set="minimal").collect()
    stats = statistical_features(panel, refit_every=300, train_window=400)
    features = features.join(stats, on=["symbol", "date"], how="left")
    labels = forward_returns(panel.lazy(), 5).collect()
    return assemble(features, labels)


def _params(name: str) -> dict:
    """The search space's first TPE suggestion (seeded), nets trained for one epoch."""
    trial = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0)).ask()
    params = get_spec(name).search_space(trial)
    return {**params, "epochs": 1} if "epochs" in params else params


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_model_fits_predicts_and_repeats_under_a_seed(dataset, name):
    spec = get_spec(name)
    X, y = model_inputs(dataset, name), dataset.y
    assert X.shape[1] == len(spec.columns(dataset.feature_names)) * spec.window
    train, test = np.arange(0, 5000), np.arange(5000, len(y))
    params = _params(name)
    fitted = spec.build(params, 7, 1).fit(X[train], y[train])
    first = fitted.predict(X[test])
    again = clone(spec.build(params, 7, 1)).fit(X[train], y[train]).predict(X[test])
    assert first.shape == (len(test),) and np.isfinite(first).all()
    # trees: identical to 1e-9; nets on the CPU with the same seed and threads: identical too
    np.testing.assert_allclose(first, again, rtol=0, atol=1e-9)
    # every type it is made of is one the scorer's loader trusts (pipelines/registry.py)
    assert set(skops.io.get_untrusted_types(data=skops.io.dumps(fitted))) <= TRUSTED_TYPES
    if spec.tunable:
        assert params, f"{name} declares no search space"
    if name in TREES or name in {"ridge", "elastic_net"}:
        assert np.std(first) > 0  # it learnt something that varies across rows


def test_statistical_models_say_what_they_need(dataset):
    without = [c for c in dataset.feature_names if not c.startswith("stat_")]
    with pytest.raises(ValueError, match="features.statistical: true"):
        get_spec("hybrid").columns(without)
    assert "stat_arima" not in get_spec("lightgbm").columns(dataset.feature_names)
    assert "stat_arima" in get_spec("hybrid").columns(dataset.feature_names)


def test_ensemble_of_trees_and_nets_round_trips_through_skops(dataset):
    names = ["lightgbm", "lstm", "ridge"]
    base = BaseModels({n: _params(n) for n in names}, {}, None, "rank", dataset.feature_names, 1, 1)
    fitted = {n: e.fit(model_inputs(dataset, n), dataset.y) for n, e in base.estimators().items()}
    X = base.dataset_inputs(dataset)
    assert X.shape[1] == len(base.input_names) == 10 * len(dataset.feature_names)
    oof = np.column_stack([fitted[n].predict(model_inputs(dataset, n)) for n in names])
    ensemble = StackedEnsemble(fitted, LinearRegression(positive=True), base.input_columns())
    ensemble.fit(oof, dataset.y)
    # the ensemble routes each model its own columns: same predictions as the models alone
    np.testing.assert_allclose(ensemble.base_predictions(X), oof, atol=1e-6)
    trusted = trusted_types(ensemble)
    assert "models.learning.nets.TorchRegressor" in trusted
    assert not [t for t in trusted if t.startswith("torch")]
    loaded = skops.io.loads(skops.io.dumps(ensemble), trusted=trusted)
    np.testing.assert_array_equal(loaded.predict(X[-50:]), ensemble.predict(X[-50:]))
