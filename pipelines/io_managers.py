"""The parquet lake: polars frames as parquet, other artefacts pickled; every write atomic."""

import pickle
from datetime import date
from pathlib import Path

import polars as pl
from dagster import (
    ConfigurableIOManager,
    DagsterRunStatus,
    InitResourceContext,
    InputContext,
    OutputContext,
)
from pydantic import PrivateAttr

from pipelines.atomic import sweep_orphans, write_atomic
from pipelines.lock import RunLock, dead_holder

# Partitioned frames are split by this column into one file per partition (a date key, or
# the ticker-day key of the order-book partitions).
PARTITION_COLUMNS = ("date", "partition_date", "lob_partition")


class LakeIOManager(ConfigurableIOManager):
    """``<base_dir>/<asset>.parquet`` for polars frames, ``<asset>.pkl`` for anything else
    (fitted models, result objects). Daily-partitioned frames get ``<asset>/<YYYY-MM-DD>.parquet``,
    one file per partition, also when one run writes a range (a backfill); an unpartitioned
    reader of a partitioned asset gets every partition written so far, concatenated."""

    base_dir: str
    lock: bool = True
    _lock: RunLock | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Hold the home's run lock for the whole run: a concurrent run is refused. Reading a
        value outside a run (``Definitions.load_asset_value``, notebooks) takes no lock. With
        ``lock=False`` (prod: each step is a process of its own, and the instance's run queue
        runs one run at a time) nothing is taken here."""
        if context.dagster_run is None or not self.lock:
            return
        self._lock = RunLock(Path(self.base_dir))
        self._lock.acquire(f"Dagster run {context.run_id}")
        # a run killed mid-write leaves temp files beside the lake and the reports; with the
        # lock held (and the in-process executor) nothing else is writing them now
        home = Path(self.base_dir).parent
        for path in [*sweep_orphans(Path(self.base_dir)), *sweep_orphans(home / "reports")]:
            context.log.warning(f"removed {path.name}, left by an interrupted write")
        # the previous holder of the lock died if its process is gone: if the instance still
        # shows its run as started, say in the Dagster UI that it was killed
        dead = dead_holder(self._lock.previous)
        run = context.instance.get_run_by_id(dead) if dead and context.instance else None
        if (
            run is not None
            and run.run_id != context.run_id
            and run.status
            in (
                DagsterRunStatus.STARTED,
                DagsterRunStatus.STARTING,
            )
        ):
            context.instance.report_run_failed(
                run, "interrupted (its process died); marked failed by the next run"
            )
            context.log.warning(f"marked run {run.run_id} FAILURE: its process died")

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._lock is not None:
            self._lock.release()

    def _path(self, context: OutputContext | InputContext) -> Path:
        return Path(self.base_dir, *context.asset_key.path)

    def handle_output(self, context: OutputContext, obj: object) -> None:
        stem = self._path(context)
        if context.has_asset_partitions:
            self._write_partitions(context, stem, obj)
            return
        if isinstance(obj, pl.DataFrame):
            path = write_atomic(stem.with_suffix(".parquet"), lambda f: obj.write_parquet(f))
            stale = stem.with_suffix(".pkl")
        else:
            path = write_atomic(
                stem.with_suffix(".pkl"),
                lambda f: pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL),
            )
            stale = stem.with_suffix(".parquet")
        stale.unlink(missing_ok=True)
        context.add_output_metadata({"path": str(path), "bytes": path.stat().st_size})

    def _write_partitions(self, context: OutputContext, folder: Path, frame: pl.DataFrame) -> None:
        column = next(c for c in PARTITION_COLUMNS if c in frame.columns)
        keys = context.asset_partition_keys
        parts = {
            d.isoformat() if isinstance(d, date) else d: part
            for (d,), part in frame.partition_by(column, as_dict=True, include_key=True).items()
            if isinstance(d, date | str)
        }
        undated = frame.filter(pl.col(column).is_null())  # file-level quarantine entries
        for i, key in enumerate(keys):
            part = parts.get(key, frame.clear())
            part = pl.concat([undated, part]) if i == 0 and len(undated) else part
            write_atomic(folder / f"{key}.parquet", lambda f, p=part: p.write_parquet(f))
        context.add_output_metadata(
            {"path": str(folder), "partitions_written": len(keys), "rows_written": len(frame)}
        )

    def load_input(self, context: InputContext) -> object:
        stem = self._path(context)
        if context.has_asset_partitions:
            files = [stem / f"{k}.parquet" for k in context.asset_partition_keys]
            present = [f for f in files if f.exists()]
            return (
                pl.concat([pl.read_parquet(f) for f in present], how="diagonal_relaxed")
                if present
                else pl.DataFrame()
            )
        parquet = stem.with_suffix(".parquet")
        if parquet.exists():
            return pl.read_parquet(parquet)
        with stem.with_suffix(".pkl").open("rb") as handle:
            return pickle.load(handle)
