"""Resources: MLflow tracking (runs, trials, the model registry through ``registry.py``) and the
report store (data sources live in ``sources.py``)."""

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml
from dagster import AssetExecutionContext, ConfigurableResource, DagsterRunStatus

from assets._meta import yield_to_fits
from pipelines.atomic import write_atomic
from pipelines.experiment import flatten, resolve_env_refs

PARENT_TAG = "alphaforge.parent"
DAGSTER_RUN_TAG = "dagster.run_id"
# MLflow 3's UI opens in its GenAI mode (traces, judges, prompts; no registry link) unless the
# experiment says it holds model training, or the link asks for the training view. Both, then:
# the kind tag on the experiment, the query inside the hash route on every link we print.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
TRAINING_VIEW = "workflowType=machine_learning"
EXPERIMENT_NOTE = (
    "AlphaForge: one parent run per Dagster run (its name is the job and the run id's first "
    "eight characters), carrying the night's headline metrics: the ensemble's test Rank IC and "
    "its t-statistic, the best net Sharpe ratio and its deflated Sharpe ratio, PBO, VaR "
    "exceptions against the expected number, rows read and quarantined. Each asset's run is "
    "nested under it; Optuna trials under their model's run; one run per strategy under "
    "strategy_table, comparable side by side."
)


def ui_link(ui_url: str, route: str) -> str:
    """A link into the MLflow UI's hash router that opens the model-training view: the query
    goes inside the hash (``/#/experiments/1?workflowType=...``), where the router reads it."""
    sep = "&" if "?" in route else "?"
    return f"{ui_url.rstrip('/')}/#/{route.lstrip('/')}{sep}{TRAINING_VIEW}"


class TrialLogger:
    """Log each finished trial as a nested MLflow run under ``parent_run_id`` (and a progress
    line through ``log``, at most one per ``every_s`` seconds). Workers in other processes log
    theirs the same way, tagged with their ``worker`` name, so all of a study's trials sit under
    one parent.

    The run is written by a background thread (create, one batch, terminate), so tracking
    overlaps the next trial's fitting instead of adding to it; ``close`` waits for the last."""

    def __init__(
        self,
        log,
        model: str,
        n_trials: int,
        parent_run_id: str,
        client,
        worker: str = "pipeline",
        every_s: float = 0.0,
        score_name: str = "rank_ic",
    ):
        self.log, self.model, self.n_trials, self.worker = log, model, n_trials, worker
        self.score_name = score_name  # what a fold is scored by: the objective's name
        self.parent, self.client = client.get_run(parent_run_id), client
        self.pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="mlflow-trials", initializer=yield_to_fits
        )
        self.pending: list[Future] = []
        # at most one progress line per ``every_s`` seconds (and always the budget's last
        # trial): a Dagster log line is an event-log write, ~10 ms, a tenth of a fast trial
        self.every_s, self.last_line, self.best = every_s, -np.inf, -np.inf

    def __call__(self, study, trial) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        folds = trial.user_attrs.get("fold_scores", [])
        # the headline is the mean over the folds scored (a pruned trial's, over those it
        # reached); each fold is a metric of its own, so no column shows the last fold's
        # score as if it were the trial's
        metrics = [
            Metric(f"fold_{fold}_{self.score_name}", score, now, 0)
            for fold, score in enumerate(folds, start=1)
        ]
        mean = trial.value if trial.value is not None else (np.mean(folds) if folds else None)
        if mean is not None:
            metrics.append(Metric(f"mean_{self.score_name}", float(mean), now, 0))
        metrics.append(Metric("folds_scored", float(len(folds)), now, 0))
        if trial.duration is not None:
            metrics.append(Metric("duration_s", trial.duration.total_seconds(), now, 0))
        metrics.append(Metric("fit_seconds", trial.user_attrs.get("fit_seconds", 0.0), now, 0))
        tags = {
            "mlflow.parentRunId": self.parent.info.run_id,
            "optuna.study": study.study_name,
            "optuna.state": trial.state.name,
            "alphaforge.worker": self.worker,
        }
        params = [Param(k, str(v)) for k, v in trial.params.items()]
        name = f"{self.model}-trial-{trial.number}"
        self.pending.append(self.pool.submit(self._write, name, tags, metrics, params))
        if trial.value is not None:
            self.best = max(self.best, trial.value)
        now_s = time.monotonic()
        if now_s - self.last_line < self.every_s and trial.number + 1 < self.n_trials:
            return
        self.last_line = now_s
        value = f"{trial.value:+.4f}" if trial.value is not None else "—"
        best = f", best {self.best:+.4f}" if np.isfinite(self.best) else ""
        self.log(
            f"{self.model} trial {trial.number + 1}/{self.n_trials} {trial.state.name.lower()}: "
            f"{self.score_name.replace('_', ' ').replace('rank ic', 'rank IC')} {value}{best} "
            f"({self.worker})"
        )

    def _write(self, name: str, tags: dict, metrics: list, params: list) -> None:
        run = self.client.create_run(self.parent.info.experiment_id, run_name=name, tags=tags)
        self.client.log_batch(run.info.run_id, metrics=metrics, params=params)
        self.client.set_terminated(run.info.run_id)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for future in self.pending:
            future.result()  # a failed write fails the asset, as a synchronous one would


