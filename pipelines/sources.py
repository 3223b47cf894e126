"""Data sources: the real data bundled with pip packages (default) and the user's own files.

Bundled (no network at run time): skfolio's 20 S&P 500 stocks (adjusted close, 1990-2022), the
S&P 500 index and five factor ETFs (MTUM, QUAL, SIZE, USMV, VLUE); arch's VIX (2014-2019) and
Fama-French three factors (monthly, 1926-2018).
"""

import glob
import gzip
import io
import os
import stat
import sys
import time
import zlib
from collections import Counter
from datetime import date
from functools import partial
from pathlib import Path
from typing import BinaryIO, ClassVar
from urllib.parse import quote, urlsplit
from urllib.request import HTTPRedirectHandler, build_opener

import pandas as pd
import polars as pl
from dagster import ConfigurableResource

from data_contracts import PRICE_COLUMNS, ContractViolation, RawPrices, Violation
from data_contracts.prices import REQUIRED
from models.data.panel import wide_to_long

# GICS sectors of skfolio's 20 bundled stocks (public classification, as of 2024).
BUNDLED_SECTORS = {
    "AAPL": "Information Technology",
    "AMD": "Information Technology",
    "MSFT": "Information Technology",
    "BAC": "Financials",
    "JPM": "Financials",
    "BBY": "Consumer Discretionary",
    "HD": "Consumer Discretionary",
    "CVX": "Energy",
    "XOM": "Energy",
    "RRC": "Energy",
    "GE": "Industrials",
    "JNJ": "Health Care",
    "LLY": "Health Care",
    "MRK": "Health Care",
    "PFE": "Health Care",
    "UNH": "Health Care",
    "KO": "Consumer Staples",
    "PEP": "Consumer Staples",
    "PG": "Consumer Staples",
    "WMT": "Consumer Staples",
}

# Kenneth French publishes a month's factors early in the following month, the BLS a month's
# CPI mid-month: we treat every monthly value as known only at the end of the next month.
FRENCH_LAG_MONTHS = 1


class BundledPriceSource(ConfigurableResource):
    """skfolio's bundled S&P 500 sample: 20 stocks, daily adjusted close."""

    # no traded price: the universe screen cannot judge a minimum price on these closes
    # (AAPL's 1990 closes, adjusted for four splits since, read about $0.30)
    adjusted_only: ClassVar[bool] = True

    def load_prices(self, start: date | None = None, end: date | None = None) -> RawPrices:
        from skfolio.datasets import load_sp500_dataset

        wide = load_sp500_dataset()
        line = pl.DataFrame(
            {
                "date": wide.index.to_numpy().astype("datetime64[D]"),
                "source_row": range(2, len(wide) + 2),
            }
        )
        frame = (
            wide_to_long(wide, "close")
            .join(line, on="date")
            .with_columns(source_file=pl.lit(self.describe()))
            .filter(_in_range(start, end))
        )
        return RawPrices(frame)

    def describe(self) -> str:
        return "skfolio bundled sp500_dataset.csv.gz"

    def load_sectors(self) -> pl.DataFrame:
        return pl.DataFrame(
            {"symbol": list(BUNDLED_SECTORS), "sector": list(BUNDLED_SECTORS.values())}
        )


