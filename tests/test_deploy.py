"""The cluster examples in ``deploy/`` cannot run here (no Docker engine, no Kubernetes): check
what can be checked without them. They parse, name every service AlphaForge needs, select the
prod deployment, carry no secret, and agree with the settings on database names and driver."""

import re
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


ROOT = DEPLOY.parent


def _published(compose: dict) -> dict[str, list[str]]:
    """Each service's published host addresses, with compose's `${VAR:-default}` defaults."""
    out = {}
    for name, service in compose["services"].items():
        ports = []
        for port in service.get("ports", []):
            text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(port))
            parts = text.split(":")
            ports.append(parts[0] if len(parts) == 3 else "0.0.0.0")  # "3000:3000": every interface
        out[name] = ports
    return out


def test_compose_publishes_on_loopback_only_and_every_ui_asks_for_a_password():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    published = {k: v for k, v in _published(compose).items() if v}
    assert published == {"mlflow": ["127.0.0.1"], "ui-proxy": ["127.0.0.1"]}
    services = compose["services"]
    # the Dagster webserver has no login: only the proxy reaches it, and the proxy asks
    assert "ports" not in services["dagster-webserver"] and "ports" not in services["postgres"]
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert "basic_auth" in caddy and "{$ALPHAFORGE_UI_PASSWORD_HASH}" in caddy
    assert "reverse_proxy dagster-webserver:3000" in caddy
    proxy_env = services["ui-proxy"]["environment"]
    assert proxy_env["ALPHAFORGE_UI_PASSWORD_HASH"].startswith("${")
    # MLflow's own basic-auth app, its admin from the environment
    mlflow = services["mlflow"]
    assert mlflow["command"][:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${")
    assert (DEPLOY / "mlflow-auth.ini").is_file()
    env = compose["x-alphaforge-env"]
    assert env["MLFLOW_TRACKING_PASSWORD"].startswith("${")  # every service logs in


def test_no_secret_on_a_command_line_in_the_deploy_files():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    for name, service in compose["services"].items():
        command = " ".join(service.get("command", []) + service.get("entrypoint", []))
        assert "PASSWORD" not in command and not re.search(r"://[^/@]*:[^/@]*@", command), name
    # the MLflow server reads the PostgreSQL password from libpq's environment
    assert compose["services"]["mlflow"]["environment"]["PGPASSWORD"].startswith("${")
    stack = (DEPLOY / "stack.sh").read_text()
    assert "--auth=trust" not in stack and "--auth=scram-sha-256 --pwfile=" in stack
    assert "PGPASSFILE" in stack and not re.search(r"://\$user:", stack)


def test_the_image_holds_only_the_code_and_runs_unprivileged():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert not re.search(r"^COPY \. ", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    rules = [
        line for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert rules[0] == "*"  # an allow-list
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    for secret in (".env", ".alphaforge", ".git", ".venv", "deploy/.env"):
        assert not any(secret == a or secret.startswith(a + "/") for a in allowed), secret


def test_helm_values_expose_no_public_service_without_authentication():
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert "LoadBalancer" not in str(values) and "NodePort" not in str(values)
    ingress = values["ingress"]
    assert (
        ingress["enabled"]
        and ingress["annotations"]["nginx.ingress.kubernetes.io/auth-type"] == "basic"
    )
    assert ingress["dagsterWebserver"]["tls"]["enabled"]
