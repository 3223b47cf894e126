"""The microstructure group on a real Dagster instance and MLflow store: LOBSTER pairs ingested
under the contract with every line kept, the models registered, the tick scorer replaying the
champion exactly as the batch scores it, a bad pair refused whole, and without data.lob the
group skipped with the reason."""

import polars as pl
import pytest
from conftest import synthetic_lob, write_lobster

pytestmark = pytest.mark.integration


def test_every_line_is_ingested_and_the_champion_registered(lob_materialized, materialized):
    import mlflow

    from pipelines.settings import load_settings

    result = lob_materialized.result
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    assert lob_materialized.keys == ["AAPL_2012-06-21", "GOOG_2012-06-21"]
    lake = materialized.home / "lake"
    for key, lines in (("AAPL_2012-06-21", 3000), ("GOOG_2012-06-21", 6000)):
        events = pl.read_parquet(lake / "lob_events" / f"{key}.parquet")
        book = pl.read_parquet(lake / "lob_book" / f"{key}.parquet")
        assert len(events) == len(book) == lines  # rows in = rows ingested
        assert events["seq"].to_list() == list(range(1, lines + 1))
        assert len(pl.read_parquet(lake / "lob_features" / f"{key}.parquet")) == lines
    checks = [
        e.asset_check_evaluation_data
        for e in lob_materialized.result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert {c.asset_key.to_user_string() for c in checks if c.passed} == {"lob_events", "lob_book"}
    scores = pl.read_parquet(lake / "lob_models.parquet")
    assert set(scores["model"]) == {"majority", "persistence", "cks_ofi", "lightgbm", "deeplob"}
    assert set(scores["horizon"]) == {"k10", "k50", "k100", "s10", "s60"}
    assert (scores["symbol"] == "GOOG").all() and scores["macro_f1"].is_between(0, 1).all()
    costs = pl.read_parquet(lake / "lob_costs.parquet")
    assert sorted(costs["symbol"]) == ["AAPL", "GOOG"]
    assert (
        costs["half_spread_bp"].is_between(0, 100).all()
        and costs["source"].str.contains("LOBSTER").all()
    )
    client = mlflow.MlflowClient(load_settings(materialized.env).mlflow_uri)
    champion = client.get_model_version_by_alias("alphaforge-lob", "champion")
    assert champion.tags["horizon"] == "k50" and champion.tags["ticker"] == "GOOG"
    assert champion.tags["model"] in ("cks_ofi", "lightgbm")
    assert champion.tags["promotion"].startswith("promoted")


def test_the_tick_scorer_replays_the_champion_as_the_batch_scores_it(
    lob_materialized, materialized, alphaforge_cli, tmp_path
):
    import mlflow
    import numpy as np

    from pipelines.settings import load_settings

    message = next(lob_materialized.folder.glob("GOOG_*_message_10.csv.gz"))
    out = tmp_path / "scores.parquet"
    ran = alphaforge_cli(
        "stream", "--lob", str(message), "--config", str(lob_materialized.folder / "lob.yaml"),
        "--out", str(out), home=materialized.home,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "6,000 events scored in" in ran.stdout and "p99" in ran.stdout
    assert "events/s" in ran.stdout
    streamed = pl.read_parquet(out)
    mlflow.set_tracking_uri(load_settings(materialized.env).mlflow_uri)
    model = mlflow.sklearn.load_model("models:/alphaforge-lob@champion")
    feats = pl.read_parquet(materialized.home / "lake" / "lob_features" / "GOOG_2012-06-21.parquet")
    X = feats.select(model.features).cast(pl.Float64).fill_null(np.nan).to_numpy()
    np.testing.assert_allclose(
        streamed.select("p_down", "p_stationary", "p_up").to_numpy(),
        model.predict_proba(X),
        rtol=1e-9,
        atol=1e-12,
    )


def test_a_bad_pair_fails_its_run_and_writes_nothing(tmp_path):
    from dagster import DagsterInstance, materialize

    from assets.microstructure import LOB_PARTITIONS, lob_ingest
    from pipelines.io_managers import LakeIOManager
    from pipelines.lob import FileLobSource
    from pipelines.resources import ReportsResource

    messages, book = synthetic_lob(800, 3, seed=4)
    book[411, 0] = book[411, 2] - 100  # line 412: best ask below the best bid
    write_lobster(tmp_path / "in", "TEST", messages, book, 3)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(LOB_PARTITIONS.name, ["TEST_2012-06-21"])
    result = materialize(
        [lob_ingest],
        partition_key="TEST_2012-06-21",
        instance=instance,
        resources={
            "lob_source": FileLobSource(path=str(tmp_path / "in")),
            "lake": LakeIOManager(base_dir=str(tmp_path / "lake"), lock=False),
            "reports": ReportsResource(base_dir=str(tmp_path / "reports")),
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.step_failure_data.user_failure_data.description
    assert (
        "the book must not be crossed" in text
        and "row 412 of" in text
        and "orderbook_3.csv" in text
    )
    assert not (tmp_path / "lake").exists()  # nothing of the pair was written


def test_without_lob_data_the_group_is_skipped_with_the_reason(tmp_path, alphaforge_cli):
    from pipelines.definitions import FULL_JOB, definitions_from_env, job_assets

    ran = alphaforge_cli("run", "--group", "microstructure", home=tmp_path / "home")
    assert ran.returncode == 2
    assert "microstructure: skipped, data.lob is not set" in ran.stdout
    assert "nothing to run for the microstructure group" in ran.stderr
    defs = definitions_from_env({"ALPHAFORGE_HOME": str(tmp_path / "home")})
    assert not {a for a in job_assets(defs.resolve_job_def(FULL_JOB)) if a.startswith("lob_")}


def test_the_run_report_shows_the_microstructure_pictures(lob_materialized, materialized):
    from assets.reports import _stored_figures
    from models.reporting.html import html_report
    from models.reporting.run_report import _microstructure
    from pipelines.resources import ReportsResource

    reports = ReportsResource(base_dir=str(materialized.home / "reports"))
    (section,) = _microstructure(
        _stored_figures(reports), reports.read("lob_models.json"), reports.read("lob_impact.json")
    )
    page = html_report("r", "s", [section])
    assert "Microstructure" in page and "Depth heat-map GOOG_2012-06-21" in page
    assert "Impact curve" in page and page.count("data:image/png") >= 5


def test_the_sensor_adds_a_partition_per_new_pair_and_runs_it(tmp_path):
    from dagster import DagsterInstance, build_sensor_context

    from pipelines.definitions import definitions_from_env

    messages, book = synthetic_lob(300, 2, seed=8)
    write_lobster(tmp_path / "in", "TEST", messages, book, 2)
    env = {"ALPHAFORGE_HOME": str(tmp_path / "home"), "ALPHAFORGE__DATA__LOB": str(tmp_path / "in")}
    defs = definitions_from_env(env)
    sensor = defs.get_sensor_def("new_lob_files_sensor")
    repo = defs.get_repository_def()
    # an instance with a ref, as the daemon's: the run requests may name the partitions the
    # same tick adds
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster"))
    ref = instance.get_ref()
    result = sensor.evaluate_tick(
        build_sensor_context(instance=instance, instance_ref=ref, repository_def=repo)
    )
    assert [r.partition_key for r in result.run_requests] == ["TEST_2012-06-21"]
    assert sensor.job_name == "microstructure_job"
    (added,) = result.dynamic_partitions_requests
    assert added.partitions_def_name == "lob_ticker_days"
    assert list(added.partition_keys) == ["TEST_2012-06-21"]
    again = sensor.evaluate_tick(
        build_sensor_context(
            instance=instance, instance_ref=ref, cursor=result.cursor, repository_def=repo
        )
    )
    assert not again.run_requests and "no new or changed LOBSTER pair" in again.skip_message
    idle = definitions_from_env({"ALPHAFORGE_HOME": str(tmp_path / "home")})
    tick = idle.get_sensor_def("new_lob_files_sensor").evaluate_tick(
        build_sensor_context(instance=instance, repository_def=idle.get_repository_def())
    )
    assert "data.lob is not set" in tick.skip_message
