"""LOBSTER message and order-book files: their names, and their rows as typed frames.

LOBSTER (lobsterdata.com) writes one pair per ticker, day and depth,
``<TICKER>_<YYYY-MM-DD>_<start ms>_<end ms>_{message,orderbook}_<LEVELS>.csv[.gz]``, no header:

- message, 6 columns: time (seconds after midnight, up to nanosecond decimals), type (1 new
  limit order, 2 partial cancel, 3 full delete, 4 visible execution, 5 hidden execution,
  6 cross trade, 7 trading halt), order id, size (shares), price (dollars x 10,000), direction
  (+1 buy limit order, -1 sell limit order: the execution of a sell order is a buyer-initiated
  trade);
- orderbook, 4 x levels columns: ask price 1, ask size 1, bid price 1, bid size 1, ask price
  2, ... - the book *after* the message on the same line; empty levels hold the dummies
  +/-9999999999 with size 0.

Reading files is the sources' job (``pipelines/lob.py``); this module names them and turns the
raw integer frames into what the assets store: prices in dollars, times as exchange timestamps
(America/New_York), dummy levels as nulls, halts (type 7) as a trading state on every row.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import polars as pl

EXCHANGE_TZ = "America/New_York"
PRICE_SCALE = 10_000  # LOBSTER prices are dollars x 10,000
DUMMY = 9_999_999_999  # an empty level: ask +DUMMY, bid -DUMMY, size 0
TICK = 100  # $0.01 in LOBSTER units: the NASDAQ tick for stocks above $1
EVENT_TYPES = {
    1: "new limit order",
    2: "partial cancel",
    3: "full delete",
    4: "visible execution",
    5: "hidden execution",
    6: "cross trade",
    7: "trading halt",
}
EXECUTIONS = (4, 5)
MESSAGE_COLUMNS = ("time", "type", "order_id", "size", "price", "direction")
# halt state after each message: LOBSTER's type-7 price -1 halts, 0 resumes quoting, 1 trading
TRADING, HALTED, QUOTING = 0, 1, 2
_HALT_STATE = {-1: HALTED, 0: QUOTING, 1: TRADING}

_NAME = re.compile(
    r"^(?P<ticker>[A-Za-z0-9.\-^=_]+?)_(?P<day>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_"
    r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv(?:\.gz)?$"
)


@dataclass(frozen=True)
class LobName:
    """What a LOBSTER file name says."""

    ticker: str
    day: date
    start_ms: int
    end_ms: int
    kind: str  # "message" or "orderbook"
    levels: int

    @property
    def partition(self) -> str:
        """The ticker-day partition key, ``GOOG_2012-06-21``."""
        return partition_key(self.ticker, self.day)


def partition_key(ticker: str, day: date) -> str:
    return f"{ticker}_{day.isoformat()}"


def parse_name(name: str) -> LobName | None:
    """The fields of a LOBSTER file name, or None when the name is not one."""
    match = _NAME.match(name)
    if not match:
        return None
    try:
        day = date.fromisoformat(match["day"])
    except ValueError:
        return None
    return LobName(
        match["ticker"].upper(),
        day,
        int(match["start"]),
        int(match["end"]),
        match["kind"],
        int(match["levels"]),
    )


def book_columns(levels: int) -> list[str]:
    """``ask_price_1, ask_size_1, bid_price_1, bid_size_1, ask_price_2, ...``."""
    return [
        f"{side}_{what}_{k}"
        for k in range(1, levels + 1)
        for side, what in (("ask", "price"), ("ask", "size"), ("bid", "price"), ("bid", "size"))
    ]


def midnight_ns(day: date) -> int:
    """Nanoseconds since the epoch of ``day``'s midnight in New York (DST-aware)."""
    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(EXCHANGE_TZ))
    return int(start.timestamp()) * 1_000_000_000


def time_ns(seconds: pl.Expr) -> pl.Expr:
    """Seconds after midnight (float, nanosecond decimals) as integer nanoseconds.

    A double holds 15-16 significant digits and a day's nanosecond stamp has at most 14, so
    rounding recovers the exact integer LOBSTER wrote."""
    return (seconds * 1e9).round().cast(pl.Int64)


