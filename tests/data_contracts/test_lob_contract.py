"""LOBSTER pairs: file names, pairing, typing, and the contract that names every planted fault
by file, line and rule (and refuses the pair whole)."""

import gzip
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from conftest import synthetic_lob, write_lobster

from data_contracts import ContractViolation
from data_contracts.lob import check_lob
from models.microstructure.reader import (
    book_frame,
    events_frame,
    pair_files,
    parse_name,
)
from pipelines.lob import FileLobSource

DAY = date(2012, 6, 21)


@pytest.fixture(scope="module")
def day():
    return synthetic_lob(n=600, levels=3, seed=3, halt_at=300)


def _pair(folder, messages, book, levels=3, gz=False, ticker="TEST"):
    write_lobster(folder, ticker, messages, book, levels, gz=gz)
    source = FileLobSource(path=str(folder))
    (pair,) = source.pairs().values()
    return source, pair


def _lines(messages, book):
    msg = [f"{m[0]:.9f},{m[1]},{m[2]},{m[3]},{m[4]},{m[5]}" for m in messages]
    return msg, [",".join(str(v) for v in row) for row in book]


def _refused(folder, msg, book, levels=3, gz=False) -> list[str]:
    source, pair = _pair(folder, msg, book, levels, gz)
    with pytest.raises(ContractViolation) as err:
        check_lob(source.load(pair))
    return [str(v) for v in err.value.violations]


def test_names_pairs_and_depth_choice(tmp_path):
    name = parse_name("GOOG_2012-06-21_34200000_57600000_orderbook_10.csv.gz")
    assert (name.ticker, name.day, name.kind, name.levels, name.partition) == (
        "GOOG",
        DAY,
        "orderbook",
        10,
        "GOOG_2012-06-21",
    )
    assert (
        parse_name("prices.csv") is None and parse_name("GOOG_2012-13-01_1_2_message_1.csv") is None
    )
    files = [
        f"/d/GOOG_2012-06-21_34200000_57600000_{kind}_{n}.csv.gz"
        for n in (1, 5, 10)
        for kind in ("message", "orderbook")
    ] + ["/d/AAPL_2012-06-21_34200000_57600000_message_1.csv", "/d/notes.txt"]
    deepest = pair_files(files)
    assert sorted(deepest) == ["AAPL_2012-06-21", "GOOG_2012-06-21"]
    assert deepest["GOOG_2012-06-21"].levels == 10
    assert deepest["AAPL_2012-06-21"].book is None  # its partner is missing: kept, to be named
    assert pair_files(files, depth=5)["GOOG_2012-06-21"].levels == 5
    assert pair_files(files, depth=50)["GOOG_2012-06-21"].levels == 10


def test_clean_pair_types_prices_times_dummies_and_halts(tmp_path, day):
    messages, book = day
    source, pair = _pair(tmp_path, messages, book, gz=True)
    checked = check_lob(source.load(pair))
    assert checked.rows == len(messages)  # rows in = rows kept
    events = events_frame(checked.messages, DAY)
    frame = book_frame(checked.book, 3)
    assert len(events) == len(frame) == len(messages)
    # prices in dollars, empty levels null in price and size
    np.testing.assert_allclose(
        frame["ask_price_1"].drop_nulls().to_numpy(),
        book[:, 0][book[:, 0] != 9_999_999_999] / 10_000,
    )
    empty = book[:, 4] == 9_999_999_999  # ask level 2
    assert frame["ask_price_2"].is_null().to_numpy().tolist() == empty.tolist()
    assert frame["ask_size_2"].is_null().to_numpy().tolist() == empty.tolist()
    # exchange time: seconds after midnight in New York (EDT in June)
    first = events["ts"][0]
    expected = datetime(2012, 6, 21, 9, 30, tzinfo=ZoneInfo("America/New_York")).timestamp()
    assert abs(first.timestamp() - expected - (messages[0][0] - 34_200)) < 1e-6
    assert events["t_ns"][0] == round(messages[0][0] * 1e9)
    # the halt is a state: halted from the type-7 price -1, quoting from 0, trading from 1
    state = events["halt_state"].to_list()
    assert state[299] == 0 and state[300:305] == [1] * 5 and state[305:310] == [2] * 5
    assert state[310:] == [0] * (len(state) - 310)
    assert events.filter(pl.col("type") == 7)["price"].null_count() == 3
    # executions of sell orders are buyer-initiated
    execs = events.filter(pl.col("type").is_in([4, 5]))
    assert (execs["trade_sign"] == -execs["direction"]).all()


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("crossed", "the book must not be crossed: best ask above best bid"),
        ("time", "time must never decrease"),
        ("negative_size", "size must be positive (halts excepted)"),
        ("unknown_type", "must be a known LOBSTER event type (1-7)"),
        ("off_grid", "price must lie on the tick grid"),
    ],
)
def test_each_planted_fault_is_named_with_file_and_line(tmp_path, day, fault, expected):
    messages, book = day
    msg, bk = _lines(messages, book)
    line = 137  # 1-based
    fields = msg[line - 1].split(",")
    row = bk[line - 1].split(",")
    if fault == "crossed":  # best ask below best bid on that line
        row[0] = str(int(row[2]) - 100)
        bk[line - 1] = ",".join(row)
        where = "orderbook"
    elif fault == "time":
        fields[0] = f"{float(fields[0]) - 5:.9f}"
        msg[line - 1] = ",".join(fields)
        where = "message"
    elif fault == "negative_size":
        fields[3] = "-" + fields[3]
        msg[line - 1] = ",".join(fields)
        where = "message"
    elif fault == "unknown_type":
        fields[1] = "9"
        msg[line - 1] = ",".join(fields)
        where = "message"
    else:  # a price a third of a cent off the grid
        fields[4] = str(int(fields[4]) + 33)
        msg[line - 1] = ",".join(fields)
        where = "message"
    found = _refused(tmp_path, msg, bk)
    match = [v for v in found if expected in v]
    assert match, found
    assert f"first bad row is row {line} of " in match[0], match
    assert f"_{where}_3.csv" in match[0], match