class FilePriceSource(ConfigurableResource):
    """The user's price files: one long file or many, CSV, CSV.gz or Parquet, given as a path or
    glob. Columns are matched case-insensitively (``symbol, date, close`` required; ``open,
    high, low, volume, split, dividend`` optional); ``columns`` maps our names to a vendor's,
    e.g. ``{"date": "timestamp", "split": "split_coefficient"}`` for AlphaVantage. With
    ``symbol_from_filename`` a per-ticker file's name (``AAPL.csv.gz``) gives the symbol.
    With ``root`` set, files that resolve outside it (``..``, symlinks) are refused. A path
    with ``{date}`` (``incoming/prices_{date}.csv``) is a daily delivery: a date range reads
    only the files of its days, so a nightly run opens one file.

    A file that cannot be used (not CSV, empty, a mapped column missing, columns unlike the
    other files', outside the root) is skipped and named; the others still load."""

    path: str
    columns: dict[str, str] = {}
    symbol_from_filename: bool = False
    sectors: str | None = None
    root: str | None = None
    max_file_mb: int = 1024

    def files(self, start: date | None = None, end: date | None = None) -> list[Path]:
        pattern = str(Path(self.path).expanduser())
        if "{date}" in pattern:
            head, tail = pattern.split("{date}", 1)
            matches = [
                m
                for m in sorted(glob.glob(pattern.replace("{date}", "*")))
                if _in_window(m[len(head) : len(m) - len(tail)], start, end)
            ]
        elif any(c in pattern for c in "*?["):
            matches = sorted(glob.glob(pattern))
        else:
            matches = [pattern]
        files = [Path(m) for m in matches if Path(m).is_file()]
        if not files and "{date}" in pattern and (start or end):
            return []  # no delivery in the window (a holiday): an empty day, not an error
        if not files:
            raise FileNotFoundError(f"no price file matches {self.path!r}")
        return files

    def load_prices(self, start: date | None = None, end: date | None = None) -> RawPrices:
        root = Path(self.root).expanduser().resolve() if self.root else None
        # each file is opened once, when it is read: the checks judge the file actually open
        payloads = [
            (f, partial(open_payload, f, root, self.max_file_mb)) for f in self.files(start, end)
        ]
        return read_payloads(payloads, self.columns, self.symbol_from_filename, start, end, [])

    def describe(self) -> str:
        return self.path

    def load_sectors(self) -> pl.DataFrame:
        """The sector map file (CSV with ``symbol`` and ``sector`` columns, any case), if any."""
        return read_sectors(self.sectors, self.root, self.max_file_mb)


