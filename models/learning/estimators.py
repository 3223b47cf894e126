"""The model zoo: each base model, the inputs it reads and the Optuna search space it declares.

Every model is a scikit-learn regressor seeded by ``random_state``. A spec also says which
feature columns the model reads (``select``) and over how many time steps (``window``: 1 for
tabular models, more for the sequence nets, which read look-back windows of features).

* gradient-boosted trees: ``lightgbm``, ``xgboost``, ``double_ensemble`` (LightGBM sub-models with
  sample re-weighting and feature selection, ``models.learning.double_ensemble``); ``hybrid`` is LightGBM that also reads the
  statistical forecasts (``stat_*`` columns: ARMA return, GARCH volatility);
* ``random_forest``; linear ``ridge`` and ``elastic_net``; ``svr``, an RBF support-vector
  regressor through a Nystroem kernel map (an exact SVR is O(n^2) in memory and does not finish
  on a few hundred thousand panel rows; the approximation is scikit-learn's documented route);
* PyTorch ``mlp``, ``lstm``, ``tcn``, ``transformer`` (``models.learning.nets``);
* baselines with nothing to tune: ``arima`` predicts its ARMA(1,1) forecast, ``garch`` ranks by
  low GARCH(1,1) volatility (the low-volatility anomaly).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from lightgbm import LGBMRegressor
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import ElasticNet, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVR
from sklearn.utils.validation import check_is_fitted, validate_data
from xgboost import XGBRegressor

from models.features.statistical import PREFIX as STAT_PREFIX
from models.learning.double_ensemble import DoubleEnsembleRegressor
from models.learning.nets import TorchRegressor

Params = dict[str, Any]
SEQUENCE_WINDOW = 10  # trading days each sequence net looks back


def price_features(names: Sequence[str]) -> list[str]:
    """Every feature but the statistical forecasts."""
    return [n for n in names if not n.startswith(STAT_PREFIX)]


def all_features(names: Sequence[str]) -> list[str]:
    return list(names)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one base model, what it reads, and which hyper-parameters Optuna may try."""

    name: str
    build: Callable[[Params, int, int], RegressorMixin]
    search_space: Callable[[optuna.Trial], Params]
    select: Callable[[Sequence[str]], list[str]] = price_features
    window: int = 1
    tunable: bool = True
    needs: tuple[str, ...] = ()  # feature columns that must be present
    # "lightgbm" / "xgboost": fitted through the library's own training API on binned data
    # that is kept across folds and trials (``models.learning.folds``); None: the estimator itself
    library: str | None = None
    # the dtype of the rows the estimator fits on: float32 (the matrix's own, no copy) unless
    # its solver accumulates over millions of rows (the linear models, in float64 as always)
    dtype: type = np.float32

    def columns(self, names: Sequence[str]) -> list[str]:
        """The feature columns this model reads, in order; a clear error if one it needs is
        missing (the statistical forecasts come with ``features.statistical: true``)."""
        missing = [c for c in self.needs if c not in names]
        if missing:
            raise ValueError(
                f"model {self.name!r} needs feature columns {missing}: "
                "set features.statistical: true in the experiment"
            )
        selected = self.select(names)
        if not selected:
            raise ValueError(f"model {self.name!r} has no input columns among {list(names)}")
        return selected


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


def _double_ensemble(params: Params, random_state: int, n_jobs: int) -> RegressorMixin:
    return DoubleEnsembleRegressor(**params, random_state=random_state, n_jobs=n_jobs)


def _double_ensemble_space(trial: optuna.Trial) -> Params:
    return {
        "num_models": trial.suggest_int("num_models", 2, 6),
        "epochs": trial.suggest_int("epochs", 20, 150, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 127, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 20, 2000, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 1000.0, log=True),
        "decay": trial.suggest_float("decay", 0.3, 0.9),
        # the shuffling test on a sample of rows: on panel sizes it is the slow step
        "fs_max_rows": 100_000,
    }


def _random_forest(params: Params, random_state: int, n_jobs: int) -> RegressorMixin:
    return RandomForestRegressor(**params, random_state=random_state, n_jobs=n_jobs)


def _random_forest_space(trial: optuna.Trial) -> Params:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 200, log=True),
        "max_depth": trial.suggest_int("max_depth", 3, 12),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 50, 2000, log=True),
        "max_features": trial.suggest_float("max_features", 0.2, 1.0),
        "max_samples": trial.suggest_float("max_samples", 0.1, 0.5),
    }


def _dense(*steps: Any) -> RegressorMixin:
    """Impute with training medians, standardise, then ``steps`` (models that reject NaN)."""
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), *steps)


def _ridge(params: Params, random_state: int, n_jobs: int) -> RegressorMixin:
    return _dense(Ridge(**params, random_state=random_state))


