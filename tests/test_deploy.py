"""The cluster examples in ``deploy/`` cannot run here (no Docker engine, no Kubernetes): check
what can be checked without them. They parse, name every service AlphaForge needs, select the
prod deployment, carry no secret, and agree with the settings on database names and driver."""

import subprocess
from pathlib import Path

import yaml

from pipelines.settings import DAGSTER_PROD_YAML, PG_DATABASES

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_compose_file_runs_every_service_on_the_prod_deployment_without_secrets():
    text = (DEPLOY / "docker-compose.yaml").read_text()
    compose = yaml.safe_load(text)
    assert set(compose["services"]) >= {
        "postgres",
        "mlflow",
        "dagster-daemon",
        "dagster-webserver",
        "tune-worker",
    }
    env = compose["x-alphaforge-env"]
    assert env["ALPHAFORGE_DEPLOYMENT"] == "prod"
    assert env["ALPHAFORGE_PG_PASSWORD"].startswith("${")  # from .env, never written here
    assert "postgresql+psycopg2://" in text and PG_DATABASES["mlflow"] in text
    init = (DEPLOY / "initdb" / "10-databases.sql").read_text()
    assert all(db in init for db in (PG_DATABASES["mlflow"], PG_DATABASES["optuna"]))


def test_helm_values_use_an_external_database_and_the_k8s_run_launcher():
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlDatabase"] == PG_DATABASES["dagster"]
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["maxConcurrentRuns"] == 1
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert env["ALPHAFORGE_DEPLOYMENT"] == "prod" and "ALPHAFORGE_PG_PASSWORD" not in env


def test_dagster_prod_config_names_variables_not_values():
    config = yaml.safe_load(DAGSTER_PROD_YAML)
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["password"] == {"env": "ALPHAFORGE_PG_PASSWORD"}
    assert db["db_name"] == PG_DATABASES["dagster"] and db["scheme"] == "postgresql+psycopg2"


def test_stack_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(DEPLOY / "stack.sh")]).returncode == 0
