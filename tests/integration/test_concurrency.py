"""Two runs started at once on one embedded home: one holds the home's run lock, the other is
refused with a clear message (or, if they happen not to overlap, both succeed); afterwards the
lake and Dagster's storage are consistent."""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from pipelines.lock import HomeBusy, RunLock

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BUSY = "another AlphaForge run is using"


def test_run_lock_refuses_a_second_holder_and_frees_on_release(tmp_path):
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    first.acquire("Dagster run A")
    with pytest.raises(HomeBusy, match=r"another AlphaForge run is using .* \(Dagster run A, pid"):
        second.acquire("Dagster run B")
    first.release()
    second.acquire("Dagster run B")
    second.release()


def test_two_runs_at_once_on_one_home(tmp_path):
    env = os.environ | {"ALPHAFORGE_HOME": str(tmp_path / "home"), "ALPHAFORGE_PROFILE": "fast"}
    command = [
        sys.executable, "-m", "pipelines.cli", "run",
        "--select", "price_history", "alt_data", "market_prices", "sector_map", "news_sentiment",
        "quality_findings", "universe", "feature_matrix",
        "--set", "data.daily_from=2023-01-02",
    ]  # fmt: skip
    runs = [
        subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in runs]
    codes = sorted(p.returncode for p in runs)
    if codes == [0, 0]:
        pass  # they did not overlap: both must be complete
    else:
        assert codes in ([0, 1], [0, 3]), outputs
        refused = next(o for p, o in zip(runs, outputs, strict=True) if p.returncode != 0)
        assert BUSY in refused, refused
    lake = tmp_path / "home" / "lake"
    features = pl.read_parquet(lake / "feature_matrix.parquet")
    assert features.height > 50_000 and not list(lake.glob(".tmp-*"))
    instance = DagsterInstance.from_ref(
        DagsterInstance.local_temp(str(tmp_path / "home" / "dagster")).get_ref()
    )
    statuses = {r.status for r in instance.get_runs()}
    assert statuses <= {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}
    assert DagsterRunStatus.SUCCESS in statuses


def _started_run(instance) -> str:
    """A run the instance shows STARTED, as a run killed with SIGKILL leaves it."""
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster._core.utils import make_new_run_id

    run = DagsterRun(
        job_name="all_assets_job", run_id=make_new_run_id(), status=DagsterRunStatus.STARTED
    )
    instance.add_run(run)
    return run.run_id


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_a_killed_run_is_marked_failure_when_the_rerun_comes_from_the_cli(tmp_path):
    """The CLI's probe of the lock must not hide the killed run's line from the run after it."""
    from dagster import asset, materialize

    from pipelines.io_managers import LakeIOManager

    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster"))
    killed = _started_run(instance)
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / ".run.lock").write_text(
        f"Dagster run {killed}, pid {_dead_pid()}, since 2026-12-02 03:00:00"
    )
    probe = RunLock(lake)  # what `alphaforge run` does before it starts the run
    probe.acquire("alphaforge run (starting)")
    probe.release()

    @asset(io_manager_key="lake")
    def tiny() -> int:
        return 1

    assert materialize(
        [tiny], instance=instance, resources={"lake": LakeIOManager(base_dir=str(lake))}
    ).success
    assert instance.get_run_by_id(killed).status == DagsterRunStatus.FAILURE
