"""The parquet lake: polars frames as parquet, other artefacts pickled; every write atomic.

A pickle runs code when it is read, so the lake reads only pickles it wrote itself: each
``.pkl`` is written 0600 with an HMAC-SHA256 of its bytes under a key of the lake's own
(``<lake>/.lake.key``, 0600, made on first use), and a file whose digest does not match (a
foreign pickle put in its place, a tampered one, one written by an older version) is refused
before a byte of it is unpickled.
"""

import hashlib
import hmac
import os
import pickle
import secrets
from pathlib import Path

import polars as pl
from dagster import (
    ConfigurableIOManager,
    DagsterInvariantViolationError,
    DagsterRunStatus,
    InitResourceContext,
    InputContext,
    MetadataValue,
    OutputContext,
)
from pydantic import PrivateAttr

from assets._meta import peak_rss_mib, start_peak_window
from models.data.panel import partition_keys
from models.learning.folds import release_memory
from pipelines.atomic import sweep_orphans, write_atomic
from pipelines.lock import RunLock, dead_holders


class LakeIOManager(ConfigurableIOManager):
    """``<base_dir>/<asset>.parquet`` for polars frames, ``<asset>.pkl`` for anything else
    (fitted models, result objects). Daily-partitioned frames get ``<asset>/<YYYY-MM-DD>.parquet``,
    one file per partition, also when one run writes a range (a backfill); an unpartitioned
    reader of a partitioned asset gets every partition written so far, concatenated."""

    base_dir: str
    lock: bool = True
    _lock: RunLock | None = PrivateAttr(default=None)
    _peaks: dict[str, float] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Hold the home's run lock for the whole run: a concurrent run is refused. Reading a
        value outside a run (``Definitions.load_asset_value``, notebooks) takes no lock. With
        ``lock=False`` (prod: each step is a process of its own, and the instance's run queue
        runs one run at a time) nothing is taken here."""
        start_peak_window()  # the first step's peak counts from here
        if context.dagster_run is None or not self.lock:
            return
        self._lock = RunLock(Path(self.base_dir))
        self._lock.acquire(f"Dagster run {context.run_id}")
        # a run killed mid-write leaves temp files beside the lake and the reports; with the
        # lock held (and the in-process executor) nothing else is writing them now
        home = Path(self.base_dir).parent
        for path in [*sweep_orphans(Path(self.base_dir)), *sweep_orphans(home / "reports")]:
            context.log.warning(f"removed {path.name}, left by an interrupted write")
        # a previous holder died if its process is gone: if the instance still shows its run
        # as started, say in the Dagster UI that it was killed
        mark_killed_runs(
            context.instance, dead_holders(self._lock.previous), context.run_id, context.log
        )

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._lock is not None:
            self._lock.release()

    def _path(self, context: OutputContext | InputContext) -> Path:
        return Path(self.base_dir, *context.asset_key.path)

    def handle_output(self, context: OutputContext, obj: object) -> None:
        self._write(context, obj)
        # the step's peak resident memory: its inputs loaded, its work and this write; then a
        # new window for the next step (in-process executor: steps run one after another; a
        # step of its own process counts from the process's start)
        try:
            step = context.step_key
        except DagsterInvariantViolationError:  # an output context built outside a run
            step = context.asset_key.to_user_string()
        self._peaks[step] = max(peak_rss_mib(), self._peaks.get(step, 0.0))
        context.add_output_metadata({"peak_rss_mib": round(self._peaks[step], 1)})
        _drop_captured(context)
        release_memory()  # what the step freed goes back to the OS before the next one starts
        start_peak_window()

    def _write(self, context: OutputContext, obj: object) -> None:
        stem = self._path(context)
        if context.has_asset_partitions:
            self._write_partitions(context, stem, obj)
            return
        if isinstance(obj, pl.DataFrame):
            path = write_atomic(stem.with_suffix(".parquet"), lambda f: obj.write_parquet(f))
            stale = stem.with_suffix(".pkl")
        else:
            payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            signed = _signature(self._key(), payload) + payload
            path = write_atomic(stem.with_suffix(".pkl"), lambda f: f.write(signed), mode=0o600)
            stale = stem.with_suffix(".parquet")
        stale.unlink(missing_ok=True)
        context.add_output_metadata({"path": str(path), "bytes": path.stat().st_size})

    def _write_partitions(self, context: OutputContext, folder: Path, frame: pl.DataFrame) -> None:
        keys = context.asset_partition_keys
        part_of = partition_keys(frame, keys)
        parts = frame.with_columns(_key=part_of).partition_by("_key", as_dict=True)
        counts = {}
        for key in keys:
            part = parts.get((key,), frame.clear().with_columns(_key=pl.lit(key))).drop("_key")
            write_atomic(folder / f"{key}.parquet", lambda f, p=part: p.write_parquet(f))
            counts[key] = len(part)
        context.add_output_metadata(
            {
                "path": str(folder),
                "partitions_written": len(keys),
                "rows_written": len(frame),
                "rows_per_partition": MetadataValue.json(counts),
            }
        )

    def load_input(self, context: InputContext) -> object:
        stem = self._path(context)
        if context.has_asset_partitions:
            # in key order: Dagster hands a dynamic partition set over in no fixed order, and
            # the concatenation's column order follows it (a 10-level day first, or a 1-level)
            files = [stem / f"{k}.parquet" for k in sorted(context.asset_partition_keys)]
            present = [f for f in files if f.exists()]
            return (
                pl.concat([pl.read_parquet(f) for f in present], how="diagonal_relaxed")
                if present
                else pl.DataFrame()
            )
        parquet = stem.with_suffix(".parquet")
        if parquet.exists():
            if _wants_lazy(context):  # the step reads the columns it needs when it needs them
                return pl.scan_parquet(parquet)
            return pl.read_parquet(parquet)
        return self.read_pickle(stem.with_suffix(".pkl"))

    def read_pickle(self, path: Path) -> object:
        """A pickled artefact of this lake, once its signature is checked (benchmarks and
        tests read finished runs' lakes with it)."""
        data = Path(path).read_bytes()
        head, payload = data[: len(SIGNED) + 64], data[len(SIGNED) + 64 :]
        key = self._key(create=False)
        if not key or not hmac.compare_digest(head, _signature(key, payload)):
            raise ValueError(
                f"refusing to unpickle {path}: its digest is not one this lake wrote (a file "
                "put in its place or changed, or written by an older AlphaForge); "
                "materialize the asset again to rewrite it"
            )
        try:
            return pickle.loads(payload)  # noqa: S301 (our own bytes: the digest matched)
        except (ModuleNotFoundError, AttributeError) as err:  # a class that moved or went
            raise ValueError(
                f"cannot read {path}: it was written by another AlphaForge version ({err}); "
                "materialize the asset again to rewrite it"
            ) from err

    def _key(self, create: bool = True) -> bytes:
        """The lake's pickle key, made once (atomically: several step processes may race)."""
        path = Path(self.base_dir) / ".lake.key"
        if not path.exists() and create:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".lake.key.{os.getpid()}.{secrets.token_hex(4)}")
            tmp.write_bytes(secrets.token_bytes(32))
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, path)  # fails if another process made it first: theirs stands
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_bytes() if path.exists() else b""