def test_mismatched_line_counts_refuse_the_pair(tmp_path, day):
    msg, bk = _lines(*day)
    (found,) = _refused(tmp_path, msg, bk[:-7])
    assert "mismatched pair: 600 message lines against 593 order-book lines" in found
    assert "TEST_2012-06-21_34200000_57600000_message_3.csv" in found


def test_truncated_gzip_refuses_the_pair(tmp_path, day):
    source, pair = _pair(tmp_path, *day, gz=True)
    path = tmp_path / pair.book.split("/")[-1]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ContractViolation) as err:
        check_lob(source.load(pair))
    (found,) = [str(v) for v in err.value.violations]
    assert "is a truncated or corrupt gzip file" in found and str(path) in found


def test_missing_partner_wrong_width_and_bad_values_are_named(tmp_path, day):
    msg, bk = _lines(*day)
    write_lobster(tmp_path / "a", "TEST", msg, bk, 3)
    (tmp_path / "a" / "TEST_2012-06-21_34200000_57600000_orderbook_3.csv").unlink()
    source = FileLobSource(path=str(tmp_path / "a"))
    with pytest.raises(ContractViolation, match="has no orderbook file beside it"):
        check_lob(source.load(source.pairs()["TEST_2012-06-21"]))
    # a 3-level name with a 2-level book
    narrow = [",".join(r.split(",")[:8]) for r in bk]
    assert any(
        "a 3-level order book (the file name's depth) has 12" in v
        for v in _refused(tmp_path / "b", msg, narrow)
    )
    # a size that is not a number, on line 42
    bad = list(msg)
    f = bad[41].split(",")
    bad[41] = ",".join([*f[:3], "12x", *f[4:]])
    (found,) = _refused(tmp_path / "c", bad, bk)
    assert "column 'size' must be a number" in found and "row 42 of" in found and "'12x'" in found


def test_executions_outside_the_book_and_shuffled_levels_are_named(tmp_path, day):
    messages, book = day
    msg, bk = _lines(messages, book)
    line = next(i for i in range(50, len(messages)) if messages[i][1] == 4) + 1
    f = msg[line - 1].split(",")
    f[4] = str(int(f[4]) + 300 * (1 if int(f[5]) == -1 else -1))  # away from the best
    msg[line - 1] = ",".join(f)
    row_line = next(i for i in range(50, len(book)) if book[i][8] != 9_999_999_999) + 1
    r = bk[row_line - 1].split(",")
    r[0], r[4] = r[4], r[0]  # ask levels 1 and 2 swapped
    bk[row_line - 1] = ",".join(r)
    found = _refused(tmp_path, msg, bk)
    assert any(
        "an execution must be at a price that was in the book" in v and f"row {line} of" in v
        for v in found
    ), found
    assert any(
        "ask levels must rise" in v and f"row {row_line} of" in v and "orderbook" in v
        for v in found
    ), found


def test_a_refused_pair_yields_nothing_but_the_violations(tmp_path, day):
    msg, bk = _lines(*day)
    fields = msg[9].split(",")
    fields[1] = "8"
    msg[9] = ",".join(fields)
    source, pair = _pair(tmp_path, msg, bk)
    try:
        check_lob(source.load(pair))
    except ContractViolation as err:
        assert err.contract == "lob_book" and len(err.violations) == 1
    else:
        pytest.fail("an unknown type passed the contract")


def test_gzip_and_plain_read_the_same(tmp_path, day):
    a = check_lob(FileLobSource().load(_pair(tmp_path / "gz", *day, gz=True)[1]))
    b = check_lob(FileLobSource().load(_pair(tmp_path / "csv", *day)[1]))
    assert a.messages.equals(b.messages) and a.book.equals(b.book)
    assert gzip.open(a.raw.message_file).read(10)  # really gzip
