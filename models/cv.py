"""Time-ordered, purged cross-validation on a panel with many symbols per date.

skfolio's ``WalkForward`` splits a sequence of observations; a panel has one observation per
(symbol, date), so we split the sorted unique dates with it and map the date blocks back to
rows. On top of skfolio's positional purge we purge exactly: a training row is dropped when its
label's horizon ends on or after the first test date, so no training label overlaps the test.
In a walk-forward scheme nothing after a test block is ever trained on, so no embargo is needed.
"""

import numpy as np
from skfolio.model_selection import WalkForward

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
