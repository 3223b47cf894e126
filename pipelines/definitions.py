"""The one ``Definitions``: assets, checks, jobs, schedules and resources, wired here only.

What runs is decided by the experiment (``pipelines/experiment.py``): the built-in profile,
``ALPHAFORGE_CONFIG``'s file, environment overrides. Dagster loads ``defs`` lazily, so a broken
experiment is reported when the code location loads, not at import.
"""

import hashlib
import os
from collections.abc import Mapping

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
    definitions,
    in_process_executor,
    load_assets_from_modules,
)

from assets import explain, features, ingest, portfolio, risk, training
from pipelines.experiment import Resolved, resolve, resolve_env_refs
from pipelines.io_managers import LakeIOManager
from pipelines.resources import MLflowResource, ReportsResource
from pipelines.sensors import AlertResource, alert_on_run_failure, new_files_sensor
from pipelines.settings import Settings, load_settings
from pipelines.sources import (
    BundledAltSource,
    BundledPriceSource,
    FilePriceSource,
    HttpPriceSource,
)

ASSET_MODULES = [ingest, features, training, portfolio, explain, risk]
JOB = "all_assets_job"


def build_resources(
    settings: Settings, resolved: Resolved, environ: Mapping[str, str] = os.environ
) -> dict[str, object]:
    """The local (embedded) resource set; stores default to SQLite under ``settings.home``."""
    exp = resolved.experiment
    data, tracking = exp.data, exp.tracking
    if data.source == "files":
        prices = FilePriceSource(
            path=data.path,
            columns=dict(data.columns),
            symbol_from_filename=data.symbol_from_filename,
            sectors=data.sectors,
            root=data.root,
        )
    elif data.source == "http":
        prices = HttpPriceSource(
            url=data.url,
            symbols=list(data.universe),
            columns=dict(data.columns),
            api_key=resolve_env_refs(data.api_key, "data.api_key", environ),
            sectors=data.sectors,
        )
    else:
        prices = BundledPriceSource()
    return {
        "lake": LakeIOManager(base_dir=str(settings.lake)),
        "price_source": prices,
        "alt_source": BundledAltSource(),
        "tracker": MLflowResource(
            tracking_uri=resolve_env_refs(tracking.mlflow_uri, "tracking.mlflow_uri", environ)
            or settings.mlflow_uri,
            artifact_root=str(settings.mlflow_artifacts),
            experiment_name=tracking.experiment,
            ui_url=settings.mlflow_ui,
            experiment_yaml=resolved.to_yaml(),
        ),
        "optuna_storage": resolve_env_refs(
            tracking.optuna_storage, "tracking.optuna_storage", environ
        )
        or settings.optuna_storage,
        "reports": ReportsResource(base_dir=str(settings.reports)),
        "alerts": AlertResource(alert_dir=str(settings.alerts), webhook_url=settings.alert_webhook),
    }


def experiment_tags(resolved: Resolved) -> dict[str, str]:
    """The resolved experiment on every Dagster run, so any result can be reproduced."""
    text = resolved.to_yaml()
    return {
        "alphaforge/profile": resolved.experiment.profile,
        "alphaforge/experiment_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
        "alphaforge/experiment": text,
    }


def build_definitions(
    settings: Settings, resolved: Resolved, environ: Mapping[str, str] = os.environ
) -> Definitions:
    all_assets_job = define_asset_job(
        JOB,
        selection=AssetSelection.all(),
        config=resolved.run_config(),
        run_tags=experiment_tags(resolved),
        description="Ingest, validate, features, training, portfolio, risk and explanations.",
    )
    nightly = ScheduleDefinition(
        name=f"{JOB}_schedule",
        job=all_assets_job,
        cron_schedule=resolved.experiment.schedule.cron,
        execution_timezone=resolved.experiment.schedule.timezone,
        run_config=resolved.run_config(),
        default_status=DefaultScheduleStatus.STOPPED,
        description="Nightly: the experiment's whole graph, weekdays after the US close by default.",
    )
    return Definitions(
        assets=load_assets_from_modules(ASSET_MODULES),
        jobs=[all_assets_job],
        schedules=[nightly],
        sensors=[
            alert_on_run_failure,
            new_files_sensor(
                JOB,
                resolved.experiment.data.path
                if resolved.experiment.data.source == "files"
                else None,
            ),
        ],
        resources=build_resources(settings, resolved, environ),
        # One process: each step would otherwise pay ~15 s of imports (torch, mlflow, GX).
        executor=in_process_executor,
    )


def definitions_from_env(
    environ: Mapping[str, str] = os.environ, check_files: bool = True
) -> Definitions:
    settings = load_settings(environ)
    return build_definitions(
        settings, resolve(settings.config, environ=environ, check_files=check_files), environ
    )


@definitions
def defs() -> Definitions:
    return definitions_from_env()
