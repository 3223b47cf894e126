"""The peer's protocol: its label and scores, and (acceptance 3 of issue 28) that nothing it
chooses reads the test period."""

from dataclasses import replace
from datetime import date

import numpy as np
import polars as pl
import pytest

from models.learning.protocol import (
    Periods,
    ProtocolData,
    Variant,
    centred_rank,
    holdout_scores,
    newey_west_t,
    next_close_returns,
    score,
    search,
)

PERIODS = Periods(date(2014, 12, 31), date(2016, 12, 31), date(2017, 1, 1), date(2018, 12, 31))


def test_qlib_label_is_next_close_to_the_one_after():
    prices = pl.DataFrame(
        {
            "symbol": ["A"] * 5,
            "date": pl.date_range(date(2020, 1, 1), date(2020, 1, 5), eager=True),
            "close": [10.0, 11.0, 12.1, 12.0, 15.0],
        }
    )
    out = next_close_returns(prices.lazy(), [1, 2]).collect()
    # Ref($close, -2) / Ref($close, -1) - 1 on day 0: 12.1 / 11 - 1
    np.testing.assert_allclose(out["ret_1"].to_numpy()[:3], [0.1, 12.0 / 12.1 - 1, 0.25])
    np.testing.assert_allclose(out["ret_2"][0], 12.0 / 11 - 1)
    assert out["end_1"][0] == date(2020, 1, 3) and out["ret_1"][3] is None


def test_newey_west_t():
    rng = np.random.default_rng(0)
    x = rng.normal(0.1, 1, 400)
    # no lags: the plain t of the mean
    np.testing.assert_allclose(newey_west_t(x, 0), x.mean() / x.std(ddof=1) * 20, rtol=1e-9)
    # overlapping sums (a 5-day label's daily ICs) are autocorrelated: NW widens the errors
    overlapping = np.convolve(rng.normal(0.02, 1, 404), np.ones(5), "valid")
    plain = overlapping.mean() / overlapping.std(ddof=1) * np.sqrt(len(overlapping))
    assert abs(newey_west_t(overlapping, 4)) < 0.6 * abs(plain)


def test_score_counts_pairs_and_dates():
    dates = np.repeat(np.arange("2020-01-01", "2020-01-11", dtype="datetime64[D]"), 10)
    label = np.tile(np.linspace(-1, 1, 10), 10)
    pred = label.copy()
    pred[:5] = np.nan  # unscored pairs, as a model that skips names
    s = score(dates, pred, label)
    assert s["rank_ic"] == pytest.approx(1.0) and s["n_pairs"] == 95 and s["n_dates"] == 10
    np.testing.assert_allclose(centred_rank(dates[:10], label[:10]), np.arange(1, 11) / 10 - 0.5)


