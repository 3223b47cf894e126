"""The prod deployment's safety on a real PostgreSQL from ``deploy/stack.sh``: one run at a
time per lake whoever launches it (the run's executor holds a PostgreSQL advisory lock,
``pipelines.lock.PgRunLock``; a second holder is refused naming the first, a holder killed with
SIGKILL frees the lake at once and the next run marks it FAILURE in Dagster), and a stack that
trusts no connection and shows its password on no command line.

Skipped, with the reason, where PostgreSQL is not installed (``.ci/run`` installs it)."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import HAVE_PG
from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    execute_job,
    in_process_executor,
    job,
    op,
    reconstructable,
)

from pipelines.definitions import lake_locked
from pipelines.lock import HomeBusy, PgRunLock, dead_holders
from pipelines.settings import PG_DATABASES, postgres_params

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not HAVE_PG, reason="PostgreSQL is not installed (apt-get install postgresql)"
    ),
]
ROOT = Path(__file__).resolve().parents[2]
LAKE = Path(tempfile.mkdtemp(prefix="alphaforge-lock-")) / "lake"
RUN = "0b1e6a52-7d3c-4e0f-9a8b-1c2d3e4f5a6b"


@op
def write_something() -> None:
    LAKE.mkdir(parents=True, exist_ok=True)
    (LAKE / "written").write_text("by a run holding the lock")


@job(executor_def=lake_locked(in_process_executor, LAKE))
def locked_job():
    write_something()


@pytest.fixture
def pg_params(pg_stack, monkeypatch):
    for key, value in pg_stack["env"].items():
        monkeypatch.setenv(key, value)
    return postgres_params(pg_stack["env"], PG_DATABASES["dagster"])


def test_a_second_holder_is_refused_and_a_killed_holder_frees_the_lake(pg_params, tmp_path):
    lake = tmp_path / "lake"
    code = (
        "import json, sys, time; from pathlib import Path; from pipelines.lock import PgRunLock; "
        "lock = PgRunLock(json.loads(sys.stdin.readline()), Path(sys.argv[1])); "
        f"lock.acquire('Dagster run {RUN}'); "
        "print('held', flush=True); time.sleep(600)"
    )
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(lake)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    holder.stdin.write(json.dumps(pg_params) + "\n")  # the password by pipe, not on a command line
    holder.stdin.flush()
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(HomeBusy, match=rf"holds the lake .*\(alphaforge Dagster run {RUN}"):
            PgRunLock(pg_params, lake).acquire("Dagster run second")
    finally:
        holder.kill()  # SIGKILL: no cleanup runs; PostgreSQL ends the session
        holder.wait()
    lock = PgRunLock(pg_params, lake)
    for _ in range(50):  # the server notices the closed socket at once; allow it 5 s
        try:
            lock.acquire("Dagster run third")
            break
        except HomeBusy:
            time.sleep(0.1)
    assert dead_holders(lock.previous, same_host=False) == [RUN]
    lock.release()


def test_every_prod_run_holds_the_lake_lock_and_marks_a_killed_one_failed(pg_params, tmp_path):
    """A run launched like the daemon's run worker and ``alphaforge run`` launch it
    (``execute_job``) is refused while another holds the lake; once free, it marks the killed
    run that the lock's file names FAILURE."""
    from dagster._core.storage.dagster_run import DagsterRun

    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster"))
    instance.add_run(DagsterRun(job_name="locked_job", run_id=RUN, status=DagsterRunStatus.STARTED))
    other = PgRunLock(pg_params, LAKE)
    other.acquire(f"Dagster run {RUN}")  # the killed run's line, left in the lock's file
    refused = execute_job(reconstructable(locked_job), instance, raise_on_error=False)
    assert not refused.success and not (LAKE / "written").exists()
    failure = instance.get_run_by_id(refused.run_id)
    events = instance.all_logs(refused.run_id)
    assert failure.status == DagsterRunStatus.FAILURE
    assert any("another AlphaForge run holds the lake" in str(e.dagster_event) for e in events)
    other.release()  # the holder is gone (as a killed run's session is)
    ran = execute_job(reconstructable(locked_job), instance, raise_on_error=False)
    assert ran.success and (LAKE / "written").exists()
    assert instance.get_run_by_id(RUN).status == DagsterRunStatus.FAILURE


def test_the_stack_trusts_no_connection_and_shows_no_password_on_a_command_line(pg_stack):
    """deploy/stack.sh: SCRAM for every connection (none without the password, none with a
    wrong one), the generated password only in 0600 files, on no process's command line."""
    import psycopg2

    env = pg_stack["env"]
    password = env["ALPHAFORGE_PG_PASSWORD"]
    assert len(password) >= 24
    base = {"host": "127.0.0.1", "port": env["ALPHAFORGE_PG_PORT"], "user": "alphaforge"}
    for wrong in ("", "not-the-password"):
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(
                dbname="alphaforge_dagster", password=wrong, passfile="/dev/null", **base
            )
    psycopg2.connect(dbname="alphaforge_dagster", password=password, **base).close()
    folder = pg_stack["folder"]
    for name in ("stack.env", ".pgpass"):
        assert (folder / name).stat().st_mode & 0o077 == 0, name
    cmdlines = [p.read_bytes() for p in Path("/proc").glob("[0-9]*/cmdline") if p.exists()]
    assert cmdlines and not [c for c in cmdlines if password.encode() in c]
