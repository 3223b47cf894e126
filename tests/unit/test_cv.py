import numpy as np
import pytest

from models.cv import purged_walk_forward
from models.labels import forward_returns


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
    from models.cv import purged_combinatorial

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
