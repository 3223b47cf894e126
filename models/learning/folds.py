"""Fit a model on each fold's training rows and predict its test rows, holding what the
library can reuse between fits (binned data) instead of rebuilding it for every trial.

* LightGBM: a ``lightgbm.Dataset`` per fold, binned once from the fold's own rows without
  keeping them (``free_raw_data``) and reused by every trial (``feature_pre_filter=False``, so
  one binned Dataset serves every trial's ``min_child_samples``). Not one Dataset per model
  with a ``Dataset.subset`` per fold: a subset keeps its parent's bin edges, so every fold
  would train on bins found on other rows; measured on the fast profile that moved LightGBM's
  out-of-fold predictions more than a change of seed does (correlation 0.88 with today's, a
  seed change 0.91), while per-fold bins keep today's fits (float32 aside). The memory is the
  same (a subset copies its rows' bins too); the cost is binning each fold once instead of
  once in all, which a trial budget amortises. Folds are kept across trials up to half the
  matrix's rows (``KEEP_ROWS``); the rest are binned again for each trial.
* XGBoost: a ``QuantileDMatrix`` cannot be subset in XGBoost 3.2 ("Slicing DMatrix is not
  supported" for quantile matrices), so each fold's is built once from its own rows, exactly as
  ``XGBRegressor.fit`` builds it, and reused by later trials (within the same budget).
* Any other model: the scikit-learn estimator on the fold's rows (a view of the matrix where
  the rows are contiguous).

Both libraries are called through ``lightgbm.train`` / ``xgboost.train`` with the parameters
their scikit-learn wrappers would pass (:func:`lightgbm_params`, :func:`xgboost_params`), so a
fold fits exactly what ``spec.build(params).fit(X[train], y[train])`` fitted before (unit tests
compare the two); the fitted boosters are thrown away, only the predictions are kept.
"""

import ctypes
import gc
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from models.learning.dataset import row_view
from models.learning.estimators import Params, get_spec
from models.types import Split


def lightgbm_params(estimator: Any) -> tuple[dict[str, Any], int]:
    """The ``lightgbm.train`` parameters and rounds that ``estimator`` (an ``LGBMRegressor``)
    passes in its ``fit``: its own parameters under LightGBM's aliases, which the library reads
    as the native names (``n_jobs`` → ``num_threads``, ``subsample`` → ``bagging_fraction``)."""
    params = estimator.get_params()
    rounds = params.pop("n_estimators")
    for key in ("importance_type", "class_weight"):
        params.pop(key, None)
    params["objective"] = params.get("objective") or "regression"
    params["num_threads"] = params.pop("n_jobs")
    # min_child_samples differs between trials: a pre-filter of unsplittable features at
    # binning time would tie the Dataset to one trial's value (LightGBM refuses the change)
    params["feature_pre_filter"] = False
    return {k: v for k, v in params.items() if v is not None}, int(rounds)


def xgboost_params(estimator: Any) -> tuple[dict[str, Any], int]:
    """The ``xgboost.train`` parameters and rounds of an ``XGBRegressor`` (its public
    ``get_xgb_params`` and ``get_num_boosting_rounds``)."""
    return estimator.get_xgb_params(), int(estimator.get_num_boosting_rounds())


class FoldFits(Protocol):
    """Fits of one model on the folds of one split set."""

    def predict(self, params: Params, fold: int) -> np.ndarray:
        """Fit ``params`` on fold ``fold``'s training rows; predict its test rows."""

    def release(self, fold: int) -> None:
        """Free what is held for ``fold`` (its binned rows)."""

    def close(self) -> None:
        """Free everything held."""


class EstimatorFolds:
    """The model's scikit-learn estimator, fitted afresh on each fold (nothing to reuse)."""

    def __init__(self, model, X, y, splits, seed, n_jobs, dtype=None):
        self.spec, self.X, self.y, self.splits = get_spec(model), X, y, splits
        self.seed, self.n_jobs, self.dtype = seed, n_jobs, dtype or self.spec.dtype

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(row_view(self.X, rows), dtype=self.dtype)

    def predict(self, params: Params, fold: int) -> np.ndarray:
        train, test = self.splits[fold]
        model = self.spec.build(params, self.seed, self.n_jobs)
        model.fit(self._rows(train), self.y[train])
        return model.predict(self._rows(test))

    def release(self, fold: int) -> None:
        pass

    def close(self) -> None:
        pass