class HttpPriceSource(ConfigurableResource):
    """A vendor's HTTP API, one CSV per symbol: ``url`` is a template with ``{symbol}`` (and
    optionally ``{api_key}``, e.g. AlphaVantage's ``TIME_SERIES_DAILY_ADJUSTED&datatype=csv``).
    Responses go through the same column mapping and contract as files; a response that is not
    price CSV (vendors answer errors with HTTP 200 and a JSON message) is skipped and named.

    The key goes only to the vendor: never over plain http (but to a loopback test server),
    redirects are followed only to the same host over https, and every message shows the URL
    with ``apikey=***``. Each response must arrive within ``timeout_s`` in all (a server that
    trickles bytes is cut off), the whole download within ``deadline_s``."""

    url: str
    symbols: list[str]
    columns: dict[str, str] = {}
    api_key: str | None = None
    timeout_s: float = 30.0
    deadline_s: float = 3600.0
    sectors: str | None = None
    max_file_mb: int = 256

    def load_prices(self, start: date | None = None, end: date | None = None) -> RawPrices:
        check_vendor_url(self.url, bool(self.api_key))
        opener = build_opener(_SameHostRedirects(urlsplit(self.url).hostname))
        deadline = time.monotonic() + self.deadline_s
        payloads, skipped = [], []
        for symbol in self.symbols:
            shown = self.url.format(symbol=quote(symbol), api_key="***")
            if time.monotonic() > deadline:
                skipped.append(
                    _skip(
                        shown,
                        f"not fetched: the download passed its {self.deadline_s:g} s deadline",
                        symbol,
                    )
                )
                continue
            url = self.url.format(symbol=quote(symbol), api_key=quote(self.api_key or ""))
            try:
                body = self._fetch(opener, url)
                payloads.append((Path(f"{symbol}.csv"), partial(inflate, body, self.max_file_mb)))
            except _Skip as err:
                skipped.append(_skip(shown, self._mask(str(err)), symbol))
            except Exception as err:  # noqa: BLE001 (any failure of one symbol: named, masked)
                reason = self._mask(f"{err}") or type(err).__name__
                skipped.append(_skip(shown, f"could not be fetched ({reason})", symbol))
        return read_payloads(payloads, self.columns, True, start, end, skipped, label=self._label)

    def _fetch(self, opener, url: str) -> bytes:
        """The response body, at most ``max_file_mb`` (compressed) and within ``timeout_s``."""
        limit = self.max_file_mb * 2**20
        cutoff = time.monotonic() + self.timeout_s
        chunks, size = [], 0
        with opener.open(url, timeout=self.timeout_s) as response:
            while chunk := response.read1(2**16):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise _Skip(f"sent more than the {self.max_file_mb} MB limit")
                if time.monotonic() > cutoff:
                    raise _Skip(f"took longer than {self.timeout_s:g} s (timeout_s) to answer")
        return b"".join(chunks)

    def _mask(self, text: str) -> str:
        """``text`` with the key (as given and as sent, URL-quoted) replaced by ``***``."""
        for secret in {self.api_key, quote(self.api_key or "")} - {None, ""}:
            text = text.replace(secret, "***")
        return text

    def _label(self, name: Path) -> str:
        return self.url.format(symbol=ticker_from_name(name), api_key="***")

    def describe(self) -> str:
        return self.url.format(symbol="{symbol}", api_key="***")

    def load_sectors(self) -> pl.DataFrame:
        return read_sectors(self.sectors, max_file_mb=self.max_file_mb)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_vendor_url(url: str, with_key: bool) -> None:
    """A vendor URL must be http(s); one that carries a key must be https (plain http only to
    this machine, for a local test server)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"vendor url must be http(s): {parts.scheme}://{parts.hostname or ''}")
    if with_key and parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise ValueError(
            f"vendor url: refusing to send data.api_key over plain http to {parts.hostname}; "
            "use https"
        )


class _SameHostRedirects(HTTPRedirectHandler):
    """Follow a redirect only to the same host, and only over https (or plain http on the
    loopback): a redirect elsewhere would hand the key (it rides in the query) to a stranger."""

    def __init__(self, host: str | None):
        self.host = host

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urlsplit(newurl)
        secure = target.scheme == "https" or (
            target.scheme == "http" and target.hostname in LOOPBACK
        )
        if target.hostname != self.host or not secure:
            raise _Skip(
                f"was redirected (HTTP {code}) to {target.scheme}://{target.hostname}: refused, "
                "a vendor may redirect only to its own host over https"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def read_payloads(
    payloads: list[tuple[Path, object]],
    columns: dict[str, str],
    symbol_from_name: bool,
    start: date | None,
    end: date | None,
    skipped: list[Violation],
    label=str,
) -> RawPrices:
    """Read each ``(name, file or buffer)``, map its columns, skip (and name) what cannot be
    used, and keep only dates in ``[start, end]``."""
    mapping = {ours: theirs.strip().lower() for ours, theirs in columns.items()}
    frames: list[tuple[str, pl.DataFrame]] = []
    mappings: Counter = Counter()
    notes: dict[str, None] = {}
    for name, payload in payloads:
        where = label(name)
        try:
            parquet = name.name.endswith(".parquet")
            if callable(payload):  # opened (and its size checked) only now, once
                with payload() as handle:
                    frame = _read(handle, where, parquet)
            else:
                frame = _read(payload, where, parquet)
            selected, used, said = _select(
                frame, mapping, name if symbol_from_name else None, where
            )
            frames.append((where, selected))
            mappings[tuple(sorted(used.items()))] += 1
            notes |= dict.fromkeys(said)
        except _Skip as err:
            skipped.append(
                _skip(where, str(err), ticker_from_name(name) if symbol_from_name else None)
            )
    frames, drift = _drop_drift(frames)
    skipped += drift
    used = dict(mappings.most_common(1)[0][0]) if mappings else {}
    if len(mappings) > 1:
        notes[f"files map their columns {len(mappings)} ways; the most common is shown"] = None
    if not frames:
        return RawPrices(
            pl.DataFrame(schema={"source_file": pl.String, "source_row": pl.Int64}),
            skipped,
            used,
            list(notes),
        )
    frame = pl.concat([f for _, f in frames], how="diagonal_relaxed")
    if start or end:
        dates = frame["date"]
        if dates.dtype == pl.String:
            day = dates.str.strip_chars().str.slice(0, 10)
            parsed = pl.select(
                pl.coalesce(day.str.to_date(strict=False), day.str.to_date("%Y%m%d", strict=False))
            ).to_series()
        else:
            parsed = dates.cast(pl.Date, strict=False)
        # rows whose date does not parse stay, so the contract names them
        frame = frame.filter(
            parsed.is_null() | parsed.is_between(start or date.min, end or date.max)
        )
    return RawPrices(frame, skipped, used, list(notes))


class _Skip(Exception):
    """A file (or response) that cannot be used at all."""


def _skip(where: object, reason: str, symbol: str | None = None) -> Violation:
    return Violation(
        reason, None, str(where), None, None, None, symbol=symbol, severity="quarantine"
    )


def _read(payload: object, where: str, parquet: bool) -> pl.DataFrame:
    """One file as strings (CSV) or typed (Parquet), with ``source_file`` and ``source_row``
    (line number for CSV with the header on line 1, 1-based row number for Parquet)."""
    try:
        if parquet:
            frame, first = pl.read_parquet(payload), 1
        else:
            frame, first = pl.read_csv(payload, infer_schema=False), 2
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as err:
        text = str(err).strip()
        raise _Skip(
            f"is not a readable {'Parquet' if parquet else 'CSV'} file "
            f"({text.splitlines()[0] if text else type(err).__name__})"
        ) from err
    if frame.is_empty():
        raise _Skip(f"has no rows (columns: {frame.columns})")
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    return frame.with_columns(
        source_file=pl.lit(where),
        source_row=pl.int_range(first, len(frame) + first, dtype=pl.Int64),
    )


# Names a vendor gives our optional columns, taken without a mapping only when exactly one of
# them is in the file. Only columns whose meaning the name settles: "name" (a ticker in some
# sets, a company name in others) or "price" must be mapped.
SYNONYMS = {
    "adj_close": ("adj_close", "adj close", "adjusted_close", "adjusted close", "adjclose"),
}
_ADJUSTED = ("adj", "adjusted")


def resolve_columns(
    columns: list[str], mapping: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Which of the file's (lower-cased) ``columns`` become which of ours: ``(used, notes)``,
    ``used`` our name -> the file's. A column is taken when it is mapped, or when its name is
    ours (or one of :data:`SYNONYMS`) and unambiguous; ``notes`` say why anything else was
    not. The price basis is reconciled here: ``close`` mapped to an adjusted column while the
    file also has a raw ``close`` becomes ``adj_close`` (so open, high and low, on the raw
    basis, are adjusted by the same factor, not left on another basis); with no raw close,
    unmapped open, high and low are left out."""
    used = {ours: theirs for ours, theirs in mapping.items()}
    taken = set(used.values())
    notes = []
    mapped_close = used.get("close")
    if (
        mapped_close
        and mapped_close != "close"
        and mapped_close.startswith(_ADJUSTED)
        and "adj_close" not in used
    ):
        if "close" in columns and "close" not in taken:
            used["adj_close"], used["close"] = mapped_close, "close"
            taken.add("close")
            notes.append(
                f"close -> '{mapped_close}' is an adjusted close and the file has a raw 'close': "
                f"'{mapped_close}' taken as adj_close, and open, high, low adjusted by "
                "adj_close / close (map adj_close yourself to silence this)"
            )
        else:
            dropped = [c for c in ("open", "high", "low") if c not in mapping and c in columns]
            for c in dropped:
                taken.add(c)  # kept out: a raw column beside an adjusted close
            if dropped:
                notes.append(
                    f"close -> '{mapped_close}' is an adjusted close and the file has no raw "
                    f"close: {dropped} (raw, another basis) left out; map them to keep them"
                )
    for ours in PRICE_COLUMNS:
        if ours in used:
            continue
        candidates = [c for c in SYNONYMS.get(ours, (ours,)) if c in columns and c not in taken]
        if len(candidates) == 1:
            used[ours] = candidates[0]
            taken.add(candidates[0])
            if candidates[0] != ours:
                notes.append(f"{ours} taken from '{candidates[0]}' (unmapped, unambiguous)")
        elif len(candidates) > 1:
            notes.append(f"{ours}: columns {candidates} could each be it; none taken: map one")
    return used, notes


