"""Out-of-fold predictions and a meta-learner fitted on them only (stacking without leakage)."""

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from models.types import Split


def out_of_fold_predictions(
    estimators: Mapping[str, RegressorMixin],
    X: np.ndarray | Mapping[str, np.ndarray],
    y: np.ndarray,
    splits: Sequence[Split],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a clone of every estimator on each split's training rows, predict its test rows.

    ``X`` is one matrix for all estimators or a matrix per estimator name (models that read
    different columns or look-back windows). Returns ``(rows, fold, predictions)``: the test
    row positions, the fold each belongs to and a ``(len(rows), len(estimators))`` matrix of
    predictions, columns in ``estimators`` order.
    """
    inputs = X if isinstance(X, Mapping) else dict.fromkeys(estimators, X)
    rows, folds, preds = [], [], []
    for fold, (train, test) in enumerate(splits):
        block = [
            clone(est).fit(inputs[name][train], y[train]).predict(inputs[name][test])
            for name, est in estimators.items()
        ]
        rows.append(test)
        folds.append(np.full(len(test), fold))
        preds.append(np.column_stack(block))
    return np.concatenate(rows), np.concatenate(folds), np.vstack(preds)


class StackedEnsemble(RegressorMixin, BaseEstimator):
    """Fitted base models whose predictions feed a meta-learner.

    ``fit`` takes the base models' *out-of-fold* predictions, never their in-sample ones, and
    fits only the meta-learner; ``predict`` takes features, runs every base model and the
    meta-learner on their outputs.

    Parameters
    ----------
    base_models : mapping of name to fitted regressor
    final_estimator : regressor
        The meta-learner; cloned before fitting.
    input_columns : mapping of name to column positions, optional
        The columns of the ensemble's input that each base model reads (models differ in
        features and look-back windows); all columns when left out.
    """

    def __init__(self, base_models=None, final_estimator=None, input_columns=None):
        self.base_models = base_models
        self.final_estimator = final_estimator
        self.input_columns = input_columns

    def fit(self, oof_predictions: np.ndarray, y: np.ndarray) -> "StackedEnsemble":
        oof = np.asarray(oof_predictions, dtype=float)
        if oof.ndim != 2 or oof.shape[1] != len(self.base_models):
            raise ValueError(
                f"expected one column of OOF predictions per base model "
                f"({len(self.base_models)}), got shape {oof.shape}"
            )
        self.final_estimator_ = clone(self.final_estimator).fit(oof, y)
        self.feature_names_ = list(self.base_models)
        return self

    def base_predictions(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        columns = self.input_columns or {}
        return np.column_stack(
            [
                m.predict(X[:, columns[name]] if name in columns else X)
                for name, m in self.base_models.items()
            ]
        )

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "final_estimator_")
        return self.final_estimator_.predict(self.base_predictions(X))


def walk_forward_meta(
    oof: pl.DataFrame, pred_columns: Sequence[str], final_estimator: RegressorMixin, target: str
) -> pl.DataFrame:
    """Out-of-sample predictions of the meta-learner itself.

    For every OOF fold after the first, a clone of ``final_estimator`` is fitted on the earlier
    folds' rows whose label ended before the fold starts, and predicts the fold. The result
    (column ``ensemble``) is what the ensemble would have said at the time.
    """
    parts = []
    for fold in oof["fold"].unique().sort().to_list()[1:]:
        block = oof.filter(pl.col("fold") == fold)
        start = block["date"].min()
        train = oof.filter((pl.col("fold") < fold) & (pl.col("label_end") < start))
        meta = clone(final_estimator).fit(
            train.select(pred_columns).to_numpy(), train[target].to_numpy()
        )
        parts.append(
            block.with_columns(
                ensemble=pl.Series(meta.predict(block.select(pred_columns).to_numpy()))
            )
        )
    return pl.concat(parts)
