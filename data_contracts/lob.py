"""The contract of a LOBSTER message/order-book pair: file-level refusals, then the Great
Expectations suite ``suites/lob_book.json`` on columns derived from both files line by line.

An order book is a sequence: a row set aside would leave every later book row inconsistent
with the messages before it. So there is no quarantine here: any violation refuses the pair
whole, and the asset writes nothing of it. Every violation names the file, the line (both files
have no header, and line N of one belongs to line N of the other) and the rule.
"""

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from data_contracts.suite import ContractViolation, Report, Violation, run_suite
from models.microstructure.reader import DUMMY, EVENT_TYPES, MESSAGE_COLUMNS, TICK, book_columns

CONTRACT = "lob_book"
MESSAGE_DTYPES = {"time": pl.Float64} | {c: pl.Int64 for c in MESSAGE_COLUMNS[1:]}


@dataclass
class RawLob:
    """One pair as read: raw frames (``None`` when a file could not be read; columns in file
    order, any dtype) and the file-level problems the reader met."""

    ticker: str
    day: date
    levels: int
    message_file: str
    book_file: str
    messages: pl.DataFrame | None
    book: pl.DataFrame | None
    problems: list[Violation] = field(default_factory=list)


@dataclass
class CheckedLob:
    """A pair that passed: the integer frames under their names, and the suite's report."""

    raw: RawLob
    messages: pl.DataFrame  # MESSAGE_COLUMNS, time Float64, the rest Int64
    book: pl.DataFrame  # book_columns(levels), Int64
    report: Report

    @property
    def rows(self) -> int:
        return len(self.messages)


def _refuse(raw: RawLob, rule: str, file: str | None = None, row=None, value=None, count=None):
    return Violation(rule, None, file or raw.message_file, row, value, count, symbol=raw.ticker)


def check_lob(raw: RawLob, tick: int = TICK) -> CheckedLob:
    """Validate one pair; raise :class:`ContractViolation` listing every problem, each with
    its file, line and rule, or return the pair's integer frames.

    File-level problems refuse the pair before any row is looked at: an unreadable or
    truncated file, a missing partner, the wrong number of columns for the depth in the file
    name, different line counts, a value that is not a number. ``tick`` is the price grid in
    LOBSTER units (100 = $0.01); hidden executions may print on the half tick (midpoint)."""
    problems = list(raw.problems)
    if problems or raw.messages is None or raw.book is None:
        raise ContractViolation(CONTRACT, problems or [_refuse(raw, "could not be read")])
    want = book_columns(raw.levels)
    if raw.messages.width != len(MESSAGE_COLUMNS):
        problems.append(_refuse(raw, f"has {raw.messages.width} columns; a message file has 6"))
    if raw.book.width != len(want):
        problems.append(
            _refuse(
                raw,
                f"has {raw.book.width} columns; a {raw.levels}-level order book (the file name's "
                f"depth) has {len(want)}",
                raw.book_file,
            )
        )
    if len(raw.messages) != len(raw.book):
        problems.append(
            _refuse(
                raw,
                f"mismatched pair: {len(raw.messages):,} message lines against "
                f"{len(raw.book):,} order-book lines in {raw.book_file} (a truncated or "
                "mismatched file)",
                count=abs(len(raw.messages) - len(raw.book)),
            )
        )
    if not len(raw.messages):
        problems.append(_refuse(raw, "has no lines"))
    if problems:
        raise ContractViolation(CONTRACT, problems)
    messages = raw.messages.rename(dict(zip(raw.messages.columns, MESSAGE_COLUMNS, strict=True)))
    book = raw.book.rename(dict(zip(raw.book.columns, want, strict=True)))
    messages, bad_m = _numbers(messages, MESSAGE_DTYPES, raw.message_file, raw.ticker)
    book, bad_b = _numbers(book, dict.fromkeys(want, pl.Int64), raw.book_file, raw.ticker)
    if bad_m or bad_b:
        raise ContractViolation(CONTRACT, bad_m + bad_b)
    report = run_suite(derived(messages, book, raw, tick), CONTRACT)
    if report.violations:
        raise ContractViolation(CONTRACT, report.violations)
    return CheckedLob(raw, messages, book, report)


def _numbers(
    frame: pl.DataFrame, dtypes: dict[str, pl.DataType], file: str, ticker: str
) -> tuple[pl.DataFrame, list[Violation]]:
    """Cast to numbers; name the first line of each column whose value is not one (a null
    from a short line is left to the suite's 'every field present' rule)."""
    if all(frame.schema[c] == t for c, t in dtypes.items()):
        return frame, []
    cast = frame.select(pl.col(c).cast(t, strict=False) for c, t in dtypes.items())
    problems = []
    for c, t in dtypes.items():
        bad = frame[c].is_not_null() & cast[c].is_null()
        if bad.any():
            line = int(bad.arg_true()[0]) + 1
            problems.append(
                Violation(
                    f"must be a number ({t})", c, file, line, frame[c][line - 1], int(bad.sum()),
                    symbol=ticker,
                )
            )  # fmt: skip
    return cast, problems


