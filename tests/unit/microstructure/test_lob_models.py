"""Short-horizon models: the split is in time and purged, dead zones come from training rows
only, every model and baseline is scored on the same test rows, the tick scorers give what
the models give."""

from datetime import date

import numpy as np
import polars as pl
import pytest
from conftest import synthetic_lob

from models.microstructure.features import (
    BookArrays,
    FeatureParams,
    event_features,
    features_frame,
    model_features,
)
from models.microstructure.labels import labels_frame, parse_horizons
from models.microstructure.models import (
    MODEL_NAMES,
    OFIRegressionClassifier,
    assemble,
    classes,
    dead_zone,
    fit_models,
    time_split,
)
from models.microstructure.reader import MESSAGE_COLUMNS, book_columns, book_frame, events_frame
from models.microstructure.replay import LinearScorer, TreeScorer

PARAMS = FeatureParams(
    levels=3,
    ofi_windows=(5, 20),
    trade_windows=(20, 60),
    rate_windows_s=(1, 3),
    vol_windows_s=(2, 5),
    kyle_trades=20,
)
HORIZONS = ["k5", "k20", "s2"]


@pytest.fixture(scope="module")
def day():
    messages, book = synthetic_lob(n=2600, levels=3, seed=21)
    m = pl.DataFrame([list(r) for r in messages], schema=list(MESSAGE_COLUMNS), orient="row").cast(
        {"time": pl.Float64, **{c: pl.Int64 for c in MESSAGE_COLUMNS[1:]}}
    )
    events = events_frame(m, date(2012, 6, 21))
    book = book_frame(pl.DataFrame(book, schema=book_columns(3), orient="row"), 3)
    key = pl.lit("TEST_2012-06-21").alias("lob_partition")
    feats = features_frame(events, book, PARAMS).with_columns(key)
    labels = labels_frame(events, book, parse_horizons(HORIZONS, {})).with_columns(key)
    data = assemble(feats, labels, book.with_columns(key), model_features(PARAMS), HORIZONS, 3)
    return events, book, data


def test_split_is_in_time_and_purged_by_each_label(day):
    _, _, data = day
    for h in HORIZONS:
        labelled = np.isfinite(data.returns[h]) & (data.pos_in_day >= 19)
        s = time_split(data.ts_ns, data.day, data.ends_ns[h], labelled, 0.6, 0.2)
        assert data.ts_ns[s.train].max() < s.valid_start_ns <= data.ts_ns[s.valid].min()
        assert data.ts_ns[s.valid].max() < s.boundary_ns <= data.ts_ns[s.test].min()
        # no label of a training (validation) row reads into the validation (test) block
        assert data.ends_ns[h][s.train].max() < s.valid_start_ns
        assert data.ends_ns[h][s.valid].max() < s.boundary_ns
        assert s.purged > 0
        span = data.ts_ns.max() - data.ts_ns.min()
        assert abs((s.boundary_ns - data.ts_ns.min()) / span - 0.6) < 1e-6


def test_dead_zone_is_the_training_quantile():
    r = np.array([0.0, 1e-5, -2e-5, 3e-5, np.nan, -4e-5, 5e-5])
    assert dead_zone(r, 0.5) == pytest.approx(np.quantile(np.abs(r[np.isfinite(r)]), 0.5) * 1e4)
    np.testing.assert_array_equal(
        classes(np.array([-3e-4, -1e-4, 0, 1e-4, 3e-4]), 2.0), [-1, 0, 0, 0, 1]
    )


