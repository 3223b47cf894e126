from datetime import date

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LinearRegression, Ridge

from models.learning.stacking import StackedEnsemble, out_of_fold_predictions, walk_forward_meta


def test_oof_predictions_come_from_models_that_never_saw_the_row():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.normal(0, 0.1, 300)
    splits = [(np.arange(0, 100), np.arange(100, 200)), (np.arange(0, 200), np.arange(200, 300))]
    rows, fold, preds = out_of_fold_predictions({"ridge": Ridge(alpha=1.0)}, X, y, splits)
    assert (rows == np.arange(100, 300)).all() and (fold == np.repeat([0, 1], 100)).all()
    manual = Ridge(alpha=1.0).fit(X[:100], y[:100]).predict(X[100:200])
    np.testing.assert_allclose(preds[:100, 0], manual)


def test_stacked_ensemble_fits_meta_on_oof_and_predicts_from_features():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    y = X[:, 0] + X[:, 1]
    a = LinearRegression().fit(X[:, :1], y)  # sees only the first column
    bases = {"a": _Column(a, 0), "b": _Column(LinearRegression().fit(X[:, 1:], y), 1)}
    oof = np.column_stack([m.predict(X) for m in bases.values()])
    ens = StackedEnsemble(bases, LinearRegression(positive=True)).fit(oof, y)
    np.testing.assert_allclose(ens.predict(X), y, atol=1e-8)
    assert (ens.final_estimator_.coef_ >= 0).all()
    with pytest.raises(ValueError, match="one column of OOF"):
        StackedEnsemble(bases, LinearRegression()).fit(oof[:, :1], y)


class _Column:
    def __init__(self, model, i):
        self.model, self.i = model, i

    def predict(self, X):
        return self.model.predict(np.asarray(X)[:, [self.i]])


def test_walk_forward_meta_uses_only_earlier_folds():
    dates = pl.date_range(date(2020, 1, 1), date(2020, 12, 31), eager=True)[:300]
    fold = np.repeat([0, 1, 2], 100)
    rng = np.random.default_rng(2)
    p = rng.normal(size=300)
    target = np.where(fold == 2, -p, p)  # the relation flips in the last fold
    oof = pl.DataFrame(
        {"date": dates, "label_end": dates, "fold": fold, "pred_x": p, "target": target}
    )
    out = walk_forward_meta(oof, ["pred_x"], LinearRegression(), "target")
    assert set(out["fold"].unique()) == {1, 2}
    last = out.filter(pl.col("fold") == 2)
    # fitted on folds 0-1 (slope +1), so it cannot know the flip: predictions equal +p
    np.testing.assert_allclose(last["ensemble"].to_numpy(), last["pred_x"].to_numpy(), atol=1e-8)