def derived(messages: pl.DataFrame, book: pl.DataFrame, raw: RawLob, tick: int) -> pl.DataFrame:
    """One row per line: the columns the suite checks, each null where its rule does not apply.

    - ``time_step_ns``: time minus the previous line's (never negative);
    - ``order_size``: size, except for halts (size 0 by the format);
    - ``price_off_grid``: price modulo the tick (the half tick for hidden executions);
    - ``halt_code``: a halt's price field, one of -1, 0, 1;
    - ``exec_outside_book``: 1 when an execution's price was not in the book before it (a
      visible execution at the best price of its order's side, a hidden one within the spread);
    - ``best_gap``: best ask minus best bid where both sides hold a level (positive);
    - ``ask_step`` / ``bid_step``: the smallest step between consecutive occupied levels away
      from the best (positive), -1 when an occupied level follows an empty one;
    - ``book_off_grid``, ``book_size_bad``: occupied prices off the tick grid, and levels whose
      size is not positive (occupied) or not 0 (empty), counted per line;
    - ``message_fields_missing``, ``book_fields_missing``: empty fields on the line (a short or
      truncated line).
    """
    levels = raw.levels
    t = pl.col("time")
    kind = pl.col("type")
    halt = kind == 7
    grid = pl.when(kind == 5).then(tick // 2).otherwise(tick)
    ask = [pl.col(f"ask_price_{k}") for k in range(1, levels + 1)]
    bid = [pl.col(f"bid_price_{k}") for k in range(1, levels + 1)]
    ask_n = [pl.col(f"ask_size_{k}") for k in range(1, levels + 1)]
    bid_n = [pl.col(f"bid_size_{k}") for k in range(1, levels + 1)]
    a_on = [a != DUMMY for a in ask]
    b_on = [b != -DUMMY for b in bid]

    def steps(prices, on, sign):
        if levels == 1:
            return pl.lit(None, dtype=pl.Int64)
        gaps = [
            pl.when(on[k] & on[k + 1])
            .then(sign * (prices[k + 1] - prices[k]))
            .when(~on[k] & on[k + 1])
            .then(-1)
            .otherwise(None)
            for k in range(levels - 1)
        ]
        return pl.min_horizontal(gaps)

    def count(conds):
        return pl.sum_horizontal([c.cast(pl.Int64) for c in conds])

    frame = pl.concat([messages, book], how="horizontal")
    prior_ask, prior_bid = ask[0].shift(1), bid[0].shift(1)
    executed = kind.is_in([4, 5])
    inside = (
        pl.when(kind == 4)
        .then(
            pl.when(pl.col("direction") == 1)
            .then(pl.col("price") == prior_bid)
            .otherwise(pl.col("price") == prior_ask)
        )
        .otherwise((pl.col("price") >= prior_bid) & (pl.col("price") <= prior_ask))
    )
    return frame.select(
        pl.lit(raw.message_file).alias("source_file"),
        pl.lit(raw.book_file).alias("book_file"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("source_row"),
        pl.lit(raw.ticker).alias("symbol"),
        pl.col("type"),
        pl.col("direction"),
        ((t - t.shift(1)) * 1e9).round().cast(pl.Int64).alias("time_step_ns"),
        pl.when(halt).then(None).otherwise(pl.col("size")).alias("order_size"),
        pl.when(halt).then(None).otherwise(pl.col("price")).alias("order_price"),
        pl.when(halt).then(None).otherwise(pl.col("price") % grid).alias("price_off_grid"),
        pl.when(halt).then(pl.col("price")).otherwise(None).alias("halt_code"),
        pl.when(executed & prior_ask.is_not_null())
        .then((~inside).cast(pl.Int64))
        .otherwise(None)
        .alias("exec_outside_book"),
        pl.when(a_on[0] & b_on[0]).then(ask[0] - bid[0]).otherwise(None).alias("best_gap"),
        steps(ask, a_on, 1).alias("ask_step"),
        steps(bid, b_on, -1).alias("bid_step"),
        count([on & (p % tick != 0) for on, p in zip(a_on + b_on, ask + bid, strict=True)]).alias(
            "book_off_grid"
        ),
        count(
            [
                pl.when(on).then(n <= 0).otherwise(n != 0)
                for on, n in zip(a_on + b_on, ask_n + bid_n, strict=True)
            ]
        ).alias("book_size_bad"),
        pl.sum_horizontal(pl.col(MESSAGE_COLUMNS).is_null().cast(pl.Int64)).alias(
            "message_fields_missing"
        ),
        pl.sum_horizontal(pl.col(book_columns(levels)).is_null().cast(pl.Int64)).alias(
            "book_fields_missing"
        ),
    )


KNOWN_TYPES = sorted(EVENT_TYPES)