def _select(
    frame: pl.DataFrame, mapping: dict[str, str], symbol_file: Path | None, where: str
) -> tuple[pl.DataFrame, dict[str, str], list[str]]:
    """Rename the vendor's columns to ours (:func:`resolve_columns`); columns neither mapped
    nor ours are dropped. Returns the frame, the mapping used and the notes."""
    missing = {ours: theirs for ours, theirs in mapping.items() if theirs not in frame.columns}
    if missing:
        pairs = ", ".join(f"{ours} -> '{theirs}'" for ours, theirs in missing.items())
        raise _Skip(f"lacks mapped column(s) {pairs} (columns: {frame.columns[:-2]})")
    used, notes = resolve_columns(frame.columns[:-2], mapping)
    picked = [pl.col(theirs).alias(ours) for ours, theirs in used.items()]
    out = frame.select(*picked, "source_file", "source_row")
    if symbol_file is not None and "symbol" not in mapping:  # the file name wins, unless mapped
        out = out.with_columns(symbol=pl.lit(ticker_from_name(symbol_file)))
        used["symbol"] = "(file name)"
    elif symbol_file is not None:
        notes.append(f"symbol taken from the mapped column '{used['symbol']}', not the file name")
    absent = [c for c in REQUIRED if c not in out.columns]
    if absent:
        raise _Skip(f"lacks required column(s) {absent} (columns: {frame.columns[:-2]})")
    return out, used, notes