def events_frame(messages: pl.DataFrame, day: date) -> pl.DataFrame:
    """Typed events from the raw message columns (``time`` float, the rest integers):
    ``[seq, t_ns, ts, type, order_id, size, price, direction, trade_sign, halt_state]``.

    ``seq`` is the 1-based line; ``t_ns`` nanoseconds after midnight; ``ts`` the exchange
    timestamp; ``price`` in dollars (null for halts, whose price field is a code);
    ``trade_sign`` +1 for a buyer-initiated execution (a sell order executed), -1 for a
    seller-initiated one, 0 otherwise; ``halt_state`` 0 trading, 1 halted, 2 quoting only, as
    set by the last type-7 message (0 before any)."""
    halt = pl.col("type") == 7
    state = (
        pl.when(halt)
        .then(pl.col("price").replace_strict(_HALT_STATE, default=None))
        .otherwise(None)
    )
    return messages.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("seq"),
        time_ns(pl.col("time")).alias("t_ns"),
        (time_ns(pl.col("time")) + midnight_ns(day))
        .cast(pl.Datetime("ns", "UTC"))
        .dt.convert_time_zone(EXCHANGE_TZ)
        .alias("ts"),
        pl.col("type").cast(pl.Int8),
        pl.col("order_id").cast(pl.Int64),
        pl.col("size").cast(pl.Int64),
        pl.when(halt).then(None).otherwise(pl.col("price") / PRICE_SCALE).alias("price"),
        pl.col("direction").cast(pl.Int8),
        pl.when(pl.col("type").is_in(EXECUTIONS))
        .then(-pl.col("direction"))
        .otherwise(0)
        .cast(pl.Int8)
        .alias("trade_sign"),
        state.forward_fill().fill_null(TRADING).cast(pl.Int8).alias("halt_state"),
    )


def book_frame(book: pl.DataFrame, levels: int) -> pl.DataFrame:
    """Typed book rows from the raw orderbook columns (``book_columns(levels)``, integers):
    ``[seq, ask_price_1, ask_size_1, bid_price_1, bid_size_1, ...]``, prices in dollars, an
    empty level (a dummy price) null in price and size."""
    exprs = [pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("seq")]
    for k in range(1, levels + 1):
        for side, dummy in (("ask", DUMMY), ("bid", -DUMMY)):
            price, size = pl.col(f"{side}_price_{k}"), pl.col(f"{side}_size_{k}")
            empty = price == dummy
            exprs += [
                pl.when(empty).then(None).otherwise(price / PRICE_SCALE).alias(f"{side}_price_{k}"),
                pl.when(empty).then(None).otherwise(size).cast(pl.Int64).alias(f"{side}_size_{k}"),
            ]
    columns = book_columns(levels)
    order = ["seq", *columns]
    return book.select(exprs).select(order)


def book_ticks(book: pl.DataFrame, levels: int) -> pl.DataFrame:
    """The typed book back in LOBSTER integer units (prices x 10,000, empty levels as the
    dummies with size 0): the exact integers the feature code computes on."""
    exprs = []
    for k in range(1, levels + 1):
        for side, dummy in (("ask", DUMMY), ("bid", -DUMMY)):
            exprs += [
                (pl.col(f"{side}_price_{k}") * PRICE_SCALE)
                .round()
                .cast(pl.Int64)
                .fill_null(dummy)
                .alias(f"{side}_price_{k}"),
                pl.col(f"{side}_size_{k}").fill_null(0).alias(f"{side}_size_{k}"),
            ]
    return book.select(exprs)


def levels_of(book: pl.DataFrame) -> int:
    """How many levels a typed or raw book frame holds."""
    return sum(1 for c in book.columns if c.startswith("ask_price_"))


@dataclass(frozen=True)
class LobPair:
    """The message and order-book files of one ticker, day and depth (None: not found)."""

    ticker: str
    day: date
    levels: int
    message: str | None
    book: str | None

    @property
    def partition(self) -> str:
        return partition_key(self.ticker, self.day)

    def expected(self, kind: str) -> str:
        """The file name the missing partner would have (from the one that exists)."""
        present = self.message or self.book or ""
        other = "orderbook" if kind == "orderbook" else "message"
        return re.sub(r"_(message|orderbook)_", f"_{other}_", present)


def every_pair(paths: list[str]) -> list[LobPair]:
    """Every ticker, day and depth among ``paths`` with its two files (None where one is
    missing); names that are not LOBSTER's are ignored."""
    from pathlib import PurePath

    found: dict[tuple[str, date, int], dict[str, str]] = {}
    for path in sorted(paths):
        name = parse_name(PurePath(path).name)
        if name is not None:
            found.setdefault((name.ticker, name.day, name.levels), {})[name.kind] = path
    return [
        LobPair(ticker, day, levels, files.get("message"), files.get("orderbook"))
        for (ticker, day, levels), files in sorted(found.items())
    ]


def pair_files(paths: list[str], depth: int | None = None) -> dict[str, LobPair]:
    """One pair per ticker-day (the partition key): the deepest, or the one of ``depth`` (a
    ticker-day without that depth keeps its deepest pair, so it is ingested rather than
    silently dropped)."""
    chosen: dict[str, LobPair] = {}
    for pair in every_pair(paths):
        current = chosen.get(pair.partition)
        if current is None:
            chosen[pair.partition] = pair
        elif depth is not None:
            if pair.levels == depth or (current.levels != depth and pair.levels > current.levels):
                chosen[pair.partition] = pair
        elif pair.levels > current.levels:
            chosen[pair.partition] = pair
    return chosen