# Binned folds kept across trials hold at most this share of the matrix's rows; the others are
# binned again for each trial. The binned form of a row takes about 1.5x its float32 row in
# both libraries on Alpha158 (XGBoost keeps a row- and a column-major bin index, LightGBM its
# bins and the histogram layout it chose): keeping all three inner folds of the shared set's
# run (1.0x the rows) held ~2.7 GB next to the 1.8 GB matrix and took the step to 11 GB.
KEEP_ROWS = 0.5


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's ``malloc_trim``):
    the libraries' per-thread arenas otherwise keep a freed Dataset's pages resident."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc
        pass


class _BinnedFolds:
    """Each fold's binned training rows, built on first use and kept for later trials while the
    kept folds hold at most ``keep`` x the matrix's rows."""

    def __init__(self, model, X, y, splits, seed, n_jobs, keep: float = KEEP_ROWS):
        self.spec, self.X, self.y, self.splits = get_spec(model), X, y, splits
        self.seed, self.n_jobs, self.keep = seed, n_jobs, keep
        self._folds: dict[int, Any] = {}

    def _build(self, rows: np.ndarray, train: np.ndarray, estimator: Any) -> Any:
        raise NotImplementedError

    def _binned(self, fold: int, estimator: Any) -> tuple[Any, bool]:
        """The fold's binned rows, and whether they are kept."""
        if fold in self._folds:
            return self._folds[fold], True
        train = self.splits[fold][0]
        rows = row_view(self.X, train)  # a copy only when the rows are not contiguous
        binned = self._build(rows, train, estimator)
        del rows
        held = sum(len(self.splits[f][0]) for f in self._folds)
        if held + len(train) <= self.keep * len(self.X):
            self._folds[fold] = binned
            return binned, True
        return binned, False

    def predict(self, params: Params, fold: int) -> np.ndarray:
        estimator = self.spec.build(params, self.seed, self.n_jobs)
        binned, kept = self._binned(fold, estimator)
        pred = self._fit_predict(estimator, binned, row_view(self.X, self.splits[fold][1]))
        if not kept:
            del binned
            release_memory()
        return pred

    def release(self, fold: int) -> None:
        if self._folds.pop(fold, None) is not None:
            release_memory()

    def close(self) -> None:
        self._folds.clear()
        release_memory()


class LightGBMFolds(_BinnedFolds):
    """A binned ``lightgbm.Dataset`` per fold, from its own rows (see the module)."""

    def _build(self, rows, train, estimator):
        import lightgbm as lgb

        native, _ = lightgbm_params(estimator)
        return lgb.Dataset(rows, self.y[train], params=native, free_raw_data=True).construct()

    def _fit_predict(self, estimator, binned, test_rows):
        import lightgbm as lgb

        native, rounds = lightgbm_params(estimator)
        booster = lgb.train(native, binned, num_boost_round=rounds)
        return booster.predict(test_rows, num_threads=self.n_jobs)


class XGBoostFolds(_BinnedFolds):
    """A ``QuantileDMatrix`` per fold, from its own rows (see the module)."""

    def _build(self, rows, train, estimator):
        import xgboost as xgb

        return xgb.QuantileDMatrix(
            rows,
            self.y[train],
            missing=estimator.missing,
            nthread=self.n_jobs,
            max_bin=estimator.max_bin,
        )

    def _fit_predict(self, estimator, binned, test_rows):
        import xgboost as xgb

        native, rounds = xgboost_params(estimator)
        booster = xgb.train(native, binned, num_boost_round=rounds)
        return booster.inplace_predict(test_rows, missing=estimator.missing)


LOCAL_FOLDS = {"lightgbm": LightGBMFolds, "xgboost": XGBoostFolds}


def fold_fits(
    model: str,
    X: np.ndarray,
    y: np.ndarray,
    splits: Sequence[Split],
    seed: int,
    n_jobs: int,
    engine: Any = None,
) -> FoldFits:
    """The fold fitter for ``model`` on this machine, or on ``engine`` (a
    :class:`models.learning.distributed.DaskEngine`) when given."""
    if engine is not None:
        return engine.fold_fits(model, X, y, splits, seed, n_jobs)
    library = get_spec(model).library
    return LOCAL_FOLDS.get(library, EstimatorFolds)(model, X, y, splits, seed, n_jobs)


def fit_final(
    model: str,
    params: Params,
    X: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    seed: int,
    n_jobs: int,
    engine: Any = None,
):
    """The model's scikit-learn estimator fitted on ``rows`` (a view of the matrix where they
    are contiguous; in float64 only for the models that ask for it), or on ``engine``."""
    if engine is not None:
        return engine.fit(model, params, X, y, rows, seed, n_jobs)
    spec = get_spec(model)
    estimator = spec.build(params, seed, n_jobs)
    return estimator.fit(np.asarray(row_view(X, rows), dtype=spec.dtype), y[rows])
