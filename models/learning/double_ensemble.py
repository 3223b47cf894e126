"""DoubleEnsemble (Zuo et al., "DoubleEnsemble: A New Ensemble Method Based on Sample Reweighting
and Feature Selection for Financial Data Analysis", ICDM 2020) over LightGBM.

Written here because no maintained library outside Qlib has it (Qlib's ``DEnsembleModel`` is tied
to its ``DatasetH``); the algorithm follows the paper and Qlib's benchmark model, as a
scikit-learn regressor. ``num_models`` LightGBM sub-models are trained one after another; the
prediction is their weighted mean. Between two sub-models:

- **sample re-weighting** (SR): each training sample gets ``h = alpha1 * h1 + alpha2 * h2``, with
  ``h1`` the percentile rank of the current ensemble's negative loss on it (easy samples rank
  high) and ``h2`` the percentile rank of ``l_end / l_start``, the sample's mean loss rank over
  the last tenth of the previous sub-model's boosting iterations against the first tenth (samples
  whose loss does not come down, noise, rank high). ``h`` is cut into ``bins_sr`` equal-width
  bins and a sample in bin ``b`` weighs ``1 / (decay**k * mean_h(b) + 0.1)``: the next sub-model
  leans on the hard but learnable samples.
- **feature selection** (FS) by shuffling: each feature is permuted in turn and the ensemble's
  loss increase measured, ``g = mean(dloss) / std(dloss)``; ``g`` is cut into ``bins_fs``
  equal-width bins and from the non-empty bins, most useful first, ``sample_ratios`` of their
  features are drawn at random: the next sub-model reads those.

Differences from Qlib's code, all chosen for scale and reproducibility: one ``numpy`` random
generator seeded by ``random_state`` (Qlib draws from the global NumPy state); the shuffling
test may run on a random subset of ``fs_max_rows`` training rows (on 1.6 M rows x 158 features
the full test is 158 ensemble predictions per round); sub-models whose features exclude the
shuffled one are not re-predicted (their prediction cannot change); the loss curve keeps only
the iterations SR reads (first and last tenth), not an ``N x T`` frame.
"""

import math

import numpy as np
from lightgbm import LGBMRegressor
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from models.learning.dataset import check_sample_weight


def _pct_rank(values: np.ndarray) -> np.ndarray:
    """Percentile ranks in (0, 1], ties averaged (pandas' ``rank(pct=True)``)."""
    return rankdata(values, method="average") / len(values)


def _equal_width_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each value over ``n_bins`` equal-width bins from its min to its max, right-
    closed like ``pandas.cut`` (the minimum falls in the first bin)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(len(values), dtype=np.int64)
    edges = np.linspace(lo, hi, n_bins + 1)
    return np.clip(np.searchsorted(edges, values, side="left") - 1, 0, n_bins - 1)


