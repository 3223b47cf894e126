"""The shared LOBSTER sample (NASDAQ, 2012-06-21: AAPL 1 level, GOOG 1, 5 and 10 levels)
through the order-book source and contract as a user's files would go: every pair passes and
every line is ingested. Skips when the folder is absent: the product does not depend on it."""

from pathlib import Path

import polars as pl
import pytest

from data_contracts.lob import check_lob
from models.microstructure.reader import book_frame, events_frame
from pipelines.lob import FileLobSource

SHARED_LOBSTER = Path(__file__).resolve().parents[3] / "shared" / "data" / "lobster-2012-06-21"
pytestmark = pytest.mark.skipif(
    not SHARED_LOBSTER.is_dir(), reason=f"shared LOBSTER files not found at {SHARED_LOBSTER}"
)
# the shared folder's README: messages (= order-book rows) per pair
LINES = {("AAPL", 1): 118_497, ("GOOG", 1): 49_482, ("GOOG", 5): 112_673, ("GOOG", 10): 147_916}


def test_every_shared_pair_is_ingested_whole():
    source = FileLobSource(path=str(SHARED_LOBSTER))
    pairs = source.all_pairs()
    assert {(p.ticker, p.levels) for p in pairs} == set(LINES)
    # one partition per ticker-day: the deepest file of each
    assert {k: p.levels for k, p in source.pairs().items()} == {
        "AAPL_2012-06-21": 1,
        "GOOG_2012-06-21": 10,
    }
    for pair in pairs:
        checked = check_lob(source.load(pair))
        events = events_frame(checked.messages, pair.day)
        book = book_frame(checked.book, pair.levels)
        assert checked.rows == len(events) == len(book) == LINES[(pair.ticker, pair.levels)]
        assert events["ts"].is_sorted() and events["halt_state"].max() == 0  # no halt that day
        assert set(events["type"].unique()) == {1, 2, 3, 4, 5}
        # executions are the same at every depth (the README's check, on our typed frames)
        execs = events.filter(pl.col("type").is_in([4, 5])).select("t_ns", "size", "price")
        if pair.ticker == "GOOG":
            assert len(execs) == 7_765 + 3_913
        # the dummies of unoccupied levels became nulls, nowhere on this liquid day
        assert book.null_count().sum_horizontal()[0] == 0
