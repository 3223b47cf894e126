"""SHAP explanations of tree models."""

import numpy as np
import polars as pl
import shap


def tree_shap(model, X: np.ndarray, feature_names: list[str]) -> shap.Explanation:
    """Exact TreeSHAP values of a fitted tree ensemble (LightGBM, XGBoost, sklearn forests)."""
    explainer = shap.TreeExplainer(model)
    return _named(explainer(np.asarray(X, dtype=float)), feature_names)


def _named(explanation: shap.Explanation, feature_names: list[str]) -> shap.Explanation:
    explanation.feature_names = list(feature_names)
    return explanation


def mean_abs_shap(explanation: shap.Explanation) -> pl.DataFrame:
    """Global importance: mean absolute SHAP value per feature, largest first."""
    values = np.abs(np.asarray(explanation.values)).mean(axis=0)
    return pl.DataFrame({"feature": explanation.feature_names, "mean_abs_shap": values}).sort(
        "mean_abs_shap", descending=True
    )