def test_every_model_is_scored_on_the_same_test_rows(day):
    _, _, data = day
    out = fit_models(
        data, HORIZONS, MODEL_NAMES, window=20,
        deeplob={"epochs": 1, "max_train_windows": 300, "batch_size": 64, "channels": 4, "hidden": 8, "threads": 1},
        n_jobs=1,
    )  # fmt: skip
    table = pl.DataFrame(out.table)
    assert table.height == len(MODEL_NAMES) * len(HORIZONS)
    assert table.group_by("horizon").agg(pl.col("n_test").n_unique())["n_test"].to_list() == [1] * 3
    assert table["macro_f1"].is_between(0, 1).all() and table["accuracy"].is_between(0, 1).all()
    for h in HORIZONS:
        split = out.splits[h]
        y = classes(np.nan_to_num(data.returns[h]), out.dead_zones[h])
        # the dead zone makes (at least, with many unchanged mids) a third of the *training*
        # rows stationary, whatever the test rows hold
        share = np.mean(y[split.train] == 0)
        assert share >= 1 / 3 - 0.01
        if out.dead_zones[h] > 0:
            assert share == pytest.approx(1 / 3, abs=0.01)
        # persistence forecasts the last ended label's class
        persistence = classes(np.nan_to_num(data.past_returns[h][split.test]), out.dead_zones[h])
        np.testing.assert_array_equal(out.test_predictions[("persistence", h)], persistence)
        majority = out.fitted[("majority", h)].predict(data.X[split.test][:1])[0]
        assert majority == np.bincount(y[split.train] + 1).argmax() - 1


def test_cks_regression_reproduces_the_training_class_shares_and_its_linear_form():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 4)) * [100, 50, 10, 1]
    ret = 1e-5 * (X[:, 0] / 100 - 0.5 * X[:, 1] / 50) + rng.normal(0, 5e-6, 4000)
    y = classes(ret, 0.05)
    model = OFIRegressionClassifier().fit(X, y, returns=ret)
    pred = model.predict(X)
    for c in (-1, 0, 1):
        assert np.mean(pred == c) == pytest.approx(np.mean(y == c), abs=0.002)
    assert np.mean(pred == y) > 0.6
    w, b = model.linear()
    np.testing.assert_allclose(X @ w + b, model.forecast(X), rtol=1e-9, atol=1e-15)
    scorer = LinearScorer(w, b, model.lower_, model.upper_)
    proba = np.array([scorer.score(list(row)).copy() for row in X[:500]])
    np.testing.assert_array_equal(proba, model.predict_proba(X[:500]))


def test_tree_scorer_equals_lightgbm(day):
    from models.microstructure.models import fit_lightgbm

    _, _, data = day
    y = classes(np.nan_to_num(data.returns["k5"]), 0.1)
    model = fit_lightgbm(data.X[:1500], y[:1500], data.X[1500:1800], y[1500:1800], n_jobs=1)
    scorer = TreeScorer(model.booster_, data.X.shape[1])
    assert scorer._fast is not None  # the C API path, not the fallback
    fast = np.array([scorer.score(row).copy() for row in data.X[1800:2100]])
    np.testing.assert_allclose(fast, model.predict_proba(data.X[1800:2100]), rtol=1e-12, atol=1e-15)
    scorer.close()


def test_event_features_feed_the_models_in_name_order(day):
    events, book, data = day
    values = event_features(BookArrays.from_frames(events, book, 3), PARAMS)
    names = model_features(PARAMS)
    first = int(np.argmax(np.isfinite(data.X).all(axis=1)))
    np.testing.assert_allclose(data.X[first], [values[n][first] for n in names])


def test_the_replay_paces_events_at_the_asked_speed(day):
    from models.microstructure.replay import replay

    events, book, _ = day
    arrays = BookArrays.from_frames(events, book, 3)
    now = [0]
    slept = []

    def clock() -> int:
        return now[0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += int(seconds * 1e9)

    n = 0
    for scored in replay(
        arrays, PARAMS, [0, 1], lambda v: np.array(v), speed=10.0, clock=clock, sleep=sleep
    ):
        n += 1
        # never ahead of the paced schedule
        assert now[0] >= (scored.t_ns - arrays.t_ns[0]) / 10.0 - 1
    assert n == len(arrays)
    span = (arrays.t_ns[-1] - arrays.t_ns[0]) / 1e9
    assert sum(slept) == pytest.approx(span / 10.0, rel=1e-6)