def _panel(seed: int = 0, n_symbols: int = 12):
    """Weekly dates 2011-2018; the next-week label = 0.3 * f0 + noise, f1 a weaker signal."""
    rng = np.random.default_rng(seed)
    days = np.arange("2011-01-03", "2018-12-31", 7, dtype="datetime64[D]")
    dates = np.repeat(days, n_symbols)
    X = rng.normal(size=(len(dates), 4)).astype(np.float32)
    label = 0.3 * X[:, 0] + 0.1 * X[:, 1] + rng.normal(size=len(dates))
    end = dates + np.timedelta64(7, "D")
    sectors = np.tile(np.array(["a", "b", "c"]), len(dates) // 3 + 1)[: len(dates)]
    return dates, X, label, end, sectors, rng.lognormal(size=len(dates))


def _data(dates, X, label, end, sectors, liquidity):
    return ProtocolData(
        dates,
        X,
        ["f0", "f1", "f2", "f3"],
        {"qlib": (label, end), "slow": (label, end + np.timedelta64(14, "D"))},
        sectors=sectors,
        liquidity=liquidity,
        X_rank=np.column_stack([centred_rank(dates, X[:, j]) for j in range(4)]),
    )


TREES = {"n_estimators": 20, "num_leaves": 4, "learning_rate": 0.1, "min_child_samples": 20}


def _search(data, periods=PERIODS, min_t=0.0):
    base = Variant("lgb", "lightgbm", TREES)
    options = {"target": ["sector_rank"], "weights": ["recency", "liquidity"], "window_years": [2]}
    families = [
        Variant("ridge", "ridge", {"alpha": 10.0}, features="rank"),
        Variant("lgb_tuned", "lightgbm", tune_trials=2, family="lightgbm"),
    ]
    return search(data, base, options, families, periods, n_jobs=1, log=lambda m: None, min_t=min_t)


def test_rolling_origins_move_the_split_back_by_whole_valid_blocks():
    folds = Periods(folds=3).each_fold()
    assert [(f.train_end, f.valid_end) for f in folds] == [
        (date(2010, 12, 31), date(2012, 12, 31)),
        (date(2012, 12, 31), date(2014, 12, 31)),
        (date(2014, 12, 31), date(2016, 12, 31)),
    ]
    assert {(f.test_start, f.test_end, f.folds) for f in folds} == {
        (date(2017, 1, 1), date(2021, 4, 20), 1)
    }


@pytest.mark.parametrize(
    "periods, min_t", [(PERIODS, 0.0), (replace(PERIODS, folds=2), 1.0)], ids=["one", "folds"]
)
def test_perturbing_the_test_periods_labels_changes_no_choice(periods, min_t):
    dates, X, label, end, sectors, liquidity = _panel()
    result = _search(_data(dates, X, label, end, sectors, liquidity), periods, min_t)
    in_test = dates >= np.datetime64(PERIODS.test_start)
    shuffled = label.copy()
    shuffled[in_test] = np.random.default_rng(9).permutation(label[in_test]) * 5 - 1
    perturbed_data = _data(dates, X, shuffled, end, sectors, liquidity)
    perturbed = _search(perturbed_data, periods, min_t)
    # every data setting, member, hyper-parameter (Optuna's too), meta-learner and weight
    assert perturbed.choices() == result.choices()
    assert len(result.trials) == 1 + 4 + 2 and result.n_trials == len(result.trials) - 1 + 2
    np.testing.assert_array_equal(perturbed.ensemble.test_pred, result.ensemble.test_pred)
    # ... while the test period's figures do move: the perturbation reached the scorer
    labels = {"qlib": ("qlib", 1)}
    before = holdout_scores(_data(dates, X, label, end, sectors, liquidity), result, labels)
    after = holdout_scores(perturbed_data, perturbed, labels)
    assert before["qlib_rank_ic"][-1] > 0.1 and abs(after["qlib_rank_ic"][-1]) < 0.1


def test_an_earlier_origins_predictions_read_no_label_after_its_training_block():
    """With two folds the first fold's model is trained to 2012: shuffling every label after
    that changes none of its valid predictions (2013-2014), while the second fold's move."""
    from models.learning.protocol import run_variant, valid_rows

    periods = replace(PERIODS, folds=2)
    dates, X, label, end, sectors, liquidity = _panel(4)
    after = dates > np.datetime64(periods.fold(0).train_end)
    shuffled = label.copy()
    shuffled[after] = np.random.default_rng(1).permutation(label[after])
    variant = Variant("lgb", "lightgbm", TREES)
    trials = [
        run_variant(_data(dates, X, y, end, sectors, liquidity), variant, periods, 1)
        for y in (label, shuffled)
    ]
    rows = valid_rows(_data(dates, X, label, end, sectors, liquidity), periods)
    first = dates[rows] <= np.datetime64(periods.train_end)
    assert 0 < first.sum() < len(rows)
    np.testing.assert_array_equal(trials[0].valid_pred[first], trials[1].valid_pred[first])
    assert not np.allclose(trials[0].valid_pred[~first], trials[1].valid_pred[~first])


def test_a_rolling_window_and_recency_weights_see_only_the_training_block():
    dates, X, label, end, sectors, liquidity = _panel(1)
    data = _data(dates, X, label, end, sectors, liquidity)
    from models.learning.protocol import rows_for, sample_weights

    rows = rows_for(data, "slow", PERIODS, 2)
    assert data.labels["slow"][1][rows.train].max() <= np.datetime64(PERIODS.train_end)
    assert data.dates[rows.train].min() > np.datetime64("2012-12-30")
    w = sample_weights(data, replace(Variant("x"), weights="recency"), rows.train, PERIODS)
    assert w.mean() == pytest.approx(1.0) and w.min() / w.max() == pytest.approx(
        0.5 ** (2 / 3), rel=0.02
    )


def test_replaying_the_chosen_members_refits_them_as_chosen():
    from models.learning.protocol import replay

    dates, X, label, end, sectors, liquidity = _panel(2)
    data = _data(dates, X, label, end, sectors, liquidity)
    result = _search(data)
    again = replay(data, result.chosen_variants(), PERIODS, result.n_trials, 1, log=lambda m: None)
    for first, second in zip(result.members, again.members, strict=True):
        np.testing.assert_allclose(second.test_pred, first.test_pred)
    assert again.ensemble.weights == result.ensemble.weights
    assert again.n_trials == result.n_trials + len(result.members)


def test_every_family_fits_under_sample_weights():
    """The data settings chosen on the base (recency weights, say) reach every family: the net
    too (a quick protocol run on the shared set once failed at its fit)."""
    from models.learning.nets import TorchRegressor
    from models.learning.protocol import run_variant

    dates, X, label, end, sectors, liquidity = _panel(3)
    data = _data(dates, X, label, end, sectors, liquidity)
    net = {"hidden": 8, "layers": 1, "dropout": 0.0, "epochs": 30, "lr": 1e-2, "batch_size": 256}
    trial = run_variant(data, Variant("mlp", "mlp", net, weights="recency"), PERIODS, 1)
    assert np.isfinite(trial.test_pred).all() and trial.valid_score["rank_ic"] > 0.1
    # weights of 0 leave a row out of the fit: a target reversed on those rows changes nothing
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 1)).astype(np.float32)
    y = np.where(np.arange(4000) < 2000, x[:, 0], -x[:, 0])
    w = (np.arange(4000) < 2000).astype(float)
    fitted = TorchRegressor(hidden=8, layers=1, epochs=30, random_state=0).fit(x, y, w)
    assert np.corrcoef(fitted.predict(x), x[:, 0])[0, 1] > 0.95
    with pytest.raises(ValueError, match="sample_weight"):
        TorchRegressor().fit(x, y, -w)


