"""The crash harness in small (``make chaos`` runs ten trials): the fast run killed with SIGKILL
mid-way, then run again, ends with the lake of an undisturbed run, byte for byte in content, the
same backtest metrics, no temp file left, no MLflow run left RUNNING, and the killed attempt
marked FAILURE in Dagster and KILLED/FAILED in MLflow."""

import pytest

from benchmarks.chaos import backtest_metrics, lake_hashes, trial

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_killed_run_reruns_to_the_undisturbed_result(materialized, tmp_path):
    # the daily graph's lake (the shared home also holds the order books' files, when the
    # microstructure tests ran first: the fast run does not build them)
    reference = {
        k: v for k, v in lake_hashes(materialized.home).items() if not k.startswith("lob_")
    }
    assert len(reference) > 40
    # eight seconds into tuning: Optuna studies half done, MLflow trial runs open
    result = trial(
        tmp_path, 0, ("base_models", 8.0), reference, backtest_metrics(materialized.home)
    )
    print(f"killed in {result.step}")
    assert result.killed and result.stage == "training"
    assert result.rerun_ok
    assert result.identical and result.metrics_equal, result.differs
    assert result.orphan_files == 0 and result.stuck == 0
    # the killed attempt says so: FAILURE in Dagster, its MLflow parent run KILLED or FAILED
    assert result.dagster_status == ["FAILURE"] and result.statuses_ok, (
        result.dagster_status,
        result.mlflow_status,
    )
