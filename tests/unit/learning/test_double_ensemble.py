"""DoubleEnsemble: sample re-weighting earns its place on a problem built for it, the fit is
reproducible under a seed, and each step computes what the paper says."""

import numpy as np
import pytest
from lightgbm import LGBMRegressor
from sklearn.base import clone

from models.learning.double_ensemble import DoubleEnsembleRegressor, _equal_width_bins
from models.learning.estimators import get_spec

# small shallow trees whose leaves need a hessian (= sample weight) mass of 150: unweighted, a
# rare regime of ~5 % of the rows cannot get a leaf of its own
TREES = dict(
    learning_rate=0.1,
    num_leaves=8,
    max_depth=3,
    min_child_samples=5,
    min_child_weight=150.0,
    reg_alpha=0.0,
    reg_lambda=1.0,
    colsample_bytree=1.0,
)


def _rare_regime(seed: int, n: int = 2000):
    """y = 0.3 x0 everywhere plus a strong step in x2 on the rows where x1 > 1.6 (5 %)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2 * n, 5))
    signal = 0.3 * X[:, 0] + np.where(X[:, 1] > 1.6, 3 * np.sign(X[:, 2]), 0.0)
    y = signal + 0.5 * rng.normal(size=2 * n)
    return X[:n], y[:n], X[n:], signal[n:]


def test_sample_reweighting_beats_a_single_lightgbm_where_reweighting_should_help():
    X, y, X_test, signal = _rare_regime(0)
    single = LGBMRegressor(n_estimators=30, random_state=0, verbose=-1, n_jobs=1, **TREES)
    de = DoubleEnsembleRegressor(num_models=3, epochs=30, enable_fs=False, random_state=0, **TREES)
    plain = clone(de).set_params(enable_sr=False)  # the same three sub-models, no re-weighting

    def corr(model):
        return np.corrcoef(model.fit(X, y).predict(X_test), signal)[0, 1]

    ours, lgb, unweighted = corr(de), corr(single), corr(plain)
    # measured: 0.83 against 0.60 (seeds 0-7: DoubleEnsemble 0.80-0.85, LightGBM 0.57-0.64)
    assert ours > lgb + 0.15
    # and it is the re-weighting: without it the sub-models are the single LightGBM again
    np.testing.assert_allclose(unweighted, lgb, atol=1e-9)


def test_deterministic_under_a_seed_and_seed_sensitive():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(800, 12))
    y = X[:, 0] - X[:, 1] * X[:, 2] + rng.normal(size=800)
    params = dict(TREES, min_child_weight=1e-3, colsample_bytree=0.7)
    de = DoubleEnsembleRegressor(num_models=3, epochs=15, random_state=5, **params)
    first = de.fit(X, y).predict(X)
    features = [f.tolist() for f in de.features_]
    again = clone(de).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), first)
    assert [f.tolist() for f in again.features_] == features
    other = clone(de).set_params(random_state=6).fit(X, y).predict(X)
    assert not np.allclose(other, first)
    # feature selection kept a share of every bin, never nothing, never a column twice
    assert all(0 < len(f) <= 12 and len(set(f)) == len(f) for f in features[1:])


def test_loss_curve_adds_up_to_the_model_and_weights_follow_the_formula():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 4))
    y = X[:, 0] + rng.normal(size=500)
    de = DoubleEnsembleRegressor(num_models=2, epochs=20, random_state=0, **TREES)
    model = LGBMRegressor(n_estimators=20, random_state=0, verbose=-1, n_jobs=1, **TREES)
    model.fit(X, y)
    pred, l_start, l_end = de._loss_curve(model, X, y)
    np.testing.assert_allclose(pred, model.predict(X), atol=1e-9)
    assert l_start.min() > 0 and l_end.max() <= 1  # mean percentile ranks
    # h = rank(-loss) + rank(l_end / l_start); weight 1 / (decay^k * mean h of its bin + 0.1)
    loss = np.array([4.0, 3.0, 2.0, 1.0])
    start, end = np.array([0.5, 0.5, 0.5, 0.5]), np.array([0.1, 0.2, 0.3, 0.4])
    de.set_params(bins_sr=2, decay=0.5)
    w = de._reweight(loss, start, end, 1)
    h = np.array([0.25, 0.5, 0.75, 1.0]) * 2  # both terms rank the rows alike here
    bins = np.array([0, 0, 1, 1])  # equal-width bins over [0.5, 2.0], right-closed
    expected = 1 / (0.5 * np.array([h[:2].mean(), h[2:].mean()])[bins] + 0.1)
    np.testing.assert_allclose(w, expected)
    np.testing.assert_array_equal(
        _equal_width_bins(np.array([0.0, 0.5, 0.51, 1.0]), 2), [0, 0, 1, 1]
    )


def test_zoo_spec_and_contract():
    spec = get_spec("double_ensemble")
    model = spec.build({"num_models": 2, "epochs": 5}, 3, 1)
    assert model.get_params()["random_state"] == 3 and clone(model).get_params()["epochs"] == 5
    with pytest.raises(ValueError, match="sample_ratios"):
        DoubleEnsembleRegressor(bins_fs=3).fit(np.zeros((10, 2)), np.zeros(10))