def _drop_captured(context: OutputContext) -> None:
    """Forget the in-memory copy of an output once the lake holds it, in runs of the CLI.

    ``alphaforge run`` executes in process (``execute_in_process``), which keeps every step's
    output value in a dict for the run's result, so every frame of the run stays resident to
    its end: on Alpha158 over the shared set that was the 1.7 GB feature matrix and the price
    frames, 3.5 GB under the training steps. The CLI reads only the run's events; other in-
    process callers (tests reading ``output_for_node``) keep their values."""
    try:
        step = context.step_context
        if step.dagster_run.tags.get("alphaforge/source") != "cli":
            return
        captured = step.output_capture
    except (DagsterInvariantViolationError, AttributeError):  # a context built outside a run
        return
    this = (context.step_key, context.name, context.mapping_key)
    for handle in [h for h in captured or () if (h.step_key, h.output_name, h.mapping_key) == this]:
        del captured[handle]


def mark_killed_runs(instance, run_ids: list[str], current: str, log) -> list[str]:
    """Report FAILURE for each of ``run_ids`` (previous lock holders whose process is gone)
    that the instance still shows as starting or started; returns those marked."""
    marked = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id) if instance else None
        if (
            run is not None
            and run.run_id != current
            and run.status in (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING)
        ):
            instance.report_run_failed(
                run, "interrupted (its process died); marked failed by the next run"
            )
            log.warning(f"marked run {run.run_id} FAILURE: its process died")
            marked.append(run.run_id)
    return marked


SIGNED = b"alphaforge-pickle-hmac-sha256:"


def _signature(key: bytes, payload: bytes) -> bytes:
    """The header of a signed pickle: a marker and the hex HMAC of its payload."""
    return SIGNED + hmac.new(key, payload, hashlib.sha256).hexdigest().encode()


def _wants_lazy(context: InputContext) -> bool:
    """The input is annotated ``pl.LazyFrame``: hand it a scan of the file, not the frame."""
    try:
        return context.dagster_type.typing_type is pl.LazyFrame
    except DagsterInvariantViolationError:  # no type for this input (loaded outside an op)
        return False
