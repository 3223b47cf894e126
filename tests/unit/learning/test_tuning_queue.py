"""The trial queue under the tuning workers, on a file storage and a trivial objective (the
PostgreSQL version, with real workers killed and the database restarted, is
``tests/scaleout/test_postgres.py``), and the prod settings."""

import threading

import optuna
import pytest
from optuna.trial import TrialState

from models.learning.tuning import FINISHED, enqueue_budget, open_storage, open_study, work
from pipelines.settings import DAGSTER_PROD_YAML, load_settings, postgres_url, prepare_home


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    return -((x - 1.0) ** 2)


def test_budget_is_queued_once_and_topped_up_after_losses(tmp_path):
    study = open_study(open_storage(f"sqlite:///{tmp_path / 's.db'}"), "q", seed=0)
    assert enqueue_budget(study, 6) == 6
    assert enqueue_budget(study, 6) == 0  # queued trials count as on their way
    assert work(study, objective) == 6
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert enqueue_budget(study, 8) == 2  # a larger budget later: only the difference
    assert work(study, objective) == 2
    assert work(study, objective) == 0  # nothing queued: a worker just returns


def test_two_workers_in_threads_share_the_budget_without_duplicates(tmp_path):
    storage = open_storage(f"journal://{tmp_path / 'j.log'}")
    study = open_study(storage, "shared", seed=1)
    enqueue_budget(study, 20)
    counts: list[int] = []

    def worker() -> None:
        mine = open_study(storage, "shared", seed=1)
        counts.append(work(mine, objective))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trials = study.get_trials(deepcopy=False)
    assert sum(counts) == 20 and len([t for t in trials if t.state in FINISHED]) == 20
    assert len({t.number for t in trials}) == len(trials) == 20


def test_concurrent_trials_draw_different_parameters(tmp_path):
    """Two trials started before either finished must not sample alike (the sampler's seed
    counts the running trials ahead of a trial, not only the finished ones)."""
    study = open_study(open_storage(f"sqlite:///{tmp_path / 'c.db'}"), "c", seed=3)
    enqueue_budget(study, 2)
    first, second = study.ask(), study.ask()  # both RUNNING at once
    assert first.suggest_float("x", -5, 5) != second.suggest_float("x", -5, 5)


def test_an_error_in_the_objective_fails_the_trial_and_is_raised(tmp_path):
    study = open_study(open_storage(f"sqlite:///{tmp_path / 'e.db'}"), "e", seed=0)
    enqueue_budget(study, 2)

    def broken(trial):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        work(study, broken)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]


def test_prod_settings_derive_every_store_from_the_postgres_variables(tmp_path):
    env = {
        "ALPHAFORGE_HOME": str(tmp_path),
        "ALPHAFORGE_DEPLOYMENT": "prod",
        "ALPHAFORGE_PG_HOST": "db.internal",
        "ALPHAFORGE_PG_PORT": "6543",
        "ALPHAFORGE_PG_PASSWORD": "p@ss/word",
    }
    settings = load_settings(env)
    assert settings.prod
    assert settings.optuna_storage == (
        "postgresql+psycopg2://alphaforge:p%40ss%2Fword@db.internal:6543/alphaforge_optuna"
    )
    assert settings.mlflow_uri == "http://127.0.0.1:5000"
    assert postgres_url(env, "x").endswith("@db.internal:6543/x")
    prepare_home(settings)
    written = (settings.dagster_home / "dagster.yaml").read_text()
    assert written == DAGSTER_PROD_YAML and "p@ss" not in written  # the secret stays in env
    # back to local: the file AlphaForge wrote is replaced; one a user wrote is left alone
    prepare_home(load_settings({"ALPHAFORGE_HOME": str(tmp_path)}))
    assert "postgres" not in (settings.dagster_home / "dagster.yaml").read_text()
    (settings.dagster_home / "dagster.yaml").write_text("# mine\n")
    prepare_home(settings)
    assert (settings.dagster_home / "dagster.yaml").read_text() == "# mine\n"


def test_an_unknown_deployment_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="ALPHAFORGE_DEPLOYMENT='cloud'"):
        load_settings({"ALPHAFORGE_HOME": str(tmp_path), "ALPHAFORGE_DEPLOYMENT": "cloud"})