def _drop_drift(frames: list[tuple[str, pl.DataFrame]]) -> tuple[list, list[Violation]]:
    """Files whose price columns differ from the most common set (a vendor changed its export
    between days): skipped, since mixing them would leave holes in optional columns."""
    if len(frames) < 2:
        return frames, []
    sets = [frozenset(f.columns) for _, f in frames]
    usual = Counter(sets).most_common(1)[0][0]
    kept, drift = [], []
    for (where, frame), cols in zip(frames, sets, strict=True):
        if cols == usual:
            kept.append((where, frame))
        else:
            lost, extra = sorted(usual - cols), sorted(cols - usual)
            drift.append(
                _skip(
                    where,
                    f"schema drift: columns differ from the other files (missing {lost}, extra {extra})",
                )
            )
    return kept, drift


# The compressed formats polars inflates by itself, whatever a file is called (``read_csv``
# sniffs these leading bytes): they are inflated here instead, as a stream through a byte
# count, so a bomb stops at the limit instead of filling the memory. A gzip trailer says
# nothing (it holds one member's size modulo 4 GiB), so nothing trusts it.
GZIP, ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"
ZLIB = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")
CHUNK = 2**20


def compression_of(head: bytes) -> str | None:
    if head.startswith(GZIP):
        return "gzip"
    if head.startswith(ZSTD):
        return "zstd"
    if head[:2] in ZLIB:
        return "zlib"
    return None


