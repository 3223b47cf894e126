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
