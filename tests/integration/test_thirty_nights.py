"""Thirty consecutive nightly runs (the ingest and feature slice of daily_job) on a short
history: every night succeeds, and the time and storage each night costs stay flat. The
figures are printed (pytest -s) for the issue notes."""

import time
from datetime import date

import numpy as np
import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, PartitionKeyRange

from pipelines.definitions import DAILY_JOB, JOB, build_definitions, job_assets
from pipelines.experiment import resolve
from pipelines.settings import load_settings, prepare_home

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NIGHTLY = [
    AssetKey(k)
    for k in (
        "daily_prices",
        "daily_quarantine",
        "market_prices",
        "sector_map",
        "news_sentiment",
        "feature_matrix",
        "labels",
    )
]


def _bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_thirty_nights_succeed_with_flat_time_and_storage(tmp_path):
    env = {"ALPHAFORGE_HOME": str(tmp_path / "home"), "ALPHAFORGE_PROFILE": "fast"}
    settings = load_settings(env)
    prepare_home(settings)
    overrides = {"data.start_date": "2021-06-01", "data.daily_from": "2022-11-01"}
    resolved = resolve(None, environ=env, overrides=overrides)
    defs = build_definitions(settings, resolved, env)
    instance = DagsterInstance.local_temp(tempdir=str(settings.dagster_home))
    full, daily = defs.resolve_job_def(JOB), defs.resolve_job_def(DAILY_JOB)
    history = [AssetKey(k) for k in ("price_history", "price_quarantine", "alt_data")]
    assert full.execute_in_process(
        run_config=resolved.run_config(job_assets(full)), instance=instance, asset_selection=history
    ).success
    nights = daily.partitions_def.get_partition_keys_in_range(
        PartitionKeyRange("2022-11-01", "2022-12-12")
    )
    assert len(nights) == 30
    seconds, lake_growth, dagster_growth = [], [], []
    config = resolved.run_config(job_assets(daily))
    for night in nights:
        lake, dag = _bytes(settings.lake), _bytes(settings.dagster_home)
        start = time.perf_counter()
        result = daily.execute_in_process(
            run_config=config, instance=instance, asset_selection=NIGHTLY, partition_key=night
        )
        seconds.append(time.perf_counter() - start)
        assert result.success, night
        lake_growth.append(_bytes(settings.lake) - lake)
        dagster_growth.append(_bytes(settings.dagster_home) - dag)
    panel = pl.read_parquet(settings.lake / "market_prices.parquet")
    assert panel["date"].max() == date(2022, 12, 12)
    first, last = slice(0, 10), slice(20, 30)
    print(
        f"\n30 nights: wall s/night first 10 median {np.median(seconds[first]):.2f}, "
        f"last 10 {np.median(seconds[last]):.2f}; lake growth/night median "
        f"{np.median(lake_growth) / 1024:.0f} KiB; Dagster storage growth/night median "
        f"{np.median(dagster_growth) / 1024:.0f} KiB"
    )
    assert np.median(seconds[last]) <= 1.5 * np.median(seconds[first]) + 0.5
    assert np.median(dagster_growth[last]) <= 1.5 * np.median(dagster_growth[first]) + 64 * 1024
