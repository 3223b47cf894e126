import numpy as np
import pytest

from models.learning.cv import purged_walk_forward
from models.learning.labels import forward_returns


def _rows(panel, horizon=5):
    labels = forward_returns(panel.lazy(), horizon).collect().sort("date", "symbol")
    return labels["date"].to_numpy(), labels["label_end"].to_numpy()


def test_splits_are_time_ordered_and_purged_by_label_end(panel):
    dates, ends = _rows(panel)
    splits = purged_walk_forward(dates, ends, n_splits=4, train_size=150, purge=5)
    assert len(splits) == 4
    previous_test_end = None
    for train, test in splits:
        assert dates[train].max() < dates[test].min()
        # no training label reaches into the test block
        assert ends[train].max() < dates[test].min()
        if previous_test_end is not None:
            assert dates[test].min() > previous_test_end
        previous_test_end = dates[test].max()
    # expanding: each training set contains the previous one
    assert all(np.isin(a[0], b[0]).all() for a, b in zip(splits, splits[1:], strict=False))


def test_purge_removes_exactly_the_overlapping_labels(panel):
    dates, ends = _rows(panel, horizon=10)
    (train, test), *_ = purged_walk_forward(dates, ends, n_splits=2, train_size=200, purge=0)
    unique = np.unique(dates)
    first_test = dates[test].min()
    candidates = np.isin(dates, unique[:200])
    dropped = candidates & ~np.isin(np.arange(len(dates)), train)
    assert dropped.sum() > 0
    assert (ends[dropped] >= first_test).all()
    assert (ends[train] < first_test).all()


def test_too_few_dates_is_an_error(panel):
    dates, ends = _rows(panel)
    with pytest.raises(ValueError, match="train_size"):
        purged_walk_forward(dates, ends, n_splits=2, train_size=10_000)


def test_combinatorial_purged_cv_purges_and_embargoes(panel):
    from models.learning.cv import purged_combinatorial

    dates, ends = _rows(panel, horizon=5)
    unique = np.unique(dates)
    splits = purged_combinatorial(dates, ends, n_folds=6, n_test_folds=2, purge=5, embargo=5)
    assert len(splits) == 15  # C(6, 2)
    for train, test in splits:
        test_days = np.unique(np.searchsorted(unique, dates[test]))
        # contiguous test blocks
        blocks = np.split(test_days, np.flatnonzero(np.diff(test_days) > 1) + 1)
        start_day = np.searchsorted(unique, dates[train])
        end_day = np.searchsorted(unique, ends[train])
        for block in blocks:
            lo, hi = block[0], block[-1]
            # no training label interval touches a test block, nor starts in its embargo
            assert not ((start_day <= hi + 5) & (end_day >= lo)).any()
        assert not np.isin(train, test).any()


def _gap_dataset(panel, max_gap_days):
    import polars as pl

    from models.learning.dataset import assemble

    features = panel.sort("symbol", "date").select(
        "symbol", "date", f=(pl.col("close").pct_change()).over("symbol")
    )
    return assemble(features, forward_returns(panel.lazy(), 5, max_gap_days=max_gap_days).collect())


def _fold_dates(ds, splits):
    return [
        (np.unique(ds.dates[tr]).tolist(), np.unique(ds.dates[te]).tolist()) for tr, te in splits
    ]


def test_a_symbol_missing_a_year_leaves_the_folds_as_they_are_without_it():
    import polars as pl
    from conftest import random_walk_panel

    from models.learning.training import cv_problems, inner_splits, outer_splits, tuning_window

    panel = random_walk_panel(n_symbols=6, n_days=900, seed=3)
    dates = panel["date"].unique().sort()
    hole = (dates[80], dates[340])  # a year and more of S02's history lost by the vendor
    gapped = panel.filter(~((pl.col("symbol") == "S02") & pl.col("date").is_between(*hole)))
    without = panel.filter(pl.col("symbol") != "S02")

    ds = _gap_dataset(gapped, max_gap_days=10)
    s02 = ds.frame.filter(pl.col("symbol") == "S02")
    # no label spans the hole: each ends within horizon + max_gap_days business days
    spans = np.busday_count(s02["date"].to_numpy(), s02["label_end"].to_numpy())
    assert spans.max() <= 5 + 10
    assert s02.filter(pl.col("date") < hole[0])["label_end"].max() < hole[0]
    # rows on both sides of the hole keep their labels
    assert s02.filter(pl.col("date") > hole[1]).height > 500

    reference = _gap_dataset(without, max_gap_days=10)
    folds = {}
    for name, d in (("gapped", ds), ("without", reference)):
        tune_end, mask = tuning_window(d, 0.5)
        folds[name] = (
            _fold_dates(d, inner_splits(d, mask, 3, horizon=5)),
            _fold_dates(d, outer_splits(d, tune_end, 4, horizon=5)),
        )
    assert folds["gapped"] == folds["without"]
    # the old purge, the longest label seen, spans the hole and swallows every fold: the
    # error a user met on a real download ("622 dates cannot hold 3 test blocks after 311")
    ungapped_rule = _gap_dataset(gapped, max_gap_days=None)
    tune_end, mask = tuning_window(ungapped_rule, 0.5)
    with pytest.raises(ValueError, match="442 dates cannot hold 3 test blocks after 221"):
        inner_splits(ungapped_rule, mask, 3)
    assert (
        cv_problems(
            len(np.unique(ds.dates)),
            horizon=5,
            tune_fraction=0.5,
            inner_splits=3,
            outer_splits=4,
            test_days=126,
        )
        == []
    )


def test_impossible_cv_settings_name_the_keys_and_the_number_of_dates():
    from models.learning.training import cv_problems

    problems = cv_problems(
        300, horizon=5, tune_fraction=0.5, inner_splits=30, outer_splits=40, test_days=200
    )
    keys = [p.split(":")[0] for p in problems]
    assert keys == ["cv.inner_splits", "cv.test_days", "cv.outer_splits"]
    assert all("there are 300 dates" in p for p in problems)
    assert "lower cv.inner_splits" in problems[0] and "data.start_date" in problems[0]
