"""Thirty consecutive nightly runs (the ingest and feature slice of ``daily_job``) on a short
history: every night succeeds, and the time and storage each night costs stay flat.

    python -m benchmarks.nights

Judged here, not in a timed test: the median wall time of the last ten nights at most 1.5x
the first ten's (+0.5 s), and the Dagster storage growth per night likewise (+64 KiB).
"""

import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
from dagster import AssetKey, DagsterInstance, PartitionKeyRange

from pipelines.definitions import DAILY_JOB, JOB, build_definitions, job_assets
from pipelines.experiment import resolve
from pipelines.settings import load_settings, prepare_home

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


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def thirty_nights(home: Path) -> dict[str, list[float]]:
    """Each night's wall seconds and lake / Dagster storage growth in bytes."""
    env = {"ALPHAFORGE_HOME": str(home), "ALPHAFORGE_PROFILE": "fast"}
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
    out: dict[str, list[float]] = {"seconds": [], "lake": [], "dagster": []}
    config = resolved.run_config(job_assets(daily))
    for night in nights:
        lake, dag = _bytes(settings.lake), _bytes(settings.dagster_home)
        start = time.perf_counter()
        result = daily.execute_in_process(
            run_config=config, instance=instance, asset_selection=NIGHTLY, partition_key=night
        )
        out["seconds"].append(time.perf_counter() - start)
        assert result.success, night
        out["lake"].append(_bytes(settings.lake) - lake)
        out["dagster"].append(_bytes(settings.dagster_home) - dag)
    panel = pl.read_parquet(settings.lake / "market_prices.parquet")
    assert panel["date"].max() == date(2022, 12, 12)
    return out


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        nights = thirty_nights(Path(tmp) / "home")
    first, last = slice(0, 10), slice(20, 30)
    secs, dag = np.array(nights["seconds"]), np.array(nights["dagster"])
    ok_time = np.median(secs[last]) <= 1.5 * np.median(secs[first]) + 0.5
    ok_storage = np.median(dag[last]) <= 1.5 * np.median(dag[first]) + 64 * 1024
    print(
        f"30 nights: wall s/night first 10 median {np.median(secs[first]):.2f}, last 10 "
        f"{np.median(secs[last]):.2f} ({'ok' if ok_time else 'MISSED'}); lake growth/night "
        f"median {np.median(nights['lake']) / 1024:.0f} KiB; Dagster storage growth/night "
        f"first 10 median {np.median(dag[first]) / 1024:.0f} KiB, last 10 "
        f"{np.median(dag[last]) / 1024:.0f} KiB ({'ok' if ok_storage else 'MISSED'})"
    )
    return 0 if ok_time and ok_storage else 1


if __name__ == "__main__":
    sys.exit(main())
