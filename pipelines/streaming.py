"""``alphaforge stream``: score daily bars as they arrive, from a file or a local socket.

Bars are CSV lines ``symbol,date,open,high,low,close,volume`` (open/high/low/volume may be
empty). A day is complete when a bar of a later date arrives or the stream ends. Each day's
bars update the incremental features (``models.features.streaming``), the champion scores them, and the
signals are emitted with the time from the day's last bar to its scores.
"""

import io
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from models.features import build_feature_matrix
from models.features.streaming import IncrementalFeatures

BAR_SCHEMA = {
    "symbol": pl.String,
    "date": pl.Date,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}


def _parse(lines: list[str]) -> pl.DataFrame:
    return pl.read_csv(
        io.StringIO("\n".join(lines)), has_header=False, new_columns=list(BAR_SCHEMA),
        schema_overrides=BAR_SCHEMA,
    )  # fmt: skip


MAX_LINE = 2**16  # a bar is ~60 bytes; a line longer than this is not a bar


def bounded(stream, limit: int = MAX_LINE) -> Iterator[str]:
    """The lines of a text stream, each read with a bound (``readline(limit)``), so a feed that
    never sends a newline cannot fill the memory: a longer line raises ``ValueError``."""
    number = 0
    while line := stream.readline(limit + 1):
        number += 1
        if len(line) > limit:
            raise ValueError(f"line {number} is longer than {limit:,} bytes: not a bar")
        yield line


def days_from_lines(lines: Iterable[str]) -> Iterator[pl.DataFrame]:
    """Group a stream of bar lines into days (a header line starting with ``symbol`` is skipped).
    A line that is not a bar (too long, not 7 comma-separated fields) raises ``ValueError``
    naming its line number."""
    pending: list[str] = []
    current = None
    if hasattr(lines, "readline"):
        lines = bounded(lines)
    for number, raw in enumerate(lines, 1):
        if len(raw) > MAX_LINE:
            raise ValueError(f"line {number} is longer than {MAX_LINE:,} bytes: not a bar")
        line = raw.strip()
        if not line or line.startswith("symbol,"):
            continue
        fields = line.split(",")
        if len(fields) != len(BAR_SCHEMA):
            raise ValueError(
                f"line {number}: expected {len(BAR_SCHEMA)} comma-separated fields "
                f"({','.join(BAR_SCHEMA)}), got {len(fields)}: {line[:80]!r}"
            )
        day = fields[1]
        if current is not None and day != current:
            yield _parse(pending)
            pending = []
        current = day
        pending.append(line)
    if pending:
        yield _parse(pending)


def lines_from_socket(address: str) -> Iterator[str]:
    """Lines from a TCP feed at ``host:port`` (loopback only) until it closes."""
    host, port = address.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the stream reads a local socket only, not {host}")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        yield from bounded(conn.makefile("r", encoding="utf-8"))


@dataclass(frozen=True)
class Scored:
    day: object
    signals: pl.DataFrame  # symbol, date, score, rank
    latency_s: float


def feature_builder(config: dict, alt: pl.DataFrame, sectors: pl.DataFrame | None):
    """The pipeline's feature matrix for a price panel, with the experiment's settings."""

    def build(prices: pl.LazyFrame) -> pl.LazyFrame:
        return build_feature_matrix(
            prices,
            alt.lazy(),
            config["windows"],
            feature_set=config["feature_set"],
            names=config["names"],
            cs_rank=config["cs_rank"],
            cs_zscore=config["cs_zscore"],
            winsorize=config["winsorize"],
            sectors=sectors.lazy() if sectors is not None else None,
            sector_neutral=config["sector_neutral"],
            # as stored in the lake, so the live features are the values the models trained on
            dtype=config.get("dtype", "float64"),
        )

    return build


def score_stream(
    days: Iterable[pl.DataFrame], features: IncrementalFeatures, model, columns: list[str]
) -> Iterator[Scored]:
    """Features and scores for each day as it completes; ``columns`` are the model's inputs
    in order (a feature the stream cannot compute, such as news sentiment, is null)."""
    for bars in days:
        start = time.perf_counter()
        rows = features.update(bars)
        missing = [c for c in columns if c not in rows.columns]
        X = rows.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in missing)
        scores = model.predict(X.select(columns).cast(pl.Float64).to_numpy())
        signals = (
            rows.select("symbol", "date")
            .with_columns(score=pl.Series(np.asarray(scores, dtype=float)))
            .sort("score", descending=True)
            .with_row_index("rank", offset=1)
        )
        yield Scored(bars["date"][0], signals, time.perf_counter() - start)


def latency_summary(latencies: list[float]) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000
    return {
        "days": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def history_before(lake: Path, first_day) -> pl.DataFrame:
    prices = pl.read_parquet(lake / "market_prices.parquet")
    return prices.filter(pl.col("date") < first_day)
