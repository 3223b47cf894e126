"""Gaps that do not break training: five years of the bundled stocks as the user's files, one
of them missing a whole year in the middle; the fast profile tunes and predicts out of fold.

The run once failed here with "622 dates cannot hold 3 test blocks after 311": a label spanning
the hole was the longest horizon seen, and it set the purge of every fold."""

from datetime import date

import polars as pl
import pytest
from conftest import temp_pipeline
from dagster import AssetKey

from models.learning.dataset import assemble
from models.learning.training import outer_splits
from pipelines.definitions import JOB, job_assets
from pipelines.settings import load_settings
from pipelines.sources import BundledPriceSource

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GAP = (date(2020, 1, 1), date(2020, 12, 31))
UPSTREAM = [
    "price_history",
    "price_quarantine",
    "market_prices",
    "quality_findings",
    "universe",
    "alt_data",
    "sector_map",
    "news_sentiment",
    "feature_matrix",
    "labels",
    "base_models",
    "oof_predictions",
]


def test_a_symbol_missing_a_year_neither_breaks_nor_moves_the_folds(
    tmp_path, materialized, monkeypatch
):
    prices = BundledPriceSource().load_prices().frame.filter(pl.col("date") >= date(2017, 12, 1))
    folder = tmp_path / "prices"
    folder.mkdir()
    for (symbol,), part in prices.partition_by("symbol", as_dict=True).items():
        if symbol == "JPM":
            part = part.filter(~pl.col("date").is_between(*GAP))
        part.select("date", "close").write_csv(folder / f"{symbol}.csv")
    env = {
        "ALPHAFORGE_HOME": str(tmp_path / "home"),
        "ALPHAFORGE_PROFILE": "fast",
        # the session run's tracking store: a new SQLite store costs its migrations (~20 s)
        "ALPHAFORGE_MLFLOW_URI": load_settings(materialized.env).mlflow_uri,
    }
    for name, value in env.items():  # as a shell would have them: secrets by reference
        monkeypatch.setenv(name, value)
    overrides = {
        "data.source": "files",
        "data.path": str(folder / "*.csv"),
        "data.symbol_from_filename": "true",
        "data.start_date": "2017-12-01",
        "models.names": "[lightgbm]",
        "explain.model": "lightgbm",
        "tracking.experiment": "label-gaps",  # the shared store, not the shared experiment
    }
    pipeline = temp_pipeline(env, overrides=overrides)
    settings, resolved = pipeline.settings, pipeline.resolved
    job = pipeline.job(JOB)
    result = job.execute_in_process(
        run_config=resolved.run_config(job_assets(job)),
        instance=pipeline.instance,
        asset_selection=[AssetKey(a) for a in UPSTREAM],
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    lake = settings.lake
    labels = pl.read_parquet(lake / "labels.parquet")
    jpm = labels.filter(pl.col("symbol") == "JPM")
    # no label spans the hole; the rows on both sides keep theirs
    assert jpm.filter((pl.col("date") < GAP[0]) & (pl.col("label_end") > GAP[1])).is_empty()
    assert jpm.filter(pl.col("date") > GAP[1]).height > 400
    # the screen keeps JPM out for a month after its return (a calendar-gap finding)
    universe = pl.read_parquet(lake / "universe.parquet").filter(pl.col("symbol") == "JPM")
    back = universe.filter(pl.col("date") > GAP[1]).sort("date")
    assert back["reason"][0].startswith("open finding: calendar gap")
    # the outer folds are those of the same panel without JPM
    from dagster import build_input_context, build_output_context

    from pipelines.io_managers import LakeIOManager

    with build_input_context(  # through the lake, which reads only the pickles it signed
        asset_key="base_models", upstream_output=build_output_context(asset_key="base_models")
    ) as context:
        base = LakeIOManager(base_dir=str(lake)).load_input(context)
    assert base.horizon == 5  # the configured horizon is the purge
    oof = pl.read_parquet(lake / "oof_predictions.parquet")
    folds = oof.group_by("fold").agg(first=pl.col("date").min(), last=pl.col("date").max())
    features = pl.read_parquet(lake / "feature_matrix.parquet")
    without = assemble(
        features.filter(pl.col("symbol") != "JPM"), labels.filter(pl.col("symbol") != "JPM")
    )
    n_outer = resolved.experiment.cv.outer_splits
    expected = outer_splits(without, base.tune_end, n_outer, horizon=5)
    want = [
        tuple(without.dates[te][[0, -1]].astype("datetime64[D]").tolist()) for _, te in expected
    ]
    assert folds.sort("fold").select("first", "last").rows() == want
