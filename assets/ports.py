"""What the assets need from the outside world, as protocols.

Assets depend on these shapes, not on ``pipelines/``; ``pipelines/resources.py`` provides the
implementations (local and production) and the ``Definitions`` bind them by resource key. This
keeps the import direction ``pipelines -> assets -> models``.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Protocol

import polars as pl
from dagster import AssetExecutionContext

from data_contracts import RawPrices
from data_contracts.lob import RawLob
from models.microstructure.reader import LobPair
from models.tuning import Workers


class PriceSource(Protocol):
    def load_prices(self, start: date | None = None, end: date | None = None) -> RawPrices:
        """Raw price rows dated in ``[start, end]`` with ``source_file`` and ``source_row``
        (columns may still be strings), and the files the source had to skip."""

    def describe(self) -> str:
        """Where the prices come from, for metadata and messages."""

    def load_sectors(self) -> pl.DataFrame:
        """``[symbol, sector]`` (possibly empty): the sector map for sector-neutral features."""


class LobSource(Protocol):
    def pairs(self) -> dict[str, LobPair]:
        """Ticker-day partition key -> the LOBSTER message/order-book pair it ingests."""

    def load(self, pair: LobPair) -> RawLob:
        """Both files of ``pair`` as raw frames, with what could not be read."""

    def load_daily_bars(self, symbol: str, start: date, end: date) -> pl.DataFrame | None:
        """``[date, open, high, low, close, volume]`` of ``symbol``, or None without them."""

    def describe(self) -> str:
        """Where the order books come from."""


class AltDataSource(Protocol):
    def load_alt_data(self) -> pl.DataFrame:
        """Long ``[series, kind, date, available_date, value]`` frame."""

    def load_texts(self) -> pl.DataFrame:
        """Dated text ``[date, ticker, text]`` (possibly empty) for sentiment scores."""


class Tracker(Protocol):
    experiment_name: str
    artifact_root: str  # the local artifact store ("" when the tracking server keeps them)

    def asset_run(self, context: AssetExecutionContext) -> AbstractContextManager:
        """An MLflow run for this asset, nested under the pipeline run's parent run."""

    def run_url(self, run_id: str) -> str:
        """Link to a run in the MLflow UI (its model-training view)."""

    def model_url(self, name: str, version: str) -> str:
        """Link to a registered model version's page in the MLflow UI."""

    def artifact_url(self, run_id: str, path: str) -> str:
        """Link to one of a run's artefacts in the MLflow UI."""

    def log_headline(self, context: AssetExecutionContext, metrics: dict[str, float]) -> None:
        """Put the night's headline figures on the Dagster run's parent MLflow run."""


class Tuning(Protocol):
    storage_url: str  # Optuna storage URL, secrets resolved
    shared: bool  # other workers may join its studies (RDB storage, heartbeats)
    heartbeat_s: int

    def workers(self, count: int, parent_run_id: str, n_trials: int) -> Workers | None:
        """Starts ``count`` more tuning processes on a study once its budget is queued, each
        logging its trials under the MLflow run ``parent_run_id``; None when ``count`` is 0."""


class Compute(Protocol):
    def engine(self, kind: str, log=None) -> AbstractContextManager:
        """Where the boosting fits run while the block is open: None for ``local`` (this
        process), a ``models.distributed.DaskEngine`` for ``dask``."""


class ReportStore(Protocol):
    def write(self, name: str, data: bytes | str) -> Path:
        """Write a report file atomically and return its path."""

    def read(self, name: str) -> bytes | None:
        """A report file's bytes, or None when it was never written."""

    def paths(self) -> Iterator[Path]:
        """Every report file written so far."""
