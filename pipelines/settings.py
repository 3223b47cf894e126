"""Settings from environment variables: the one place the product reads ``os.environ``.

Two deployments, chosen by ``ALPHAFORGE_DEPLOYMENT``:

- ``local`` (the default): everything lives under one home folder, ``ALPHAFORGE_HOME``: the
  Dagster instance on SQLite, the MLflow SQLite database and artefacts, the Optuna journal, the
  parquet lake and the reports. One process runs a whole Dagster run.
- ``prod``: the Dagster instance, the Optuna studies and (through its ``mlflow server``) MLflow
  live in PostgreSQL, reached through ``ALPHAFORGE_PG_*``; MLflow is the tracking server at
  ``ALPHAFORGE_MLFLOW_URI``, which stores the artefacts; runs use Dagster's multiprocess
  executor. The home keeps the lake, the reports and ``dagster.yaml`` (which names environment
  variables, never a secret). ``deploy/`` holds the topology: ``deploy/stack.sh`` on one
  machine, ``deploy/docker-compose.yaml`` and ``deploy/helm-values.yaml`` on a cluster.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# name -> (default, meaning); keep the README's table of environment variables in step.
ENV_VARS: dict[str, tuple[str, str]] = {
    "ALPHAFORGE_HOME": ("./.alphaforge", "Home folder for every embedded store and output."),
    "ALPHAFORGE_CONFIG": ("(none)", "Experiment file (YAML) the Dagster job and schedule run."),
    "ALPHAFORGE_PROFILE": ("full", "Built-in profile under the experiment: `fast` or `full`."),
    "ALPHAFORGE_PRICES": (
        "(bundled)",
        "Path or glob of the user's price files (CSV, CSV.gz, Parquet); empty = bundled data.",
    ),
    "ALPHAFORGE_MLFLOW_URI": ("sqlite:///$HOME/mlflow.db", "MLflow tracking URI."),
    "ALPHAFORGE_OPTUNA_STORAGE": (
        "journal://$HOME/optuna.journal",
        "Optuna storage: `journal://<file>` (append-only journal file) or any SQLAlchemy URL.",
    ),
    "ALPHAFORGE_MLFLOW_UI": (
        "http://127.0.0.1:5000",
        "MLflow UI address used in links from Dagster metadata; `alphaforge ui` serves MLflow "
        "on its port.",
    ),
    "ALPHAFORGE_ALERT_WEBHOOK": (
        "(none)",
        "URL that receives a JSON POST for every failed run (alerts are always written to $HOME/alerts).",
    ),
    "ALPHAFORGE_DEPLOYMENT": (
        "local",
        "`local` (embedded: SQLite, one process) or `prod` (PostgreSQL-backed Dagster, MLflow "
        "server and Optuna; multiprocess executor).",
    ),
    "ALPHAFORGE_PG_HOST": ("127.0.0.1", "prod: PostgreSQL host."),
    "ALPHAFORGE_PG_PORT": ("5432", "prod: PostgreSQL port."),
    "ALPHAFORGE_PG_USER": ("alphaforge", "prod: PostgreSQL user."),
    "ALPHAFORGE_PG_PASSWORD": ("(empty)", "prod: PostgreSQL password (a secret: env only)."),
    "ALPHAFORGE_MAX_CONCURRENT": ("2", "prod: steps the multiprocess executor runs at once."),
    "ALPHAFORGE__<SECTION>__<KEY>": (
        "",
        "Override one experiment key, e.g. `ALPHAFORGE__MODELS__N_TRIALS=5`.",
    ),
}


@dataclass(frozen=True)
class Settings:
    home: Path
    config: str | None
    mlflow_uri: str
    optuna_storage: str
    mlflow_ui: str
    deployment: str
    alert_webhook: str | None = None
    max_concurrent: int = 2

    @property
    def prod(self) -> bool:
        return self.deployment == "prod"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def alerts(self) -> Path:
        return self.home / "alerts"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"


DEPLOYMENTS = ("local", "prod")
# prod: one PostgreSQL server, one database per engine (Dagster and MLflow both have a `runs`
# table, so they cannot share one)
PG_DATABASES = {
    "dagster": "alphaforge_dagster",
    "mlflow": "alphaforge_mlflow",
    "optuna": "alphaforge_optuna",
}


def postgres_url(environ: Mapping[str, str], database: str, password: bool = True) -> str:
    """``postgresql+psycopg2://user:password@host:port/database`` from ``ALPHAFORGE_PG_*``
    (without the password when ``password`` is false: :func:`with_password` adds it later)."""
    from urllib.parse import quote

    user = quote(environ.get("ALPHAFORGE_PG_USER") or "alphaforge", safe="")
    host = environ.get("ALPHAFORGE_PG_HOST") or "127.0.0.1"
    port = environ.get("ALPHAFORGE_PG_PORT") or "5432"
    url = f"postgresql+psycopg2://{user}@{host}:{port}/{database}"
    return with_password(url, environ.get("ALPHAFORGE_PG_PASSWORD")) if password else url


def postgres_params(environ: Mapping[str, str], database: str) -> dict[str, str]:
    """libpq connection keywords from ``ALPHAFORGE_PG_*`` (no URL to parse, none to print)."""
    params = {
        "host": environ.get("ALPHAFORGE_PG_HOST") or "127.0.0.1",
        "port": environ.get("ALPHAFORGE_PG_PORT") or "5432",
        "user": environ.get("ALPHAFORGE_PG_USER") or "alphaforge",
        "dbname": database,
    }
    if environ.get("ALPHAFORGE_PG_PASSWORD"):
        params["password"] = environ["ALPHAFORGE_PG_PASSWORD"]
    return params


def with_password(url: str, password: str | None) -> str:
    """``url`` with ``password`` (URL-quoted) in its user part; unchanged without one."""
    from urllib.parse import quote, urlsplit, urlunsplit

    if not password:
        return url
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user.split(':', 1)[0]}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part (for links shown to people)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    home = (
        Path(environ.get("ALPHAFORGE_HOME") or ENV_VARS["ALPHAFORGE_HOME"][0])
        .expanduser()
        .resolve()
    )
    deployment = environ.get("ALPHAFORGE_DEPLOYMENT") or "local"
    if deployment not in DEPLOYMENTS:
        raise ValueError(
            f"ALPHAFORGE_DEPLOYMENT={deployment!r}: expected one of {', '.join(DEPLOYMENTS)}"
        )
    prod = deployment == "prod"
    mlflow_default = "http://127.0.0.1:5000" if prod else f"sqlite:///{home / 'mlflow.db'}"
    optuna_default = (
        postgres_url(environ, PG_DATABASES["optuna"])
        if prod
        else f"journal://{home / 'optuna.journal'}"
    )
    mlflow_uri = environ.get("ALPHAFORGE_MLFLOW_URI") or mlflow_default
    return Settings(
        home=home,
        config=environ.get("ALPHAFORGE_CONFIG") or None,
        mlflow_uri=mlflow_uri,
        optuna_storage=environ.get("ALPHAFORGE_OPTUNA_STORAGE") or optuna_default,
        mlflow_ui=environ.get("ALPHAFORGE_MLFLOW_UI")
        or (
            without_credentials(mlflow_uri)
            if mlflow_uri.startswith("http")
            else "http://127.0.0.1:5000"
        ),
        deployment=deployment,
        alert_webhook=environ.get("ALPHAFORGE_ALERT_WEBHOOK") or None,
        max_concurrent=int(environ.get("ALPHAFORGE_MAX_CONCURRENT") or 2),
    )


DAGSTER_YAML = """\
# Written by AlphaForge: a local instance on SQLite under this folder.
telemetry:
  enabled: false