def inflate(payload: bytes | BinaryIO, limit_mb: int) -> BinaryIO:
    """``payload`` ready for polars: as it is when not compressed, else inflated by streaming
    and counting, refused past ``limit_mb`` MiB; a payload compressed twice is refused too
    (polars would inflate the inner layer without a limit)."""
    raw = io.BytesIO(payload) if isinstance(payload, bytes) else payload
    head = raw.read(4)
    raw.seek(0)
    kind = compression_of(head)
    if kind is None:
        return raw
    limit = limit_mb * 2**20
    out = bytearray()
    try:
        for piece in _inflated(raw, kind):
            out += piece
            if len(out) > limit:
                raise _Skip(
                    f"expands to more than the {limit_mb} MB limit uncompressed ({kind}; "
                    "data.max_file_mb): refused as a decompression bomb"
                )
    except (OSError, EOFError, zlib.error, ValueError) as err:
        raise _Skip(f"is not a readable {kind} stream ({err})") from err
    if compression_of(bytes(out[:4])):
        raise _Skip(f"is compressed twice ({kind}, then {compression_of(bytes(out[:4]))}): refused")
    return io.BytesIO(out)


def _inflated(raw: BinaryIO, kind: str):
    """Decompressed pieces of at most ``CHUNK`` bytes each (every gzip member, in turn)."""
    if kind == "gzip":
        with gzip.GzipFile(fileobj=raw) as stream:
            while piece := stream.read(CHUNK):
                yield piece
    elif kind == "zlib":
        inflater = zlib.decompressobj()
        while not inflater.eof and (data := inflater.unconsumed_tail or raw.read(2**16)):
            yield inflater.decompress(data, CHUNK)
    else:
        import pyarrow as pa

        try:
            with pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "zstd") as stream:
                while piece := stream.read(CHUNK):
                    yield piece
        except pa.ArrowException as err:
            raise ValueError(str(err)) from err


def open_payload(path: Path, root: Path | None, limit_mb: int) -> BinaryIO:
    """Open ``path`` once and judge the file that is open, not the name: its real path (read
    from the open descriptor, so swapping a symlink after the check changes nothing) must lie
    inside ``root``, it must be a regular file of at most ``limit_mb`` MiB, and its content
    at most that once inflated (:func:`inflate`); Parquet by its declared size."""
    handle = open_confined(path, root)
    try:
        size = os.fstat(handle.fileno()).st_size
        if size > limit_mb * 2**20:
            raise _Skip(
                f"is larger than the {limit_mb} MB limit ({size / 2**20:,.0f} MB; data.max_file_mb)"
            )
        if path.name.endswith(".parquet"):
            _check_parquet_size(handle, limit_mb)
            return handle
        inflated = inflate(handle, limit_mb)
    except BaseException:
        handle.close()
        raise
    if inflated is not handle:
        handle.close()
    return inflated


def open_confined(path: Path | str, root: Path | str | None) -> BinaryIO:
    """``path`` opened for reading, refused (:class:`_Skip`) when the opened file is not a
    regular file or lies outside ``root``. Opened without blocking, so a FIFO put in its place
    cannot hang the run."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise _Skip(f"cannot be opened ({err.strerror})") from err
    handle = os.fdopen(fd, "rb")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Skip("is not a regular file")
        if root is not None:
            root = Path(root).expanduser().resolve()
            real = _real_path(fd, Path(path))
            if not real.is_relative_to(root):
                raise _Skip(f"is outside the data root {root} (resolves to {real})")
    except BaseException:
        handle.close()
        raise
    return handle


def _real_path(fd: int, path: Path) -> Path:
    """Where the open descriptor ``fd`` really is (Linux: ``/proc/self/fd``; macOS:
    ``F_GETPATH``); elsewhere the resolved name, accepted only if it is the same file."""
    if os.path.isdir("/proc/self/fd"):
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    if sys.platform == "darwin":
        import fcntl

        raw = fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024))  # type: ignore[attr-defined]
        return Path(raw.split(b"\0", 1)[0].decode())
    resolved = path.resolve()
    opened, named = os.fstat(fd), os.stat(resolved)
    if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):
        raise _Skip("changed while it was being opened")
    return resolved


def _check_parquet_size(handle: BinaryIO, limit_mb: int) -> None:
    """Parquet pages inflate as they are read: judge the file by what its footer declares
    (uncompressed bytes, and rows x columns as 8-byte values)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(handle)
    except Exception as err:  # noqa: BLE001 (any unreadable footer: skipped, named)
        raise _Skip(f"is not a readable Parquet file ({err})") from err
    finally:
        handle.seek(0)
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    values = meta.num_rows * meta.num_columns * 8
    if max(declared, values) > limit_mb * 2**20:
        raise _Skip(
            f"expands to more than the {limit_mb} MB limit uncompressed (Parquet: "
            f"{meta.num_rows:,} rows x {meta.num_columns} columns; data.max_file_mb): refused"
        )