class TrackedRun:
    """One asset's MLflow run as the assets see it (``assets/ports.py``'s ``TrackedRun``): they
    log through it and never import MLflow. Every call names its run, so a parent's handle
    logs to the parent even while one of its nested runs is active."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def log_params(self, params: dict) -> None:
        import mlflow

        mlflow.log_params(params, run_id=self.run_id)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        import mlflow

        mlflow.log_metrics(metrics, run_id=self.run_id)

    def log_metric(self, key: str, value: float) -> None:
        self.log_metrics({key: value})

    def log_artifact(self, path: Path | str, folder: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), folder, run_id=self.run_id)

    def log_table(self, frame, name: str) -> None:
        """A table artefact (MLflow's JSON table view) from a polars or pandas frame."""
        import mlflow

        data = frame.to_pandas() if hasattr(frame, "to_pandas") else frame
        mlflow.log_table(data, name, run_id=self.run_id)

    def log_png(self, png: bytes, name: str) -> None:
        """An already rendered figure (``log_figure`` would render it again)."""
        import tempfile

        import mlflow

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(png)
            mlflow.MlflowClient().log_artifact(self.run_id, str(path))

    def log_figure(self, figure, name: str) -> None:
        import mlflow

        mlflow.MlflowClient().log_figure(self.run_id, figure, name)

    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow
        from mlflow.entities import RunTag

        tagged = [RunTag(key, str(value)) for key, value in tags.items()]
        mlflow.MlflowClient().log_batch(self.run_id, tags=tagged)  # one call, as mlflow.set_tags

    @contextmanager
    def nested(self, name: str, tags: dict[str, str] | None = None) -> Iterator["TrackedRun"]:
        """A run nested under this one, active (for MLflow's autologging) while open."""
        import mlflow

        with mlflow.start_run(run_name=name, nested=True, parent_run_id=self.run_id) as run:
            child = TrackedRun(run.info.run_id)
            if tags:
                child.set_tags(tags)
            yield child


class MLflowResource(ConfigurableResource):
    """Our own MLflow resource around the client (``dagster-mlflow`` is built for op jobs).

    Every Dagster run gets one parent MLflow run, tagged with the Dagster run id; every asset
    that tracks anything logs into a child run of it, tagged with the asset key.
    """

    tracking_uri: str
    artifact_root: str
    experiment_name: str = "alphaforge"
    ui_url: str = "http://127.0.0.1:5000"
    experiment_yaml: str = ""
    # local: each run holds the home's lock, so another run's RUNNING MLflow runs are dead
    exclusive: bool = True

    @property
    def uri(self) -> str:
        """The tracking URI, a ``${env:...}`` template resolved now (inside the run)."""
        return resolve_env_refs(self.tracking_uri, "tracking.mlflow_uri", os.environ)

    def _experiment_id(self, client) -> str:
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            for key, value in EXPERIMENT_KIND.items():  # an experiment made by older code
                if experiment.tags.get(key) != value:
                    client.set_experiment_tag(experiment.experiment_id, key, value)
            return experiment.experiment_id
        from mlflow.exceptions import MlflowException

        location = Path(self.artifact_root).as_uri() if self.artifact_root else None
        tags = EXPERIMENT_KIND | {"mlflow.note.content": EXPERIMENT_NOTE}
        try:
            created = client.create_experiment(
                self.experiment_name, artifact_location=location, tags=tags
            )
        except MlflowException:  # another step process created it a moment ago
            found = client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return found.experiment_id
        self._hide_empty_default(client)
        return created

    @staticmethod
    def _hide_empty_default(client) -> None:
        """Delete MLflow's "Default" experiment (id 0, created with every new store) while it
        holds no run: a newcomer's first screen should list ours only. Deleted, not removed:
        MLflow restores it with ``mlflow experiments restore`` (and the store never recreates
        it, since it still exists)."""
        from mlflow.exceptions import MlflowException

        try:
            default = client.get_experiment("0")
            if default.lifecycle_stage == "active" and not client.search_runs(["0"], max_results=1):
                client.delete_experiment("0")
        except MlflowException:  # no default experiment, or a server that refuses: leave it
            pass

    def _parent(self, client, experiment_id: str, context: AssetExecutionContext) -> str:
        from mlflow.entities import Param

        def parents() -> list:
            return client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{DAGSTER_RUN_TAG}` = '{context.run_id}' and tags.`{PARENT_TAG}` = 'true'",
                order_by=["attributes.start_time ASC"],
            )

        found = parents()
        if found:
            return found[0].info.run_id
        self._end_stale_runs(client, experiment_id, context, self.exclusive)
        run = client.create_run(
            experiment_id,
            run_name=f"{context.job_name}-{context.run_id[:8]}",
            tags={
                DAGSTER_RUN_TAG: context.run_id,
                PARENT_TAG: "true",
                "dagster.job": context.job_name,
            },
        )
        # two step processes of one run (multiprocess executor) may both have found no parent
        # and created one: the oldest stays, the later one deletes its own
        first = parents()[0].info.run_id
        if first != run.info.run_id:
            client.delete_run(run.info.run_id)
            return first
        if self.experiment_yaml:  # the resolved experiment: enough to reproduce this run
            client.log_text(run.info.run_id, self.experiment_yaml, "experiment.yaml")
            flat = flatten(yaml.safe_load(self.experiment_yaml))
            params = [
                Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v))
                for k, v in flat.items()
            ]
            client.log_batch(run.info.run_id, params=params)
        return run.info.run_id

    @staticmethod
    def _end_stale_runs(
        client, experiment_id: str, context: AssetExecutionContext, exclusive: bool
    ) -> None:
        """Mark KILLED the MLflow runs that a killed run of *this* home's Dagster instance left
        RUNNING. Called before this run's parent run exists: a RUNNING run that traces back
        (through ``mlflow.parentRunId``) to another Dagster run of this instance is dead when
        this run holds the home's lock (``exclusive``, local), or when the instance shows that
        run finished (prod, where Dagster's run monitoring fails dead runs). Runs of other
        homes on a shared MLflow server are left alone."""
        running = client.search_runs(
            [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
        )
        owner: dict[str, str | None] = {}

        def dagster_run(run) -> str | None:
            if run.info.run_id not in owner:
                tag = run.data.tags.get(DAGSTER_RUN_TAG)
                parent = run.data.tags.get("mlflow.parentRunId")
                owner[run.info.run_id] = tag or (
                    dagster_run(client.get_run(parent)) if parent else None
                )
            return owner[run.info.run_id]

        def dead(run_id: str) -> bool:
            run = context.instance.get_run_by_id(run_id)
            # holding the home's lock, no other run of this instance can be alive
            return run is not None and (exclusive or run.is_finished)

        stale = [r for r in running if (d := dagster_run(r)) and d != context.run_id and dead(d)]
        for run in stale:
            client.set_terminated(run.info.run_id, "KILLED")
        if stale:
            context.log.warning(f"marked {len(stale)} MLflow runs of an interrupted run KILLED")
        # a run killed between two tracked assets left its parent FINISHED (each asset ends
        # it): it mirrors the Dagster run, which is FAILURE by now (the lock's next holder
        # marks a killed run so)
        finished = client.search_runs(
            [experiment_id],
            filter_string=f"attributes.status = 'FINISHED' and tags.`{PARENT_TAG}` = 'true'",
            max_results=200,
            order_by=["attributes.start_time DESC"],
        )
        for run in finished:
            dagster = context.instance.get_run_by_id(run.data.tags.get(DAGSTER_RUN_TAG, ""))
            if dagster is not None and dagster.status in (
                DagsterRunStatus.FAILURE,
                DagsterRunStatus.CANCELED,
            ):
                client.set_terminated(run.info.run_id, "FAILED")

    @contextmanager
    def asset_run(self, context: AssetExecutionContext) -> Iterator:
        import mlflow
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        mlflow.set_tracking_uri(self.uri)
        client = mlflow.MlflowClient(self.uri)
        experiment_id = self._experiment_id(client)
        mlflow.set_experiment(experiment_id=experiment_id)
        parent = self._parent(client, experiment_id, context)
        client.update_run(parent, status="RUNNING")
        asset = context.asset_key.to_user_string()
        tags = {
            MLFLOW_PARENT_RUN_ID: parent,
            DAGSTER_RUN_TAG: context.run_id,
            "dagster.asset_key": asset,
        }
        # the run starts when the step did, so its duration is the step's compute even when the
        # asset opens it after the work (most log their results at the end)
        created = client.create_run(
            experiment_id, start_time=_step_started_ms(context), tags=tags, run_name=asset
        )
        try:
            with mlflow.start_run(run_id=created.info.run_id):
                yield TrackedRun(created.info.run_id)
        except BaseException:
            client.set_terminated(parent, "FAILED")
            raise
        client.set_terminated(parent, "FINISHED")

    def log_headline(self, context: AssetExecutionContext, metrics: dict[str, float]) -> None:
        """Log the night's headline ``metrics`` on this Dagster run's parent MLflow run (the
        one compared from night to night), beside the asset's own run."""
        import math

        import mlflow

        client = mlflow.MlflowClient(self.uri)
        parent = self._parent(client, self._experiment_id(client), context)
        finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        if finite:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            client.log_batch(parent, metrics=[Metric(k, v, now, 0) for k, v in finite.items()])

    def registry(self):
        """The model registry of this tracking store (``registry.py``)."""
        from pipelines.registry import MLflowRegistry

        return MLflowRegistry(self.uri, Path(self.artifact_root) if self.artifact_root else None)

    def trial_logger(
        self,
        log,
        model: str,
        n_trials: int,
        parent_run_id: str,
        every_s: float = 0.0,
        score_name: str = "rank_ic",
    ) -> TrialLogger:
        """A study callback logging each finished trial under ``parent_run_id``."""
        import mlflow

        return TrialLogger(
            log,
            model,
            n_trials,
            parent_run_id,
            mlflow.MlflowClient(self.uri),
            every_s=every_s,
            score_name=score_name,
        )

    def run_url(self, run_id: str) -> str:
        import mlflow

        run = mlflow.MlflowClient(self.uri).get_run(run_id)
        return ui_link(self.ui_url, f"experiments/{run.info.experiment_id}/runs/{run_id}")

    def model_url(self, name: str, version: str) -> str:
        return ui_link(self.ui_url, f"models/{name}/versions/{version}")

    def artifact_url(self, run_id: str, path: str) -> str:
        """Link to an artefact of a run in the MLflow UI (an HTML one is shown there)."""
        import mlflow

        run = mlflow.MlflowClient(self.uri).get_run(run_id)
        route = f"experiments/{run.info.experiment_id}/runs/{run_id}/artifacts/{path}"
        return ui_link(self.ui_url, route)


def _step_started_ms(context: AssetExecutionContext) -> int:
    """When this step started (its STEP_START event), in ms; now if it cannot be found."""
    from dagster import DagsterEventType

    try:
        step = context.get_step_execution_context().step.key
        records = context.instance.get_records_for_run(
            context.run_id, of_type=DagsterEventType.STEP_START
        ).records
        starts = [r.timestamp for r in records if r.event_log_entry.step_key == step]
    except Exception:  # noqa: BLE001 (a context without an event log, e.g. a direct call)
        starts = []
    return int((starts[-1] if starts else time.time()) * 1000)


class ReportsResource(ConfigurableResource):
    """Reports as plain files under one folder, each written atomically."""

    base_dir: str

    def write(self, name: str, data: bytes | str) -> Path:
        payload = data.encode() if isinstance(data, str) else data
        return write_atomic(Path(self.base_dir) / name, lambda f: f.write(payload))

    def read(self, name: str) -> bytes | None:
        path = Path(self.base_dir) / name
        return path.read_bytes() if path.is_file() else None

    def paths(self) -> Iterator[Path]:
        return (p for p in sorted(Path(self.base_dir).iterdir()) if not p.name.startswith("."))


class DaskResource(ConfigurableResource):
    """The Dask cluster of ``models.engine: dask``: the scheduler at ``scheduler`` (kept as the
    experiment's ``${env:...}`` reference, resolved only when a step connects, so the address
    never shows in the Dagster UI), or, without one, a ``LocalCluster`` of ``n_workers``
    one-thread worker processes on loopback, its dashboard at ``dashboard`` (loopback by default;
    None: no dashboard), started for the step and stopped after it."""

    scheduler: str | None = None
    n_workers: int = 2
    dashboard: str | None = "127.0.0.1:8787"

    @contextmanager
    def engine(self, kind: str, log=None) -> Iterator["DaskEngine | None"]:  # noqa: F821
        """None for the local engine; a connected :class:`models.learning.distributed.DaskEngine` for
        ``dask``, closed (and a local cluster stopped) when the block exits."""
        if kind == "local":
            yield None
            return
        if kind != "dask":
            raise ValueError(f"models.engine must be 'local' or 'dask', got {kind!r}")
        import logging

        from distributed import Client, LocalCluster

        from models.learning.distributed import DaskEngine
        from pipelines.experiment import resolve_env_refs

        address = resolve_env_refs(self.scheduler, "models.dask_scheduler")
        cluster = None
        if address is None:
            cluster = LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=1,
                processes=True,  # lightgbm.dask needs a process per worker (one network each)
                host="127.0.0.1",
                dashboard_address=self.dashboard,
                silence_logs=logging.WARNING,
            )
        client = Client(cluster if cluster is not None else address)
        try:
            if log is not None:
                where = "a local cluster" if cluster is not None else "the scheduler"
                workers = len(client.scheduler_info(n_workers=-1)["workers"])
                link = client.dashboard_link if self.dashboard or cluster is None else "off"
                log(f"Dask: {where}, {workers} workers, dashboard {link}")
            yield DaskEngine(client)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
