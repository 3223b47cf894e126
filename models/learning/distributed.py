"""LightGBM and XGBoost on a Dask cluster: ``lightgbm.dask`` and ``xgboost.dask``, the
libraries' own distributed learners (``models.engine: dask``).

The coordinator's matrix is cut into one block of consecutive rows per worker and scattered
once per model; each fold trains on a slice of those blocks, so a worker holds its block and
the binned rows and histograms of its share of every fit, and the coordinator the matrix and
the test rows it predicts. XGBoost's per-fold ``DaskQuantileDMatrix`` is built once and reused
by every trial, as the local engine's is; ``lightgbm.dask`` builds its Dataset inside each fit
(its API takes arrays, not Datasets). Models without a Dask learner fit on this process.

Deterministic where the data are not split: with every row on one worker (``partitions=1``)
both libraries fit exactly what the local engine fits. Split over workers they fit the same
algorithm on other bin edges (LightGBM's data-parallel learner bins each feature from one
worker's rows, XGBoost merges the workers' quantile sketches), so predictions differ from the
local engine's by about as much as two bin choices do; the tests measure both cases.

The client is made by the pipeline (``pipelines/resources.py``); this module only uses it.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.learning.dataset import row_view
from models.learning.estimators import Params, get_spec
from models.learning.folds import EstimatorFolds, FoldFits, xgboost_params
from models.types import Split

DASK_LIBRARIES = ("lightgbm", "xgboost")


def _contiguous(rows: np.ndarray) -> slice | np.ndarray:
    rows = np.asarray(rows)
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


class DaskEngine:
    """Fits on the Dask cluster of ``client`` (a ``distributed.Client``); ``partitions`` blocks
    of rows (default one per worker)."""

    def __init__(self, client: Any, partitions: int | None = None):
        self.client = client
        self.partitions = partitions
        self._held: tuple[np.ndarray, np.ndarray, Any, Any] | None = None

    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def arrays(self, X: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        """``X`` and ``y`` as Dask arrays of one block per worker, scattered once (the same
        arrays again reuse the blocks already on the cluster)."""
        import dask.array as da

        if self._held is not None and self._held[0] is X and self._held[1] is y:
            return self._held[2], self._held[3]
        self.forget()
        parts = np.array_split(np.arange(len(X)), self.partitions or self.workers())
        parts = [p for p in parts if len(p)]
        xs = self.client.scatter([row_view(X, p) for p in parts])
        ys = self.client.scatter([y[p[0] : p[-1] + 1] for p in parts])
        dX = da.concatenate(
            [
                da.from_delayed(f, shape=(len(p), X.shape[1]), dtype=X.dtype)
                for f, p in zip(xs, parts, strict=True)
            ]
        )
        dy = da.concatenate(
            [
                da.from_delayed(f, shape=(len(p),), dtype=y.dtype)
                for f, p in zip(ys, parts, strict=True)
            ]
        )
        self._held = (X, y, dX, dy)
        return dX, dy

    def forget(self) -> None:
        """Release the blocks held on the cluster."""
        self._held = None

    def fold_fits(
        self,
        model: str,
        X: np.ndarray,
        y: np.ndarray,
        splits: Sequence[Split],
        seed: int,
        n_jobs: int,
    ) -> FoldFits:
        if get_spec(model).library not in DASK_LIBRARIES:
            return EstimatorFolds(model, X, y, splits, seed, n_jobs)
        return DaskFolds(self, model, X, y, splits, seed, n_jobs)

    def fit(
        self,
        model: str,
        params: Params,
        X: np.ndarray,
        y: np.ndarray,
        rows: np.ndarray,
        seed: int,
        n_jobs: int,
    ):
        """The model fitted on ``rows`` on the cluster, returned as the local scikit-learn
        estimator (``LGBMRegressor`` / ``XGBRegressor``) the local engine returns."""
        spec = get_spec(model)
        estimator = spec.build(params, seed, n_jobs)
        if spec.library not in DASK_LIBRARIES:
            return estimator.fit(np.asarray(row_view(X, rows), dtype=spec.dtype), y[rows])
        dX, dy = self.arrays(X, y)
        index = _contiguous(rows)
        if spec.library == "lightgbm":
            return _lightgbm_fit(self.client, estimator, dX[index], dy[index], n_jobs)
        import xgboost.dask as dxgb

        native, rounds = xgboost_params(estimator)
        matrix = dxgb.DaskQuantileDMatrix(
            self.client, dX[index], dy[index], missing=estimator.missing, max_bin=estimator.max_bin
        )
        booster = _xgboost_train(self.client, native, matrix, rounds)
        estimator.load_model(bytearray(booster.save_raw("ubj")))
        return estimator


def _lightgbm_fit(client: Any, estimator: Any, dX: Any, dy: Any, n_jobs: int):
    """``estimator``'s parameters fitted by ``DaskLGBMRegressor``, back as a local
    ``LGBMRegressor`` (each worker fits with its own threads; predictions on ``n_jobs``)."""
    from lightgbm.dask import DaskLGBMRegressor

    params = {k: v for k, v in estimator.get_params().items() if k != "n_jobs"}
    local = DaskLGBMRegressor(client=client, **params).fit(dX, dy).to_local()
    return local.set_params(n_jobs=n_jobs)


def _xgboost_train(client: Any, params: dict, matrix: Any, rounds: int):
    import xgboost.dask as dxgb

    # each worker trains with its own threads (the coordinator's n_jobs is not theirs)
    params = {k: v for k, v in params.items() if k not in ("n_jobs", "nthread")}
    return dxgb.train(client, params, matrix, num_boost_round=rounds)["booster"]


class DaskFolds:
    """Fold fits of one model on the cluster; predictions on this process (the test rows are
    here)."""

    def __init__(self, engine: DaskEngine, model, X, y, splits, seed, n_jobs):
        self.engine, self.spec, self.X, self.y = engine, get_spec(model), X, y
        self.splits, self.seed, self.n_jobs = splits, seed, n_jobs
        self._matrices: dict[int, Any] = {}

    def _train(self, fold: int) -> tuple[Any, Any]:
        dX, dy = self.engine.arrays(self.X, self.y)
        index = _contiguous(self.splits[fold][0])
        return dX[index], dy[index]

    def predict(self, params: Params, fold: int) -> np.ndarray:
        estimator = self.spec.build(params, self.seed, self.n_jobs)
        test = row_view(self.X, self.splits[fold][1])
        if self.spec.library == "lightgbm":
            dX, dy = self._train(fold)
            return _lightgbm_fit(self.engine.client, estimator, dX, dy, self.n_jobs).predict(test)
        import xgboost.dask as dxgb

        native, rounds = xgboost_params(estimator)
        if fold not in self._matrices:
            dX, dy = self._train(fold)
            self._matrices[fold] = dxgb.DaskQuantileDMatrix(
                self.engine.client, dX, dy, missing=estimator.missing, max_bin=estimator.max_bin
            )
        booster = _xgboost_train(self.engine.client, native, self._matrices[fold], rounds)
        return booster.inplace_predict(test, missing=estimator.missing)

    def release(self, fold: int) -> None:
        self._matrices.pop(fold, None)

    def close(self) -> None:
        self._matrices.clear()