def read_limited(path: str, root: str | None, limit_mb: int, what: str) -> BinaryIO:
    """A side file of the experiment (sector map, texts) opened like a price file: confined
    to ``root`` (its own folder when none is given) and size-limited; a refusal raises
    :class:`ContractViolation` naming the file."""
    where = Path(path).expanduser()
    try:
        return open_payload(where, Path(root) if root else where.absolute().parent, limit_mb)
    except _Skip as err:
        raise ContractViolation(what, [_skip(path, str(err))]) from None


def _in_window(stamp: str, start: date | None, end: date | None) -> bool:
    """Whether a ``{date}`` file-name stamp (ISO) falls in ``[start, end]``; a stamp that is
    not a date is kept, so the contract names the file."""
    try:
        day = date.fromisoformat(stamp)
    except ValueError:
        return True
    return (start or date.min) <= day <= (end or date.max)


def _in_range(start: date | None, end: date | None) -> pl.Expr:
    return pl.col("date").is_between(start or date.min, end or date.max)


def read_sectors(path: str | None, root: str | None = None, max_file_mb: int = 64) -> pl.DataFrame:
    """A sector map file (CSV with ``symbol`` and ``sector`` columns, any case), if any."""
    if not path:
        return pl.DataFrame(schema={"symbol": pl.String, "sector": pl.String})
    with read_limited(path, root, max_file_mb, "sectors") as handle:
        frame = pl.read_csv(handle, infer_schema=False)
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    missing = {"symbol", "sector"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"{path}: sector map needs columns symbol and sector; missing {sorted(missing)}"
        )
    return frame.select("symbol", "sector").unique("symbol", keep="first")


def ticker_from_name(path: Path) -> str:
    """``BRK.B.csv.gz`` -> ``BRK.B``: the file name without its data suffixes."""
    name = path.name
    for suffix in (".gz", ".csv", ".parquet"):
        name = name.removesuffix(suffix)
    return name


