"""Resources: MLflow tracking and the report store (data sources live in ``sources.py``)."""

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from dagster import AssetExecutionContext, ConfigurableResource, DagsterRunStatus

from pipelines.atomic import write_atomic
from pipelines.experiment import flatten, resolve_env_refs

PARENT_TAG = "alphaforge.parent"
DAGSTER_RUN_TAG = "dagster.run_id"


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
            return experiment.experiment_id
        from mlflow.exceptions import MlflowException

        location = Path(self.artifact_root).as_uri() if self.artifact_root else None
        try:
            return client.create_experiment(self.experiment_name, artifact_location=location)
        except MlflowException:  # another step process created it a moment ago
            found = client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return found.experiment_id

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
        try:
            with mlflow.start_run(run_name=asset, experiment_id=experiment_id, tags=tags) as run:
                yield run
        except BaseException:
            client.set_terminated(parent, "FAILED")
            raise
        client.set_terminated(parent, "FINISHED")

    def run_url(self, run_id: str) -> str:
        import mlflow

        run = mlflow.MlflowClient(self.uri).get_run(run_id)
        return f"{self.ui_url}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


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
        """None for the local engine; a connected :class:`models.distributed.DaskEngine` for
        ``dask``, closed (and a local cluster stopped) when the block exits."""
        if kind == "local":
            yield None
            return
        if kind != "dask":
            raise ValueError(f"models.engine must be 'local' or 'dask', got {kind!r}")
        import logging

        from distributed import Client, LocalCluster

        from models.distributed import DaskEngine
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
