"""Time-ordered, purged cross-validation on a panel with many symbols per date.

skfolio's ``WalkForward`` and ``CombinatorialPurgedCV`` split a sequence of observations; a
panel has one observation per (symbol, date), so we split the sorted unique dates with them and
map the date blocks back to rows. On top of skfolio's positional purge we purge exactly by each
label's horizon: a training row is dropped when the interval ``[date, label_end]`` of its label
overlaps a test block. In walk-forward nothing after a test block is trained on, so no embargo
is needed; in combinatorial purged CV training rows right after a test block are embargoed.
"""

import numpy as np
from skfolio.model_selection import CombinatorialPurgedCV, WalkForward

from models.types import Split


def purged_walk_forward(
    dates: np.ndarray,
    label_end: np.ndarray,
    *,
    n_splits: int,
    train_size: int,
    purge: int = 0,
) -> list[Split]:
    """Expanding-window walk-forward splits of panel rows.

    Parameters
    ----------
    dates, label_end : arrays of ``datetime64`` (one per row)
        The date of each row's features and the date its label's horizon ends.
    n_splits : int
        Number of consecutive, equal test blocks after the first training window.
    train_size : int
        Number of unique dates in the first training window.
    purge : int
        Trading days dropped between a training window and its test block (usually the label
        horizon); the exact label-end purge is applied on top.

    Returns
    -------
    list of (train_rows, test_rows)
        Row positions; every test date lies after every training date of its split.
    """
    unique = np.unique(dates)
    if train_size >= len(unique):
        raise ValueError(f"train_size {train_size} leaves no test dates out of {len(unique)}")
    test_size = (len(unique) - train_size - purge) // n_splits
    if test_size < 1:
        raise ValueError(
            f"{len(unique)} dates cannot hold {n_splits} test blocks after {train_size}"
        )
    walk = WalkForward(
        test_size=test_size, train_size=train_size, expand_train=True, purged_size=purge
    )
    splits: list[Split] = []
    for train_d, test_d in walk.split(unique.reshape(-1, 1)):
        test_start = unique[test_d[0]]
        train = np.isin(dates, unique[train_d]) & (label_end < test_start)
        test = np.isin(dates, unique[test_d])
        splits.append((np.flatnonzero(train), np.flatnonzero(test)))
    return splits[:n_splits]


def purged_combinatorial(
    dates: np.ndarray,
    label_end: np.ndarray,
    *,
    n_folds: int,
    n_test_folds: int = 2,
    purge: int = 0,
    embargo: int = 0,
) -> list[Split]:
    """Combinatorial purged CV (Lopez de Prado, ch. 12) over the panel's dates.

    Every choice of ``n_test_folds`` of ``n_folds`` date blocks is a test set; a training row is
    kept only when its label interval ``[date, label_end]`` ends before each test block starts
    or starts more than ``embargo`` trading days after the block ends.
    """
    unique = np.unique(dates)
    cv = CombinatorialPurgedCV(
        n_folds=n_folds, n_test_folds=n_test_folds, purged_size=purge, embargo_size=embargo
    )
    day = np.searchsorted(unique, dates)
    end_day = np.searchsorted(unique, label_end)
    splits: list[Split] = []
    for train_d, test_blocks in cv.split(unique.reshape(-1, 1)):
        train = np.isin(day, train_d)
        test = np.zeros(len(dates), dtype=bool)
        for block in test_blocks:
            lo, hi = block[0], block[-1]
            test |= (day >= lo) & (day <= hi)
            train &= (end_day < lo) | (day > hi + embargo)
        splits.append((np.flatnonzero(train), np.flatnonzero(test)))
    return splits
