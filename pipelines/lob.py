"""LOBSTER order-book files: the source that finds and reads them, the ticker-day partitions
they make, the sensor that adds new ones, and what ``alphaforge stream --lob`` replays.

Why dynamic partitions added by a sensor, not a static set derived from the files: a LOBSTER
subscription delivers day after day into one folder, and a user expects a new day to appear
as a new partition and be ingested without restarting anything. A static set is frozen when
the code location loads (the Dagster UI would need a reload to see a new file); dynamic
partitions live in the instance, the sensor adds a partition per new pair and requests its
run, and ``alphaforge run`` adds the ones it finds before it runs, so no daemon is needed.
"""

import gzip
import json
import os
import zlib
from glob import glob
from pathlib import Path

import polars as pl
from dagster import (
    ConfigurableResource,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.microstructure import LOB_PARTITIONS
from data_contracts import Violation, check_prices
from data_contracts.lob import MESSAGE_DTYPES, RawLob
from models.microstructure.reader import LobPair, book_columns, every_pair, pair_files
from pipelines.sources import FilePriceSource, _Skip, open_payload


class FileLobSource(ConfigurableResource):
    """LOBSTER message/order-book pairs under ``path``: a folder, a glob, or one file of a
    pair (``.csv`` or ``.csv.gz``, any depth; ticker, day and depth from the file names).
    With several depths of one ticker-day, ``depth`` picks one (default: the deepest).
    ``daily_bars`` is a path template with ``{symbol}`` of the same names' daily OHLCV files
    (read through the files price source with ``daily_columns``; ``daily_symbols`` maps a LOB
    ticker to the files' symbol where a name changed), for the Corwin-Schultz comparison and
    the daily volatility and volume of the square-root law."""

    path: str | None = None
    depth: int | None = None
    max_file_mb: int = 1024
    daily_bars: str | None = None
    daily_columns: dict[str, str] = {}
    daily_symbols: dict[str, str] = {}

    def describe(self) -> str:
        return self.path or "(no data.lob)"

    def files(self) -> list[str]:
        """The files under ``path`` (every file of a folder, a glob's matches, or one file),
        each with its partner: the same name with ``message`` and ``orderbook`` swapped."""
        if not self.path:
            return []
        pattern = str(Path(self.path).expanduser())
        if Path(pattern).is_dir():
            matches = glob(str(Path(pattern) / "*"))
        elif any(c in pattern for c in "*?["):
            matches = glob(pattern)
        else:
            matches = [pattern]
        found = [m for m in matches if Path(m).is_file()]
        partners = [p for m in found for p in _partners(Path(m)) if p.is_file()]
        return sorted({*found, *map(str, partners)})

    def pairs(self) -> dict[str, LobPair]:
        """Partition key (``TICKER_YYYY-MM-DD``) -> the pair it ingests."""
        return pair_files(self.files(), self.depth)

    def all_pairs(self) -> list[LobPair]:
        """Every pair found, at every depth (``pairs`` keeps one per ticker-day)."""
        return every_pair(self.files())

    def load(self, pair: LobPair) -> RawLob:
        """Read both files of ``pair``; what cannot be read becomes a problem in the result
        (the contract refuses the pair whole)."""
        problems: list[Violation] = []
        frames = {}
        for kind, path, names, dtypes in (
            ("message", pair.message, list(MESSAGE_DTYPES), MESSAGE_DTYPES),
            ("orderbook", pair.book, book_columns(pair.levels), None),
        ):
            if path is None:
                problems.append(
                    Violation(
                        f"has no {kind} file beside it (expected {Path(pair.expected(kind)).name})",
                        None,
                        pair.message or pair.book,
                        None,
                        None,
                        None,
                        symbol=pair.ticker,
                    )
                )
                frames[kind] = None
                continue
            frames[kind], problem = read_lob_file(Path(path), names, dtypes, self.max_file_mb)
            if problem:
                problems.append(
                    Violation(problem, None, path, None, None, None, symbol=pair.ticker)
                )
        return RawLob(
            pair.ticker,
            pair.day,
            pair.levels,
            pair.message or pair.expected("message"),
            pair.book or pair.expected("orderbook"),
            frames["message"],
            frames["orderbook"],
            problems,
        )

    def load_daily_bars(self, symbol: str, start, end) -> pl.DataFrame | None:
        """``[date, open, high, low, close, volume]`` of ``symbol`` in ``[start, end]`` from
        ``daily_bars``, typed by the price contract; None without daily bars or a file."""
        if not self.daily_bars:
            return None
        name = self.daily_symbols.get(symbol, symbol)
        path = Path(self.daily_bars.replace("{symbol}", name)).expanduser()
        if not path.is_file():
            return None
        source = FilePriceSource(
            path=str(path), columns=dict(self.daily_columns), symbol_from_filename=True
        )
        checked = check_prices(source.load_prices(start, end), end, allow_empty=True)
        keep = [
            c
            for c in ("date", "open", "high", "low", "close", "volume")
            if c in checked.clean.columns
        ]
        return checked.clean.select(keep).sort("date")


def _partners(path: Path) -> list[Path]:
    name = path.name
    if "_message_" in name:
        other = name.replace("_message_", "_orderbook_")
    elif "_orderbook_" in name:
        other = name.replace("_orderbook_", "_message_")
    else:
        return []
    stem = other.removesuffix(".gz").removesuffix(".csv")
    return [path.with_name(stem + ".csv.gz"), path.with_name(stem + ".csv")]


def read_lob_file(
    path: Path, names: list[str], dtypes: dict | None, max_file_mb: int
) -> tuple[pl.DataFrame | None, str | None]:
    """One LOBSTER file as a frame, or why it cannot be read. The fast path reads typed; a
    file that does not parse that way is read as text so the contract can name the bad line
    and value (or the wrong column count)."""
    schema = dtypes or dict.fromkeys(names, pl.Int64)
    try:
        # opened once, size-limited and inflated through a byte count (a decompression bomb is
        # refused), as every price file is
        with open_payload(path, None, max_file_mb) as handle:
            return (
                pl.read_csv(handle, has_header=False, new_columns=names, schema_overrides=schema),
                None,
            )
    except _Skip as err:
        if "readable gzip" in str(err) and _truncated(path):
            return (
                None,
                "is a truncated or corrupt gzip file (it ends before its end-of-stream marker)",
            )
        return None, str(err)
    except (pl.exceptions.PolarsError, OSError, EOFError, zlib.error) as err:
        if _truncated(path):
            return (
                None,
                "is a truncated or corrupt gzip file (it ends before its end-of-stream marker)",
            )
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    try:
        with open_payload(path, None, max_file_mb) as handle:
            return pl.read_csv(handle, has_header=False, infer_schema=False), None
    except (pl.exceptions.PolarsError, OSError) as err:
        line = _ragged_line(path)
        where = f" (line {line[0]} has {line[1]} fields, line 1 has {line[2]})" if line else ""
        return None, f"is not a readable LOBSTER CSV file{where}: {first or err}"


def _truncated(path: Path) -> bool:
    if not path.name.endswith(".gz"):
        return False
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(2**20):
                pass
    except (EOFError, OSError, zlib.error):
        return True
    return False


def _ragged_line(path: Path) -> tuple[int, int, int] | None:
    """The first line whose field count differs from line 1's (read only on the failure
    path, line by line)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        width = None
        for i, line in enumerate(handle, start=1):
            count = line.count(",") + 1
            if width is None:
                width = count
            elif count != width:
                return i, count, width
    return None


def lob_partition_keys(source: FileLobSource) -> list[str]:
    return sorted(source.pairs())


def register_partitions(instance, source: FileLobSource) -> list[str]:
    """Add the ticker-day partitions of every pair found that the instance does not have yet;
    return every key found."""
    keys = lob_partition_keys(source)
    known = set(instance.get_dynamic_partitions(LOB_PARTITIONS.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(LOB_PARTITIONS.name, new)
    return keys


def new_lob_files_sensor(job_name: str, source: FileLobSource):
    """Adds a ticker-day partition for every new LOBSTER pair under ``data.lob`` and runs
    ``job_name`` for it (and again when one of its files changes)."""

    @sensor(
        name="new_lob_files_sensor",
        job_name=job_name,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description="Adds a lob_ticker_days partition for each new or changed LOBSTER pair "
        "under data.lob and runs the microstructure job for it.",
    )
    def new_lob_files_sensor(context: SensorEvaluationContext):
        if not source.path:
            return SkipReason("data.lob is not set: no order-book files to watch")
        seen = json.loads(context.cursor) if context.cursor else {}
        pairs = source.pairs()
        state = {
            key: max(os.path.getmtime(p) for p in (pair.message, pair.book) if p)
            for key, pair in pairs.items()
        }
        changed = sorted(k for k, mtime in state.items() if seen.get(k) != mtime)
        if not changed:
            return SkipReason(f"no new or changed LOBSTER pair under {source.path}")
        known = set(context.instance.get_dynamic_partitions(LOB_PARTITIONS.name))
        new = [k for k in changed if k not in known]
        return SensorResult(
            run_requests=[
                RunRequest(run_key=f"{k}@{state[k]:.0f}", partition_key=k) for k in changed
            ],
            dynamic_partitions_requests=[LOB_PARTITIONS.build_add_request(new)] if new else [],
            cursor=json.dumps(state),
        )

    return new_lob_files_sensor


def load_day(source: FileLobSource, pair: LobPair, tick: int):
    """One pair read, validated by the contract and typed: ``(events, book)`` frames (raises
    ``ContractViolation`` naming the file, line and rule)."""
    from data_contracts.lob import check_lob
    from models.microstructure.reader import book_frame, events_frame

    checked = check_lob(source.load(pair), tick)
    return events_frame(checked.messages, pair.day), book_frame(checked.book, pair.levels)


def lob_scorer(model, n_features: int):
    """A function scoring one row of features: LightGBM's single-row C API for a tree model,
    the model's own ``predict_proba`` otherwise."""
    from models.microstructure.replay import LinearScorer, TreeScorer

    booster = model.booster() if hasattr(model, "booster") else None
    if booster is not None:
        return TreeScorer(booster, n_features).score
    estimator = getattr(model, "estimator", None)
    if hasattr(estimator, "linear"):
        w, b = estimator.linear()
        return LinearScorer(w, b, estimator.lower_, estimator.upper_).score
    return lambda values: model.predict_proba([values])[0]


def replay_day(events, book, model, speed: float | None = None, on_event=None) -> dict:
    """Replay one day through the incremental features and ``model`` (a registered LobModel),
    every event scored; returns the per-event probabilities and latencies (ns), and the wall
    time. ``on_event(scored)`` sees each event as it is scored."""
    import time

    import numpy as np

    from models.microstructure.features import BookArrays, FeatureParams, feature_names
    from models.microstructure.replay import replay

    params = FeatureParams(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in model.feature_params.items()}
    )
    names = feature_names(params)
    columns = [names.index(c) for c in model.features]
    arrays = BookArrays.from_frames(events, book, params.levels)
    score = lob_scorer(model, len(columns))
    n = len(arrays)
    latency = np.zeros(n, dtype=np.int64)
    probabilities = np.zeros((n, 3))
    started = time.perf_counter()
    for i, scored in enumerate(replay(arrays, params, columns, score, speed)):
        latency[i] = scored.latency_ns
        probabilities[i] = scored.probabilities
        if on_event is not None:
            on_event(scored)
    wall = time.perf_counter() - started
    return {"latency_ns": latency, "probabilities": probabilities, "wall_s": wall, "events": n}


def latency_summary(latency_ns, wall_s: float) -> dict[str, float]:
    import numpy as np

    us = np.asarray(latency_ns) / 1e3
    return {
        "events": int(len(us)),
        "wall_s": float(wall_s),
        "events_per_s": float(len(us) / wall_s) if wall_s > 0 else float("nan"),
        "p50_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
    }