def _ridge_space(trial: optuna.Trial) -> Params:
    return {"alpha": trial.suggest_float("alpha", 1e-2, 1e4, log=True)}


def _elastic_net(params: Params, random_state: int, n_jobs: int) -> RegressorMixin:
    return _dense(ElasticNet(**params, random_state=random_state, max_iter=5000))


def _elastic_net_space(trial: optuna.Trial) -> Params:
    return {
        "alpha": trial.suggest_float("alpha", 1e-6, 1e-2, log=True),
        "l1_ratio": trial.suggest_float("l1_ratio", 0.05, 1.0),
    }


def _svr(params: Params, random_state: int, n_jobs: int) -> RegressorMixin:
    kernel = Nystroem(
        gamma=params["gamma"], n_components=params["n_components"], random_state=random_state
    )
    svr = LinearSVR(
        C=params["C"], epsilon=params["epsilon"], random_state=random_state, max_iter=5000
    )
    return _dense(kernel, svr)


def _svr_space(trial: optuna.Trial) -> Params:
    return {
        "gamma": trial.suggest_float("gamma", 1e-3, 1.0, log=True),
        "n_components": trial.suggest_int("n_components", 50, 300, log=True),
        "C": trial.suggest_float("C", 1e-3, 10.0, log=True),
        "epsilon": trial.suggest_float("epsilon", 0.0, 0.2),
    }


def _net(arch: str, window: int) -> Callable[[Params, int, int], RegressorMixin]:
    def build(params: Params, random_state: int, n_jobs: int) -> RegressorMixin:
        return TorchRegressor(arch=arch, window=window, random_state=random_state, **params)

    return build


def _net_space(trial: optuna.Trial) -> Params:
    return {
        "hidden": trial.suggest_categorical("hidden", [16, 32, 64]),
        "layers": trial.suggest_int("layers", 1, 3),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "epochs": trial.suggest_int("epochs", 2, 8),
    }


class ColumnSignal(RegressorMixin, BaseEstimator):
    """A baseline whose prediction is one input column times ``sign``; fitting learns nothing
    (the statistical model behind the column was fitted point-in-time upstream)."""

    def __init__(self, sign: float = 1.0):
        self.sign = sign

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing statistical forecast predicts 0
        tags.regressor_tags.poor_score = True  # it learns nothing from y, by design
        return tags

    def fit(self, X, y) -> "ColumnSignal":
        validate_data(self, X, y, ensure_all_finite="allow-nan", y_numeric=True)
        self.fitted_ = True
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "fitted_")
        X = validate_data(
            self,
            X,
            reset=False,
            ensure_all_finite="allow-nan",
            dtype=np.float64,
            ensure_min_samples=0,
        )
        return np.nan_to_num(X[:, 0] * self.sign, nan=0.0)


def _no_space(trial: optuna.Trial) -> Params:
    return {}


def _only(column: str) -> Callable[[Sequence[str]], list[str]]:
    return lambda names: [column] if column in names else []


def _baseline(name: str, column: str, sign: float) -> ModelSpec:
    """A statistical baseline: one ``stat_*`` column times ``sign``, nothing to tune."""
    return ModelSpec(
        name,
        lambda params, seed, n_jobs: ColumnSignal(sign),
        _no_space,
        select=_only(column),
        tunable=False,
        needs=(column,),
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("lightgbm", _lightgbm, _lightgbm_space, library="lightgbm"),
        ModelSpec("xgboost", _xgboost, _xgboost_space, library="xgboost"),
        ModelSpec("double_ensemble", _double_ensemble, _double_ensemble_space),
        ModelSpec("random_forest", _random_forest, _random_forest_space),
        ModelSpec("ridge", _ridge, _ridge_space, dtype=np.float64),
        ModelSpec("elastic_net", _elastic_net, _elastic_net_space, dtype=np.float64),
        ModelSpec("svr", _svr, _svr_space, dtype=np.float64),
        ModelSpec("mlp", _net("mlp", 1), _net_space),
        *(
            ModelSpec(arch, _net(arch, SEQUENCE_WINDOW), _net_space, window=SEQUENCE_WINDOW)
            for arch in ("lstm", "tcn", "transformer")
        ),
        _baseline("arima", "stat_arima", 1.0),
        _baseline("garch", "stat_garch_vol", -1.0),
        ModelSpec(
            "hybrid",
            _lightgbm,
            _lightgbm_space,
            select=all_features,
            needs=("stat_arima", "stat_garch_vol"),
            library="lightgbm",
        ),
    )
}
STATISTICAL_MODELS = tuple(n for n, s in MODEL_SPECS.items() if s.needs)


def get_spec(name: str) -> ModelSpec:
    """The spec of a base model by name, with the known names in the error."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODEL_SPECS)}") from None