# Runs launched by the daemon (schedules, sensors, the UI) queue and run one at a time; every
# run also holds the home's run lock (pipelines/lock.py), so a CLI run beside them is refused.
run_queue:
  max_concurrent_runs: 1
"""


# prod: the instance in PostgreSQL; connection details by environment variable, resolved by
# Dagster itself in every process that opens the instance (daemon, webserver, run workers).
DAGSTER_PROD_YAML = f"""\
# Written by AlphaForge (ALPHAFORGE_DEPLOYMENT=prod): runs, events and schedules in PostgreSQL.
telemetry:
  enabled: false
storage:
  postgres:
    postgres_db:
      hostname: {{env: ALPHAFORGE_PG_HOST}}
      port: {{env: ALPHAFORGE_PG_PORT}}
      username: {{env: ALPHAFORGE_PG_USER}}
      password: {{env: ALPHAFORGE_PG_PASSWORD}}
      db_name: {PG_DATABASES["dagster"]}
      # dagster-postgres is written for psycopg2; SQLAlchemy 2.1's default driver is psycopg 3
      scheme: postgresql+psycopg2
# one run at a time: every run writes the same lake
run_queue:
  max_concurrent_runs: 1
# a run worker that dies (OOM, node loss) is marked failed instead of hanging as STARTED
run_monitoring:
  enabled: true
# the console shows INFO and above: every step process would otherwise print a DEBUG line
# (the event log keeps every event whatever this says)
python_logs:
  python_log_level: INFO
"""


def dagster_yaml(settings: Settings) -> str:
    return DAGSTER_PROD_YAML if settings.prod else DAGSTER_YAML


def prepare_home(settings: Settings) -> None:
    """Create the home's folders and the deployment's Dagster instance config (rewritten when
    the deployment changed; a file a user wrote themselves is left alone)."""
    for path in (
        settings.dagster_home,
        settings.lake,
        settings.reports,
        settings.mlflow_artifacts,
        settings.alerts,
    ):
        path.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    wanted = dagster_yaml(settings)
    current = config.read_text() if config.exists() else None
    if current is None or (current.startswith("# Written by AlphaForge") and current != wanted):
        config.write_text(wanted)
