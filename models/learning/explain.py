"""SHAP explanations of the tree models, per-row reasons and a distilled surrogate tree.

Exact TreeSHAP comes from the libraries' own contribution output (LightGBM ``pred_contrib``,
XGBoost ``pred_contribs``: C++ and multi-threaded, the fast path); scikit-learn forests go
through ``shap.TreeExplainer``. Either way the values are wrapped in a ``shap.Explanation`` so
the ``shap`` package draws the plots.
"""

import numpy as np
import polars as pl
import shap
import torch
from lightgbm import LGBMModel
from sklearn.metrics import r2_score
from sklearn.tree import DecisionTreeRegressor, export_text
from xgboost import DMatrix, XGBModel


def tree_contributions(model, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values ``(n, p)`` and the expected value per row ``(n,)``; the two sum to the
    model's raw prediction for each row (additivity)."""
    X = np.asarray(X, dtype=float)
    if isinstance(model, LGBMModel):
        out = model.predict(X, pred_contrib=True)
    elif isinstance(model, XGBModel):
        out = model.get_booster().predict(DMatrix(X), pred_contribs=True).astype(float)
    else:
        explainer = shap.TreeExplainer(model)
        values = explainer.shap_values(X, check_additivity=False)
        base = np.broadcast_to(np.asarray(explainer.expected_value, dtype=float), len(X))
        return np.asarray(values, dtype=float), base.copy()
    return out[:, :-1], out[:, -1]


def tree_shap(model, X: np.ndarray, feature_names: list[str]) -> shap.Explanation:
    """Exact TreeSHAP values of a fitted tree ensemble (LightGBM, XGBoost, sklearn forests)."""
    values, base = tree_contributions(model, X)
    return shap.Explanation(
        values=values,
        base_values=base,
        data=np.asarray(X, dtype=float),
        feature_names=list(feature_names),
    )


def mean_abs_shap(explanation: shap.Explanation) -> pl.DataFrame:
    """Global importance: mean absolute SHAP value per feature, largest first."""
    values = np.abs(np.asarray(explanation.values)).mean(axis=0)
    return pl.DataFrame({"feature": explanation.feature_names, "mean_abs_shap": values}).sort(
        "mean_abs_shap", descending=True
    )


def reasons(explanation: shap.Explanation, keys: pl.DataFrame, top: int = 3) -> pl.DataFrame:
    """ "Why this asset, on this date": for each row of ``keys`` (aligned with the explained
    rows) the ``top`` features that pushed its prediction most, with their SHAP values."""
    values = np.asarray(explanation.values)
    names = np.asarray(explanation.feature_names)
    order = np.argsort(-np.abs(values), axis=1)[:, :top]
    rows = np.arange(len(values))[:, None]
    return keys.with_columns(
        prediction=pl.Series(values.sum(axis=1) + np.asarray(explanation.base_values)),
        **{f"feature_{i + 1}": pl.Series(names[order[:, i]]) for i in range(top)},
        **{f"shap_{i + 1}": pl.Series(values[rows[:, 0], order[:, i]]) for i in range(top)},
    )


def distil(
    X: np.ndarray, prediction: np.ndarray, feature_names: list[str], max_depth: int = 3
) -> tuple[DecisionTreeRegressor, float, str]:
    """A shallow surrogate tree fitted to a model's predictions: the tree, its fidelity (R^2
    of the surrogate to the model on the same rows) and its rules as text."""
    tree = DecisionTreeRegressor(max_depth=max_depth, min_samples_leaf=50, random_state=0)
    tree.fit(X, prediction)
    fidelity = float(r2_score(prediction, tree.predict(X)))
    return tree, fidelity, export_text(tree, feature_names=list(feature_names), decimals=4)


def ensemble_shap(ensemble, X: np.ndarray, input_names: list[str]) -> shap.Explanation:
    """SHAP values of the stacked ensemble, carried through its meta-learner.

    With a linear meta-learner the ensemble is ``c + sum_m w_m f_m(x)``, so its exact
    attributions are the weighted sum of each base model's TreeSHAP values, each on the
    columns that model reads; the base value is ``c + sum_m w_m E[f_m]``. Additive like the
    parts. A non-linear meta-learner or a base model that is not a tree ensemble has no
    exact decomposition here: a ValueError says which.
    """
    meta = ensemble.final_estimator_
    if not hasattr(meta, "coef_"):
        raise ValueError(
            f"ensemble SHAP needs a linear meta-learner (positive_linear, ridge), "
            f"not {type(meta).__name__}"
        )
    X = np.asarray(X, dtype=float)
    values = np.zeros_like(X)
    base = np.full(len(X), float(meta.intercept_))
    columns = ensemble.input_columns or {}
    for weight, (name, model) in zip(meta.coef_, ensemble.base_models.items(), strict=True):
        if not isinstance(model, LGBMModel | XGBModel) and not hasattr(model, "estimators_"):
            raise ValueError(f"ensemble SHAP covers tree base models; {name!r} is not one")
        cols = columns.get(name, list(range(X.shape[1])))
        v, b = tree_contributions(model, X[:, cols])
        values[:, cols] += weight * v
        base += weight * b
    return shap.Explanation(
        values=values, base_values=base, data=X, feature_names=list(input_names)
    )


class _Unsqueezed(torch.nn.Module):
    """shap's GradientExplainer wants ``(batch, outputs)``; our nets return ``(batch,)``."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).unsqueeze(-1)


def gradient_shap(
    model, X: np.ndarray, feature_names: list[str], background: int = 200, seed: int = 0
) -> shap.Explanation:
    """Expected-gradients SHAP values (``shap.GradientExplainer``) of a fitted torch net of
    ``models.learning.nets`` on standardised inputs, summed over the look-back window per feature.

    Unlike TreeSHAP these are estimates: they add up to the prediction minus the mean
    prediction over the background rows only on average (sampling error shrinks with
    ``nsamples``); the test measures how close.
    """
    X = np.asarray(X, dtype=float)
    rng = np.random.default_rng(seed)
    inputs = model._tensor(X)
    reference = inputs[rng.choice(len(X), min(background, len(X)), replace=False)]
    net = _Unsqueezed(model.net_).eval()
    explainer = shap.GradientExplainer(net, reference)
    values = np.asarray(explainer.shap_values(inputs, nsamples=200, rseed=seed))
    values = values.reshape(len(X), model.window, -1).sum(axis=1)
    with torch.no_grad():
        base = float(net(reference).mean())
    n_features = values.shape[1]
    return shap.Explanation(
        values=values,
        base_values=np.full(len(X), base),
        data=X[:, -n_features:],  # today's features (the window's last step)
        feature_names=list(feature_names),
    )
