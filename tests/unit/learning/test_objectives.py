"""The net-return tuning objective: the top-k book's net return against a plain loop, and a
tuning problem scored by it."""

import numpy as np
from numpy.testing import assert_allclose

from models.learning.objectives import BookScorer, book_net_return


def test_book_net_return_by_hand():
    rng = np.random.default_rng(0)
    n_days, n_names, k, every = 23, 12, 3, 5
    dates = np.repeat(np.arange(n_days), n_names).astype("datetime64[D]")
    symbols = np.tile(np.arange(n_names), n_days)
    pred, label = rng.normal(size=(2, len(dates)))
    costs = rng.uniform(1e-4, 1e-3, size=len(dates))
    held, net = {}, []
    for day in range(0, n_days, every):
        rows = np.flatnonzero(dates == np.datetime64(day, "D"))
        top = rows[np.argsort(-pred[rows])[:k]]
        book = {int(symbols[r]): costs[r] for r in top}
        cost = sum(c for s, c in book.items() if s not in held)
        cost += sum(c for s, c in held.items() if s not in book)
        net.append(label[top].mean() - cost / k)
        held = book
    got = book_net_return(dates, pred, label, symbols, costs, k, every)
    assert_allclose(got, np.mean(net) * 252 / every)
    # dearer trading scores lower; the scorer picks the fold's rows
    assert book_net_return(dates, pred, label, symbols, costs * 10, k, every) < got
    scorer = BookScorer(symbols, costs, k, every)
    rows = np.arange(len(dates))
    assert_allclose(scorer(dates, pred, label, rows), got)
    assert scorer.identity() != BookScorer(symbols, costs * 2, k, every).identity()