def test_the_net_reads_an_infinite_input_as_missing():
    """A volume ratio over a zero-volume day is an infinity; the net standardises around it
    (it once turned a whole column into -3.4e38 and every prediction into NaN)."""
    from models.learning.nets import TorchRegressor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 3)).astype(np.float32)
    y = X[:, 0] + 0.1 * rng.normal(size=3000)
    X[::50, 1] = np.inf
    fitted = TorchRegressor(hidden=8, layers=1, epochs=20, random_state=0).fit(X, y)
    pred = fitted.predict(X)
    assert np.isfinite(fitted.mean_).all() and np.isfinite(pred).all()
    assert np.corrcoef(pred, X[:, 0])[0, 1] > 0.8


def test_with_an_unreachable_t_every_choice_falls_back_to_the_simplest():
    """min_t guards every choice: the data settings (the base), each family's member (its
    first trial: the base for LightGBM, though a recency-weighted or tuned one may score
    higher on valid) and the meta-learner (the plain mean)."""
    data = _data(*_panel(10))
    result = _search(data, replace(PERIODS, folds=2), min_t=100.0)
    assert result.data_variant.name == "lgb"
    assert [t.variant.name for t in result.members] == ["lgb", "ridge"]
    assert result.ensemble.meta == "mean"
    scores = {t.variant.name: t.valid_score["rank_ic"] for t in result.trials}
    # recency weights scored higher on valid, and lost: not by a paired t of 100
    assert max(scores, key=scores.get) == "lgb+weights=recency"
