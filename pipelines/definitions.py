"""The one ``Definitions``: assets, checks, jobs, schedules and resources, wired here only.

What runs is decided by the experiment (``pipelines/experiment.py``): the built-in profile,
``ALPHAFORGE_CONFIG``'s file, environment overrides. Dagster loads ``defs`` lazily, so a broken
experiment is reported when the code location loads, not at import.
"""

import gc
import hashlib
import inspect
import os
import re
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    EnvVar,
    Executor,
    ExecutorDefinition,
    InitExecutorContext,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    definitions,
    in_process_executor,
    load_assets_from_modules,
    map_asset_specs,
    multiprocess_executor,
    schedule,
)

from assets import (
    explain,
    features,
    ingest,
    microstructure,
    portfolio,
    reports,
    risk,
    strategies,
    training,
)
from assets.ingest import daily_prices_asset
from pipelines.experiment import (
    BUNDLED_LAST_DATE,
    ENV_REF,
    Resolved,
    as_secret,
    resolve,
)
from pipelines.io_managers import LakeIOManager
from pipelines.lob import FileLobSource, new_lob_files_sensor
from pipelines.resources import DaskResource, MLflowResource, ReportsResource
from pipelines.sensors import AlertResource, alert_on_run_failure, new_files_sensor
from pipelines.settings import (
    PG_DATABASES,
    Settings,
    load_settings,
    postgres_params,
    postgres_url,
)
from pipelines.sources import (
    BundledAltSource,
    BundledPriceSource,
    FilePriceSource,
    HttpPriceSource,
)
from pipelines.tuning import TuningResource

ASSET_MODULES = [
    ingest,
    features,
    training,
    portfolio,
    strategies,
    explain,
    risk,
    reports,
    microstructure,
]
JOB = "all_assets_job"
DAILY_JOB = "daily_job"
FULL_JOB = "full_job"
LOB_JOB = "microstructure_job"
WEEKLY_CRON = "0 6 * * 6"


