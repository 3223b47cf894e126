"""The one ``Definitions``: assets, checks, jobs, schedules and resources, wired here only."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
    load_assets_from_modules,
)

from assets import explain, features, ingest, portfolio, risk, training
from pipelines.io_managers import LakeIOManager
from pipelines.profiles import run_config
from pipelines.resources import MLflowResource, ReportsResource
from pipelines.settings import Settings, load_settings
from pipelines.sources import BundledAltSource, BundledPriceSource, FilePriceSource

ASSET_MODULES = [ingest, features, training, portfolio, explain, risk]


def build_resources(settings: Settings) -> dict[str, object]:
    """The local (embedded) resource set; everything under ``settings.home``."""
    return {
        "lake": LakeIOManager(base_dir=str(settings.lake)),
        "price_source": FilePriceSource(path=settings.prices)
        if settings.prices
        else BundledPriceSource(),
        "alt_source": BundledAltSource(),
        "tracker": MLflowResource(
            tracking_uri=settings.mlflow_uri,
            artifact_root=str(settings.mlflow_artifacts),
            ui_url=settings.mlflow_ui,
        ),
        "optuna_storage": settings.optuna_storage,
        "reports": ReportsResource(base_dir=str(settings.reports)),
    }


def build_definitions(settings: Settings) -> Definitions:
    all_assets_job = define_asset_job(
        "all_assets_job",
        selection=AssetSelection.all(),
        config=run_config(settings.profile),
        description="Ingest, validate, features, training, portfolio, risk and explanations.",
    )
    nightly = ScheduleDefinition(
        name="all_assets_job_schedule",
        job=all_assets_job,
        cron_schedule="30 18 * * 1-5",
        execution_timezone="America/New_York",
        run_config=run_config("full"),
        default_status=DefaultScheduleStatus.STOPPED,
        description="Weekdays 18:30 New York time, after the US close: the full profile.",
        tags={"alphaforge/profile": "full"},
    )
    return Definitions(
        assets=load_assets_from_modules(ASSET_MODULES),
        jobs=[all_assets_job],
        schedules=[nightly],
        resources=build_resources(settings),
        # One process: each step would otherwise pay ~15 s of imports (torch, mlflow, GX).
        executor=in_process_executor,
    )


defs = build_definitions(load_settings())
