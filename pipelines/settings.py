"""Settings from environment variables: the one place the product reads ``os.environ``.

Everything lives under one home folder, ``ALPHAFORGE_HOME``: the Dagster instance, the MLflow
SQLite database and artefacts, the Optuna database, the parquet lake and the reports.
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
        "MLflow UI address used in links from Dagster metadata.",
    ),
    "ALPHAFORGE_ALERT_WEBHOOK": (
        "(none)",
        "URL that receives a JSON POST for every failed run (alerts are always written to $HOME/alerts).",
    ),
    "ALPHAFORGE_DEPLOYMENT": ("local", "Resource set: `local` (embedded) for now."),
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


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    home = (
        Path(environ.get("ALPHAFORGE_HOME") or ENV_VARS["ALPHAFORGE_HOME"][0])
        .expanduser()
        .resolve()
    )
    return Settings(
        home=home,
        config=environ.get("ALPHAFORGE_CONFIG") or None,
        mlflow_uri=environ.get("ALPHAFORGE_MLFLOW_URI") or f"sqlite:///{home / 'mlflow.db'}",
        optuna_storage=environ.get("ALPHAFORGE_OPTUNA_STORAGE")
        or f"journal://{home / 'optuna.journal'}",
        mlflow_ui=environ.get("ALPHAFORGE_MLFLOW_UI") or "http://127.0.0.1:5000",
        deployment=environ.get("ALPHAFORGE_DEPLOYMENT") or "local",
        alert_webhook=environ.get("ALPHAFORGE_ALERT_WEBHOOK") or None,
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


def prepare_home(settings: Settings) -> None:
    """Create the home's folders and a Dagster instance config if missing."""
    for path in (
        settings.dagster_home,
        settings.lake,
        settings.reports,
        settings.mlflow_artifacts,
        settings.alerts,
    ):
        path.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