class DoubleEnsembleRegressor(RegressorMixin, BaseEstimator):
    """DoubleEnsemble of LightGBM regressors (see the module docstring).

    Parameters
    ----------
    num_models : int
        Sub-models trained in sequence.
    epochs : int
        Boosting rounds of each sub-model.
    enable_sr, enable_fs : bool
        Sample re-weighting and feature selection between sub-models.
    alpha1, alpha2 : float
        Weights of the loss-value and loss-curve terms of SR.
    bins_sr, bins_fs : int
        Bins of the SR ``h`` values and of the FS ``g`` values.
    decay : float
        SR weights are ``1 / (decay**k * mean_h + 0.1)`` for the ``k``-th re-weighting.
    sample_ratios : sequence of float, length ``bins_fs``
        Share of each FS bin's features kept, most useful bin first.
    sub_weights : sequence of float, length ``num_models``, optional
        Weights of the sub-models in the prediction (equal when left out).
    fs_max_rows : int, optional
        Rows the shuffling test uses (a random subset; all rows when left out).
    learning_rate, num_leaves, max_depth, min_child_samples, min_child_weight, colsample_bytree,
    subsample, subsample_freq, reg_alpha, reg_lambda :
        LightGBM parameters of every sub-model; the defaults are Qlib's Alpha158 benchmark
        settings (``subsample`` then has no effect: LightGBM bags only when ``subsample_freq``
        is positive, and Qlib's configuration sets none).
    random_state : int, optional
        Seeds the sub-models, the shuffles and the feature draws.
    n_jobs : int
        LightGBM threads.
    """

    def __init__(
        self,
        num_models: int = 6,
        epochs: int = 136,
        enable_sr: bool = True,
        enable_fs: bool = True,
        alpha1: float = 1.0,
        alpha2: float = 1.0,
        bins_sr: int = 10,
        bins_fs: int = 5,
        decay: float = 0.5,
        sample_ratios=(0.8, 0.7, 0.6, 0.5, 0.4),
        sub_weights=None,
        fs_max_rows: int | None = None,
        learning_rate: float = 0.2,
        num_leaves: int = 210,
        max_depth: int = 8,
        min_child_samples: int = 20,
        min_child_weight: float = 1e-3,
        colsample_bytree: float = 0.8879,
        subsample: float = 0.8789,
        subsample_freq: int = 0,
        reg_alpha: float = 205.6999,
        reg_lambda: float = 580.9768,
        random_state: int | None = None,
        n_jobs: int = 1,
    ):
        self.num_models = num_models
        self.epochs = epochs
        self.enable_sr = enable_sr
        self.enable_fs = enable_fs
        self.alpha1 = alpha1
        self.alpha2 = alpha2
        self.bins_sr = bins_sr
        self.bins_fs = bins_fs
        self.decay = decay
        self.sample_ratios = sample_ratios
        self.sub_weights = sub_weights
        self.fs_max_rows = fs_max_rows
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.min_child_weight = min_child_weight
        self.colsample_bytree = colsample_bytree
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.reg_alpha = reg_alpha
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # LightGBM sends a missing value down its own branch
        return tags

    def _sub_model(self, seed: int) -> LGBMRegressor:
        return LGBMRegressor(
            n_estimators=self.epochs,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            max_depth=self.max_depth,
            min_child_samples=self.min_child_samples,
            min_child_weight=self.min_child_weight,
            colsample_bytree=self.colsample_bytree,
            subsample=self.subsample,
            subsample_freq=self.subsample_freq,
            reg_alpha=self.reg_alpha,
            reg_lambda=self.reg_lambda,
            random_state=seed,
            n_jobs=self.n_jobs,
            verbose=-1,
        )

    def _weights(self) -> np.ndarray:
        weights = np.ones(self.num_models) if self.sub_weights is None else self.sub_weights
        weights = np.asarray(weights, dtype=float)
        if len(weights) != self.num_models:
            raise ValueError(
                f"sub_weights has {len(weights)} entries for num_models={self.num_models}"
            )
        return weights

    def fit(self, X, y, sample_weight=None) -> "DoubleEnsembleRegressor":
        X, y = validate_data(
            self,
            X,
            y,
            ensure_all_finite="allow-nan",
            dtype=[np.float32, np.float64],
            y_numeric=True,
        )
        y = y.astype(np.float64)
        if len(self.sample_ratios) != self.bins_fs:
            raise ValueError(
                f"sample_ratios has {len(self.sample_ratios)} entries for bins_fs={self.bins_fs}"
            )
        if self.num_models < 1:
            raise ValueError(f"num_models must be >= 1, got {self.num_models}")
        sub_weights = self._weights()
        base = (
            np.ones(len(y)) if sample_weight is None else check_sample_weight(sample_weight, len(y))
        )
        rng = np.random.default_rng(self.random_state)
        features = np.arange(X.shape[1])
        weights = np.ones(len(y))
        self.models_, self.features_ = [], []
        ensemble_sum = np.zeros(len(y))
        for k in range(self.num_models):
            model = self._sub_model(int(rng.integers(2**31 - 1)))
            inputs = X[:, features]
            model.fit(inputs, y, sample_weight=base * weights)
            self.models_.append(model)
            self.features_.append(features)
            if k + 1 == self.num_models:
                break  # the last sub-model needs no re-weighting or selection after it
            pred, l_start, l_end = self._loss_curve(model, inputs, y)
            ensemble_sum += sub_weights[k] * pred
            loss = (y - ensemble_sum / sub_weights[: k + 1].sum()) ** 2
            if self.enable_sr:
                weights = self._reweight(loss, l_start, l_end, k + 1)
            if self.enable_fs:
                features = self._select(X, y, loss, rng)
        return self

    def _loss_curve(self, model: LGBMRegressor, X: np.ndarray, y: np.ndarray):
        """The sub-model's training prediction and each sample's mean percentile rank of its
        loss over the first and the last tenth of the boosting iterations."""
        booster = model.booster_
        n_trees = booster.num_trees()
        part = max(int(n_trees * 0.1), 1)
        pred = np.zeros(len(y))
        l_start, l_end = np.zeros(len(y)), np.zeros(len(y))
        for i in range(n_trees):
            pred += booster.predict(X, start_iteration=i, num_iteration=1)
            if i < part:
                l_start += _pct_rank((y - pred) ** 2) / part
            if i >= n_trees - part:
                l_end += _pct_rank((y - pred) ** 2) / part
        return pred, l_start, l_end

    def _reweight(self, loss, l_start, l_end, k: int) -> np.ndarray:
        h = self.alpha1 * _pct_rank(-loss) + self.alpha2 * _pct_rank(l_end / l_start)
        bins = _equal_width_bins(h, self.bins_sr)
        mean_h = np.bincount(bins, weights=h, minlength=self.bins_sr) / np.maximum(
            np.bincount(bins, minlength=self.bins_sr), 1
        )
        return 1.0 / (self.decay**k * mean_h[bins] + 0.1)

    def _select(self, X: np.ndarray, y: np.ndarray, loss: np.ndarray, rng) -> np.ndarray:
        """Features of the next sub-model, drawn by the shuffling test's ``g`` values."""
        rows = np.arange(len(y))
        if self.fs_max_rows is not None and self.fs_max_rows < len(y):
            rows = np.sort(rng.choice(len(y), size=self.fs_max_rows, replace=False))
        Xs, ys, base_loss = X[rows], y[rows], loss[rows]
        # the shuffling test averages the sub-models equally, as the paper's does
        preds = [m.predict(Xs[:, f]) for m, f in zip(self.models_, self.features_, strict=True)]
        total = np.sum(preds, axis=0)
        n_models = len(self.models_)
        reads = np.zeros((n_models, X.shape[1]), dtype=bool)
        for m, feats in enumerate(self.features_):
            reads[m, feats] = True
        g = np.zeros(X.shape[1])
        for j in range(X.shape[1]):  # Xs is a copy: column j is permuted in place, then restored
            original = Xs[:, j].copy()
            Xs[:, j] = rng.permutation(original)
            changed = total.copy()
            for m in np.flatnonzero(reads[:, j]):
                changed += self.models_[m].predict(Xs[:, self.features_[m]]) - preds[m]
            Xs[:, j] = original
            delta = (ys - changed / n_models) ** 2 - base_loss
            g[j] = np.mean(delta) / (np.std(delta) + 1e-7)
        g = np.nan_to_num(g, nan=0.0)
        bins = _equal_width_bins(g, self.bins_fs)
        chosen: list[np.ndarray] = []
        for i, b in enumerate(sorted(np.unique(bins), reverse=True)):
            members = np.flatnonzero(bins == b)
            size = math.ceil(self.sample_ratios[i] * len(members))
            chosen.append(rng.choice(members, size=size, replace=False))
        return np.sort(np.concatenate(chosen))

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "models_")
        X = validate_data(
            self,
            X,
            reset=False,
            ensure_all_finite="allow-nan",
            dtype=[np.float32, np.float64],
            ensure_min_samples=0,
        )
        weights = self._weights()
        pred = np.zeros(len(X))
        for w, model, feats in zip(weights, self.models_, self.features_, strict=True):
            pred += w * model.predict(X[:, feats])
        return pred / weights.sum()
