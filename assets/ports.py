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
from models.learning.tuning import Workers
from models.microstructure.reader import LobPair


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


REGISTERED_MODEL = "alphaforge-ensemble"


class ModelRefused(ValueError):
    """A model that is not one of our registry's, or whose artifact cannot be trusted."""


class ModelRegistry(Protocol):
    """Registered model versions: what the champion gates read and move."""

    def register(
        self,
        model: object,
        *,
        name: str,
        artifact: str,
        example,
        output,
        pip_requirements: list[str],
    ) -> str:
        """Log ``model`` into the asset's active run, register it as a new version of ``name``
        and point ``@challenger`` at it; returns the version (``TypeError`` for a model with
        types the loader does not trust)."""

    def version(self, name: str, alias: str):
        """The version holding ``alias`` (``.version``, ``.tags``, ``.creation_timestamp``),
        or None."""

    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    def tag_version(self, name: str, version: str, tags: dict[str, str]) -> None: ...

    def describe(self, name: str, description: str, version: str | None = None) -> None:
        """The registered model's description, or one version's."""

    def load(self, name: str, alias: str):
        """The model ``name@alias``, its artifact checked (else ``ModelRefused``)."""


class TrackedRun(Protocol):
    """One asset's tracked run: what it logs, where the UI shows it."""

    run_id: str

    def log_params(self, params: dict) -> None: ...

    def log_metrics(self, metrics: dict[str, float]) -> None: ...

    def log_metric(self, key: str, value: float) -> None: ...

    def log_artifact(self, path: Path | str, folder: str | None = None) -> None:
        """A file, under ``folder`` of the run's artefacts."""

    def log_table(self, frame, name: str) -> None:
        """A table artefact from a polars or pandas frame."""

    def log_png(self, png: bytes, name: str) -> None:
        """An already rendered figure, as the artefact ``name`` (safe from another thread)."""

    def log_figure(self, figure, name: str) -> None:
        """A matplotlib figure, rendered as the artefact ``name``."""

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def nested(self, name: str, tags: dict[str, str] | None = None) -> AbstractContextManager:
        """A run nested under this one (yields a ``TrackedRun``)."""


class TrialCallback(Protocol):
    def __call__(self, study, trial) -> None: ...

    def close(self) -> None:
        """Wait for the trials still being written."""


class Tracker(Protocol):
    experiment_name: str
    artifact_root: str  # the local artifact store ("" when the tracking server keeps them)

    def asset_run(self, context: AssetExecutionContext) -> AbstractContextManager:
        """A run for this asset (yields a ``TrackedRun``), nested under the pipeline run's
        parent run."""

    def registry(self) -> ModelRegistry:
        """The registered models of this tracking store."""

    def trial_logger(
        self,
        log,
        model: str,
        n_trials: int,
        parent_run_id: str,
        every_s: float = 0.0,
        score_name: str = "rank_ic",
    ) -> "TrialCallback":
        """An Optuna callback logging each finished trial as a run under ``parent_run_id``
        (and a progress line through ``log``, at most one per ``every_s`` seconds)."""

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
        process), a ``models.learning.distributed.DaskEngine`` for ``dask``."""


class ReportStore(Protocol):
    def write(self, name: str, data: bytes | str) -> Path:
        """Write a report file atomically and return its path."""

    def read(self, name: str) -> bytes | None:
        """A report file's bytes, or None when it was never written."""

    def paths(self) -> Iterator[Path]:
        """Every report file written so far."""
