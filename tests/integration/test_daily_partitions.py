"""Daily partitions: after a history run, a nightly run reads and writes only the new day, and a
backfill of a range runs as one run, from Python and from the CLI. Real bundled data, a real
Dagster instance; only the ingest assets run."""

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from conftest import temp_pipeline
from dagster import AssetKey

from pipelines.definitions import DAILY_JOB, JOB, job_assets

pytestmark = pytest.mark.integration
SETTINGS = {"data.start_date": "2022-01-03", "data.daily_from": "2022-12-22"}
HISTORY = [AssetKey(k) for k in ("price_history", "price_quarantine", "market_prices")]
DAILY = [AssetKey(k) for k in ("daily_prices", "daily_quarantine", "market_prices")]


def _materialization(result, key: str):
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_nightly_partition_touches_only_the_new_day_and_a_range_is_one_run(tmp_path):
    env = {"ALPHAFORGE_HOME": str(tmp_path / "home"), "ALPHAFORGE_PROFILE": "fast"}
    pipeline = temp_pipeline(env, overrides=SETTINGS)
    settings, resolved, defs, instance = (
        pipeline.settings,
        pipeline.resolved,
        pipeline.defs,
        pipeline.instance,
    )
    full, daily = defs.resolve_job_def(JOB), defs.resolve_job_def(DAILY_JOB)
    lake = settings.lake

    history = full.execute_in_process(
        run_config=resolved.run_config(job_assets(full)), instance=instance, asset_selection=HISTORY
    )
    hist = _materialization(history, "price_history")
    assert hist["last_date"] == "2022-12-21" and hist["symbols"] == 20
    history_file = lake / "price_history.parquet"
    stamp = history_file.stat().st_mtime_ns

    night = daily.execute_in_process(
        run_config=resolved.run_config(job_assets(daily)),
        instance=instance,
        asset_selection=DAILY,
        partition_key="2022-12-22",
    )
    day = _materialization(night, "daily_prices")
    assert (day["rows_read"], day["rows_written"]) == (20, 20)  # one row per stock, nothing else
    written = pl.read_parquet(lake / "daily_prices" / "2022-12-22.parquet")
    assert written["date"].unique().to_list() == [date(2022, 12, 22)]
    assert history_file.stat().st_mtime_ns == stamp  # the history was not rewritten
    panel = _materialization(night, "market_prices")
    assert (panel["rows_from_history"], panel["rows_from_daily"]) == (hist["dagster/row_count"], 20)
    assert panel["last_date"] == "2022-12-22"

    # a backfill of a range from the CLI: one run, one file per weekday (26 Dec was a holiday)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--from",
            "2022-12-23",
            "--to",
            "2022-12-28",
            "--select",
            "daily_prices",
            "market_prices",
            *[a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}")],
        ],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "daily partitions 2022-12-23..2022-12-28" in cli.stdout
    files = sorted(p.name for p in (lake / "daily_prices").iterdir())
    assert files == [f"2022-12-{d}.parquet" for d in (22, 23, 26, 27, 28)]
    rows = {f: len(pl.read_parquet(lake / "daily_prices" / f)) for f in files}
    assert rows == {
        "2022-12-22.parquet": 20,
        "2022-12-23.parquet": 20,
        "2022-12-26.parquet": 0,
        "2022-12-27.parquet": 20,
        "2022-12-28.parquet": 20,
    }
    final = pl.read_parquet(lake / "market_prices.parquet")
    assert final["date"].max() == date(2022, 12, 28)
    assert final.filter(pl.col("date") > date(2022, 12, 21)).height == 80
    runs = instance.get_runs()
    backfills = [
        r for r in runs if r.tags.get("dagster/asset_partition_range_start") == "2022-12-23"
    ]
    assert len(backfills) == 1


def test_a_backfill_keeps_every_quarantined_row_in_the_partition_of_its_day(tmp_path):
    """Five daily deliveries backfilled in one run, bad rows in three of them: each day's
    quarantine file holds that day's bad rows, and rows read = clean + quarantined per day."""
    from pipelines.definitions import FULL_JOB, partition_range_tags

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    days = [date(2022, 12, d) for d in (19, 20, 21, 22, 23)]
    bad = {  # day -> rows that break a rule
        date(2022, 12, 19): ["AAA,2022-12-19,0.0"],  # price <= 0
        date(2022, 12, 21): ["BBB,2022-12-21,11.0", "CCC,2022-12-21,n/a"],  # repeat; unparseable
        date(2022, 12, 23): ["ddd,2022-12-23,10.0"],  # not an upper-case symbol
    }
    expected = {}
    for i, day in enumerate(days):
        good = [f"{s},{day},{10 + i + k}.5" for k, s in enumerate(("AAA", "BBB", "CCC"))]
        if day == date(2022, 12, 23):  # a Saturday row in Friday's delivery: Friday's window
            good.append("AAA,2022-12-24,14.0")
        rows = [r for r in good if not (day == date(2022, 12, 19) and r.startswith("AAA"))]
        rows += bad.get(day, [])
        (incoming / f"prices_{day}.csv").write_text("symbol,date,close\n" + "\n".join(rows) + "\n")
        expected[day.isoformat()] = (len(rows), len(bad.get(day, [])))
    env = {"ALPHAFORGE_HOME": str(tmp_path / "home"), "ALPHAFORGE_PROFILE": "fast"}
    overrides = {
        "data.source": "files",
        "data.path": str(incoming / "prices_{date}.csv"),
        "data.start_date": "2018-01-01",  # a history long enough for the CV settings
        "data.daily_from": "2022-12-19",
        "data.end_date": "2022-12-23",
        "data.max_quarantine_share": "0.5",
    }
    pipeline = temp_pipeline(env, overrides=overrides, check_files=False)
    settings, resolved = pipeline.settings, pipeline.resolved
    job = pipeline.job(FULL_JOB)
    result = job.execute_in_process(
        run_config=resolved.run_config(job_assets(job)),
        instance=pipeline.instance,
        asset_selection=[AssetKey("daily_prices"), AssetKey("daily_quarantine")],
        tags=partition_range_tags("2022-12-19", "2022-12-23"),
    )
    assert result.success
    lake = settings.lake
    for key, (read, quarantined) in expected.items():
        clean = pl.read_parquet(lake / "daily_prices" / f"{key}.parquet")
        held = pl.read_parquet(lake / "daily_quarantine" / f"{key}.parquet")
        assert (len(clean), len(held)) == (read - quarantined, quarantined), key
        assert held["partition_date"].cast(pl.String).to_list() == [key] * quarantined
    assert "AAA" in pl.read_parquet(lake / "daily_prices" / "2022-12-23.parquet")["symbol"]
    rules = pl.read_parquet(lake / "daily_quarantine" / "2022-12-21.parquet")["rule"].sort()
    assert rules.str.contains("must parse").sum() == 1 and rules.str.contains("repeats").sum() == 1
    events = [  # one materialization per partition, each with the run's metadata
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "daily_prices"
    ]
    assert len(events) == 5
    table = events[0].materialization.metadata["per_partition"]  # a Dagster table
    rows = [tuple(r.data.values()) for r in table.records]
    for key, (read, quarantined) in expected.items():
        assert (key, read, read - quarantined, quarantined) in rows, rows
