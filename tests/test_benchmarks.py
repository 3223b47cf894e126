"""``make bench`` must keep working: a quick run checks our results equal the references."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_runs_and_matches_references():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "alpha158 on" in out.stdout and "rows^" in out.stdout and "backtest (" in out.stdout
    assert "ingest on" in out.stdout and "from a daily delivery file" in out.stdout
    assert "LOB tick scorer" in out.stdout or "order books: skipped" in out.stdout


@pytest.mark.integration
def test_first_run_benchmark_reads_each_step_and_the_run_from_the_event_log(materialized):
    from benchmarks.first_run import step_seconds

    steps, total = step_seconds(materialized.instance, materialized.result.run_id)
    ran = {e.step_key for e in materialized.result.all_events if e.is_step_success}
    assert set(steps) == ran and "base_models" in steps
    assert all(s > 0 for s in steps.values())
    # steps run one after another in one process: together they fit inside the run
    assert sum(steps.values()) <= total