# Variables whose values are secrets wherever they appear: alerts mask them (with those the
# experiment references) before anything is written or posted.
SECRET_VARIABLES = (
    "ALPHAFORGE_PG_PASSWORD",
    "ALPHAFORGE_ALERT_WEBHOOK",
    "ALPHAFORGE_MLFLOW_URI",
    "ALPHAFORGE_OPTUNA_STORAGE",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


def price_source(resolved: Resolved, environ: Mapping[str, str] = os.environ):
    """The experiment's price source resource (bundled, files or a vendor's HTTP API); a vendor
    key given by reference stays one (:func:`as_secret`)."""
    data = resolved.experiment.data
    if data.source == "files":
        return FilePriceSource(
            path=data.path,
            columns=dict(data.columns),
            symbol_from_filename=data.symbol_from_filename,
            sectors=data.sectors,
            root=data.root,
            max_file_mb=data.max_file_mb,
        )
    if data.source == "http":
        return HttpPriceSource(
            url=data.url,
            symbols=list(data.universe),
            columns=dict(data.columns),
            api_key=as_secret(data.api_key, "data.api_key", environ),
            sectors=data.sectors,
        )
    return BundledPriceSource()


def build_resources(
    settings: Settings, resolved: Resolved, environ: Mapping[str, str] = os.environ
) -> dict[str, object]:
    """The resource set; stores default to SQLite under ``settings.home`` (local) or to
    PostgreSQL and the MLflow tracking server (prod: ``pipelines/settings.py``).

    No resolved secret is put in a resource's config (the Dagster UI and GraphQL show it):
    a secret arrives as ``dagster.EnvVar`` or as a ``${env:VAR}`` template that the resource
    resolves when it runs (:func:`as_secret`)."""
    exp = resolved.experiment
    data, tracking = exp.data, exp.tracking
    root = data.root
    prices = price_source(resolved, environ)
    tracking_uri = as_secret(tracking.mlflow_uri, "tracking.mlflow_uri", environ)
    tracking_uri = tracking_uri or settings.mlflow_uri  # the deployment's default: no secret
    storage = as_secret(tracking.optuna_storage, "tracking.optuna_storage", environ)
    pg_password = None
    if storage is None and settings.prod:  # PostgreSQL: the password travels on its own
        storage = postgres_url(environ, PG_DATABASES["optuna"], password=False)
        pg_password = (
            EnvVar("ALPHAFORGE_PG_PASSWORD") if environ.get("ALPHAFORGE_PG_PASSWORD") else None
        )
    referenced = {m.group(1) for m in ENV_REF.finditer(resolved.to_yaml())}
    webhook = EnvVar("ALPHAFORGE_ALERT_WEBHOOK") if settings.alert_webhook else None
    return {
        # prod: steps run in several processes; the run's executor holds the lake's lock
        "lake": LakeIOManager(base_dir=str(settings.lake), lock=not settings.prod),
        "price_source": prices,
        "alt_source": BundledAltSource(texts=data.texts, root=root, max_file_mb=data.max_file_mb),
        "tracker": MLflowResource(
            tracking_uri=tracking_uri,
            # prod: the tracking server keeps (and serves) the artefacts
            artifact_root="" if settings.prod else str(settings.mlflow_artifacts),
            experiment_name=tracking.experiment,
            ui_url=settings.mlflow_ui,
            experiment_yaml=resolved.to_yaml(),
            exclusive=not settings.prod,
        ),
        "tuning": TuningResource(
            storage=storage or settings.optuna_storage,
            password=pg_password,
            tracking_uri=tracking_uri,
            problem_dir=str(settings.lake / "tuning"),
            shared=settings.prod,
        ),
        "compute": DaskResource(
            scheduler=exp.models.dask_scheduler,
            n_workers=exp.models.dask_workers,
            dashboard=exp.models.dask_dashboard,
        ),
        "reports": ReportsResource(base_dir=str(settings.reports)),
        "lob_source": lob_source(resolved),
        "alerts": AlertResource(
            alert_dir=str(settings.alerts),
            webhook_url=webhook,
            redact=sorted({*SECRET_VARIABLES, *referenced}),
        ),
    }


def lob_source(resolved: Resolved) -> FileLobSource:
    """The order-book files of ``data.lob`` (none: the microstructure group has nothing to
    run on and is skipped)."""
    data = resolved.experiment.data
    return FileLobSource(
        path=data.lob,
        depth=data.lob_depth,
        max_file_mb=data.max_file_mb,
        daily_bars=data.lob_daily_bars,
        daily_columns=dict(data.lob_daily_columns),
        daily_symbols=dict(data.lob_daily_symbols),
    )


# Who answers for each group, shown on every asset in the Dagster UI.
OWNERS = {
    "ingest": "team:data",
    "features": "team:research",
    "training": "team:research",
    "explain": "team:research",
    "portfolio": "team:portfolio",
    "risk": "team:risk",
    "reports": "team:risk",
    "microstructure": "team:research",
}
ROOT = Path(__file__).resolve().parent.parent


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def with_owners_and_code_versions(assets: list) -> list:
    """Owners by group, and a code version per asset: a digest of its module and of the
    library code every asset runs (``models/``, ``data_contracts/``), so Dagster marks an
    asset's materialization as from older code exactly when that code changed."""
    library = [*ROOT.glob("models/**/*.py"), *ROOT.glob("data_contracts/**/*.*")]
    versions: dict[str, str] = {}

    def version(module_file: str) -> str:
        if module_file not in versions:
            versions[module_file] = _digest([Path(module_file), *library])
        return versions[module_file]

    out = []
    for a in assets:
        module = inspect.getsourcefile(a.op.compute_fn.decorated_fn)
        out.extend(
            map_asset_specs(
                lambda spec, m=module: spec.replace_attributes(
                    owners=[OWNERS.get(spec.group_name, "team:research")],
                    code_version=version(m),
                    description=catalog_text(spec.description),
                ),
                [a],
            )
        )
    return out


_RST_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj):`~?([^`]+)`")


def catalog_text(docstring: str | None) -> str | None:
    """An asset's docstring as the Dagster catalog shows it (plain text in lists, markdown on
    the asset's page): RST's double backticks and roles dropped, the source's hard line wraps
    joined, paragraphs and "- " list items kept."""
    if not docstring:
        return docstring
    text = _RST_ROLE.sub(r"\1", inspect.cleandoc(docstring)).replace("``", "")
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        items = re.split(r"\n(?=\s*- )", block)
        paragraphs.append("\n".join(" ".join(i.split()) for i in items))
    return "\n\n".join(paragraphs)


def experiment_tags(resolved: Resolved) -> dict[str, str]:
    """The profile and a digest of the resolved experiment on every Dagster run; the whole
    experiment, enough to reproduce the run, is the parent MLflow run's ``experiment.yaml``
    artefact and parameters (a tag of a few kilobytes filled the run page's tag list)."""
    text = resolved.to_yaml()
    return {
        "alphaforge/profile": resolved.experiment.profile,
        "alphaforge/experiment_sha256": experiment_digest(text),
    }


def experiment_digest(text: str) -> str:
    """The run tag ``alphaforge/experiment_sha256`` of a resolved experiment's YAML."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_definitions(
    settings: Settings, resolved: Resolved, environ: Mapping[str, str] = os.environ
) -> Definitions:
    data, schedule = resolved.experiment.data, resolved.experiment.schedule
    assets = with_owners_and_code_versions(
        [*load_assets_from_modules(ASSET_MODULES), daily_prices_asset(data.daily_from)]
    )
    daily = AssetSelection.assets("daily_prices", "daily_quarantine")
    # the order books have partitions of their own (ticker-days): a job of their own
    micro = AssetSelection.groups(microstructure.GROUP)
    full = AssetSelection.all() - daily - micro
    # the new day's prices and the news that came with it, then everything they feed but
    # the GAN scenarios, which the weekly rebuild retrains (the nightly risk report reads the
    # latest ones)
    nightly_selection = (
        daily
        | AssetSelection.assets("news_sentiment")
        | AssetSelection.assets("market_prices", "quality_findings").downstream()
    ) - AssetSelection.assets("stress_scenarios")

    def job(name: str, selection: AssetSelection, description: str):
        names = {k.to_user_string() for k in selection.resolve(assets)}
        return define_asset_job(
            name,
            selection=selection,
            config=resolved.run_config(names),
            run_tags=experiment_tags(resolved),
            description=description,
        )

    all_assets_job = job(
        JOB,
        full,
        "Every asset but the daily partitions (daily_prices, daily_quarantine): the whole "
        "history from the price source, then validation, features, training, portfolio, risk, "
        "explanations and the report. new_price_files_sensor runs it when your files change, "
        "and the weekly rebuild when the data ends before data.daily_from (no daily partition "
        "to cover). full_job is the same plus the daily partitions.",
    )
    daily_job = job(
        DAILY_JOB,
        nightly_selection,
        "One trading day (a daily_prices partition; a range is a backfill), then "
        "everything downstream of market_prices.",
    )
    full_job = job(
        FULL_JOB,
        AssetSelection.all() - micro,
        "Every asset but the order books' (their own partitions: microstructure_job), the "
        "daily partitions included, as one run over the partition range up to the data's last "
        "day: what `alphaforge run` (and `make run`) and the weekly rebuild run. "
        "all_assets_job is the same without the daily partitions; daily_job is one day and "
        "what it feeds.",
    )
    lob_job = job(
        LOB_JOB,
        micro,
        "The order books of data.lob: ingest and contract per ticker-day partition, "
        "features, labels, models, impact and calibrated costs.",
    )
    return Definitions(
        assets=assets,
        jobs=[all_assets_job, daily_job, full_job, lob_job],
        schedules=[
            nightly_schedule(daily_job, schedule.cron, schedule.timezone, data.daily_from),
            weekly_schedule(full_job, all_assets_job, resolved, schedule.timezone),
        ],
        sensors=[
            alert_on_run_failure,
            new_files_sensor(JOB, data.path if data.source == "files" else None),
            new_lob_files_sensor(LOB_JOB, lob_source(resolved)),
        ],
        resources=build_resources(settings, resolved, environ),
        executor=executor(settings),
    )


def freeze_heap() -> None:
    """Exempt every object alive now from the cyclic garbage collector (``gc.freeze``): call it
    once the definitions are built, before a run. The imports (Dagster, MLflow, torch, GX) leave
    ~1 M objects, and each full collection walked them all: 0.5 s, at moments no one chose,
    inside a step (measured in ``benchmarks/overhead.py``). Objects made later are collected
    as usual; only garbage already in cycles now is kept, which a one-run process can afford
    (so the long-lived UI and daemon processes do not call it)."""
    gc.freeze()


# Loaded once in the forkserver; every step process forks from it with these already imported.
PRELOAD = ["pipelines.definitions", "torch", "mlflow", "great_expectations", "lightgbm"]


def executor(settings: Settings):
    """local: one process (each spawned step would pay ~15 s of imports: torch, mlflow, GX);
    prod: Dagster's multiprocess executor, steps forked from a preloaded forkserver, inside
    the lake's PostgreSQL run lock (:func:`lake_locked`)."""
    if not settings.prod:
        return in_process_executor
    return lake_locked(multiprocess_executor, settings.lake).configured(
        {
            "max_concurrent": settings.max_concurrent,
            "start_method": {"forkserver": {"preload_modules": PRELOAD}},
        },
        name="prod_multiprocess",
    )


def lake_locked(inner: ExecutorDefinition, lake: Path) -> ExecutorDefinition:
    """``inner`` (same config, same requirements), its whole run inside the lake's
    :class:`PgRunLock`, taken in the run's orchestrating process before any step starts,
    whoever launched the run. The lock's DSN is built from ``ALPHAFORGE_PG_*`` in that process,
    so no password is in the executor's config."""

    def create(init_context: InitExecutorContext) -> Executor:
        return _LakeLockedExecutor(inner.executor_creation_fn(init_context), lake)

    return ExecutorDefinition(
        name=inner.name,
        config_schema=inner.config_schema,
        executor_creation_fn=create,
        requirements=inner.get_requirements,
        description="Dagster's multiprocess executor inside the lake's PostgreSQL run lock.",
    )


class _LakeLockedExecutor(Executor):
    def __init__(self, inner: Executor, lake: Path):
        self.inner, self.lake = inner, lake

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        from pipelines.atomic import sweep_orphans
        from pipelines.io_managers import mark_killed_runs
        from pipelines.lock import PgRunLock, dead_holders

        run_id = plan_context.run_id
        lock = PgRunLock(postgres_params(os.environ, PG_DATABASES["dagster"]), self.lake)
        lock.acquire(f"Dagster run {run_id}")  # HomeBusy: the run fails, nothing written
        try:
            # holding the lake: no other run is alive, so its temp files are orphans and a run
            # the lock's file names, if still shown started, was killed
            log = plan_context.log
            for path in [*sweep_orphans(self.lake), *sweep_orphans(self.lake.parent / "reports")]:
                log.warning(f"removed {path.name}, left by an interrupted write")
            dead = dead_holders(lock.previous, same_host=False)
            mark_killed_runs(plan_context.instance, dead, run_id, log)
            yield from self.inner.execute(plan_context, execution_plan)
        finally:
            lock.release()


def full_run_window(resolved: Resolved, today: date | None = None) -> tuple[str, str] | None:
    """The daily partitions a full run covers: from ``data.daily_from`` to the data's last
    weekday (its ``end_date``, the bundled data's last day, else today); None when the data
    ends before the daily partitions begin."""
    data = resolved.experiment.data
    today = today or date.today()
    end = min(data.end_date or (BUNDLED_LAST_DATE if data.source == "bundled" else today), today)
    end -= timedelta(days=max(0, end.weekday() - 4))  # a weekend ends on Friday
    return (data.daily_from.isoformat(), end.isoformat()) if end >= data.daily_from else None


def partition_range_tags(start: str, end: str) -> dict[str, str]:
    """Run tags that make one run cover a range of partitions (a single-run backfill)."""
    return {
        "dagster/asset_partition_range_start": start,
        "dagster/asset_partition_range_end": end,
    }


def weekly_schedule(full_job, all_assets_job, resolved: Resolved, timezone: str):
    """Saturday morning: rebuild from the whole history (vendor restatements and split
    adjustments that the nightly runs do not reread), the daily partitions included."""
    window = full_run_window(resolved)
    job = full_job if window else all_assets_job

    @schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=WEEKLY_CRON,
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.STOPPED,
        description=weekly_schedule.__doc__,
    )
    def _weekly(context: ScheduleEvaluationContext):
        now = full_run_window(resolved, context.scheduled_execution_time.date())
        return RunRequest(tags=partition_range_tags(*now) if now and window else {})

    return _weekly


def job_assets(job) -> set[str]:
    """The asset (and op) names a job runs, for :meth:`Resolved.run_config`."""
    return {k.to_user_string() for k in job.asset_layer.selected_asset_keys}


def nightly_schedule(job, cron: str, timezone: str, daily_from: date) -> ScheduleDefinition:
    """On the experiment's cron (weekdays after the US close by default): the partition of the
    day that just closed, if it is a trading weekday, then everything downstream."""

    @schedule(
        name=f"{DAILY_JOB}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Nightly: ingest today's prices as one daily_prices partition, then retrain "
        "and report on the updated panel.",
    )
    def _nightly(context: ScheduleEvaluationContext):
        day = context.scheduled_execution_time.date()
        if day.weekday() >= 5 or day < daily_from:
            return SkipReason(
                f"{day} is not a daily_prices partition (weekend or before data.daily_from)"
            )
        return RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())

    return _nightly


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
