"""The base models and the Optuna search space each one declares next to its code."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from lightgbm import LGBMRegressor
from sklearn.base import RegressorMixin
from xgboost import XGBRegressor

Params = dict[str, Any]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one base model and which hyper-parameters Optuna may try."""

    name: str
    build: Callable[[Params, int, int], RegressorMixin]
    search_space: Callable[[optuna.Trial], Params]


def _lightgbm(params: Params, random_state: int, n_jobs: int) -> RegressorMixin:
    return LGBMRegressor(
        **params, subsample_freq=1, random_state=random_state, n_jobs=n_jobs, verbose=-1
    )


def _lightgbm_space(trial: optuna.Trial) -> Params:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 400, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 50, 2000, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def _xgboost(params: Params, random_state: int, n_jobs: int) -> RegressorMixin:
    return XGBRegressor(**params, tree_method="hist", random_state=random_state, n_jobs=n_jobs)


def _xgboost_space(trial: optuna.Trial) -> Params:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 400, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 6),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 100.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("lightgbm", _lightgbm, _lightgbm_space),
        ModelSpec("xgboost", _xgboost, _xgboost_space),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec of a base model by name, with the known names in the error."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODEL_SPECS)}") from None