class BundledAltSource(ConfigurableResource):
    """Index, factor ETFs, VIX, WTI crude, Fama-French factors, core-CPI inflation and the
    BAA-AAA credit spread, from skfolio and arch. Monthly series become usable only at the
    end of the following month (their publication lag, taken conservatively). ``texts`` is an
    optional CSV ``date,ticker,text`` of dated news or filings (ticker empty = market-wide)."""

    texts: str | None = None
    root: str | None = None
    max_file_mb: int = 256

    def load_texts(self) -> pl.DataFrame:
        """``[date, ticker, text]`` from ``texts`` (empty without one; confined to ``root`` and
        ``max_file_mb`` like price files); a bad date or a missing column raises
        :class:`ContractViolation` naming the file and row."""
        schema = {"date": pl.Date, "ticker": pl.String, "text": pl.String}
        if not self.texts:
            return pl.DataFrame(schema=schema)
        with read_limited(self.texts, self.root, self.max_file_mb, "texts") as handle:
            frame = pl.read_csv(handle, infer_schema=False)
        frame = frame.rename({c: c.strip().lower() for c in frame.columns})
        missing = [c for c in schema if c not in frame.columns]
        if missing:
            raise ContractViolation(
                "texts",
                [
                    Violation(
                        f"is required (columns: {frame.columns})", c, self.texts, None, None, None
                    )
                    for c in missing
                ],
            )
        typed = frame.with_row_index("row", offset=2).with_columns(
            parsed=pl.col("date").str.strip_chars().str.to_date(strict=False)
        )
        bad = typed.filter(pl.col("parsed").is_null())
        if len(bad):
            first = bad.row(0, named=True)
            raise ContractViolation(
                "texts",
                [
                    Violation(
                        "must parse as Date",
                        "date",
                        self.texts,
                        first["row"],
                        first["date"],
                        len(bad),
                    )
                ],
            )
        return typed.select(date="parsed", ticker="ticker", text="text")

    def load_alt_data(self) -> pl.DataFrame:
        import arch.data.core_cpi
        import arch.data.default
        import arch.data.frenchdata
        import arch.data.vix
        import arch.data.wti
        from skfolio.datasets import load_factors_dataset, load_sp500_index

        daily = [
            wide_to_long(load_sp500_index(), "value", name="series").with_columns(
                kind=pl.lit("price")
            ),
            wide_to_long(load_factors_dataset(), "value", name="series").with_columns(
                kind=pl.lit("price")
            ),
            wide_to_long(
                arch.data.vix.load().rename(columns={"vix": "VIX"}), "value", name="series"
            ).with_columns(kind=pl.lit("level")),
            wide_to_long(
                arch.data.wti.load().rename(columns={"DCOILWTICO": "WTI"}).dropna(),
                "value",
                name="series",
            ).with_columns(kind=pl.lit("price")),
        ]
        frames = [d.with_columns(available_date=pl.col("date")) for d in daily]
        frames.append(_french_monthly(arch.data.frenchdata.load()))
        cpi = arch.data.core_cpi.load()["CPILFESL"]
        default = arch.data.default.load()
        macro = pd.DataFrame(
            {
                "CORE_CPI_YOY": cpi.pct_change(12, fill_method=None) * 100,
                "BAA_AAA": default["BAA"] - default["AAA"],
            }
        )
        frames.append(_monthly(macro))
        return pl.concat(
            [f.select("series", "kind", "date", "available_date", "value") for f in frames]
        )


def _monthly(wide: pd.DataFrame) -> pl.DataFrame:
    """Monthly series dated at their month's start (FRED style) -> month end, published at the
    end of the following month (CPI comes out mid-month, Moody's averages early in the month:
    the later bound is used so no value is ever seen before it was out)."""
    month_end = wide.index + pd.offsets.MonthEnd(0)
    long = wide_to_long(wide.set_axis(month_end), "value", name="series").drop_nulls("value")
    return long.with_columns(
        kind=pl.lit("monthly"),
        available_date=pl.col("date").dt.offset_by(f"{FRENCH_LAG_MONTHS}mo").dt.month_end(),
    )


def _french_monthly(french: pd.DataFrame) -> pl.DataFrame:
    """arch loads these dates as nanoseconds after 1970 that spell ``YYYYMM``: parse them."""
    yyyymm = pd.Series(french.index.astype("int64"), index=french.index)
    month_end = pd.to_datetime(yyyymm.astype(str), format="%Y%m") + pd.offsets.MonthEnd(0)
    wide = french.set_axis(month_end.to_numpy()).rename(
        columns=lambda c: f"FF_{c.replace('-', '_')}"
    )
    return wide_to_long(wide, "value", name="series").with_columns(
        kind=pl.lit("monthly"),
        available_date=pl.col("date").dt.offset_by(f"{FRENCH_LAG_MONTHS}mo").dt.month_end(),
    )
