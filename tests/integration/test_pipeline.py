"""The whole graph on the fast profile: real Dagster instance, real MLflow on SQLite, real data."""

import hashlib
import json
import re
from datetime import date

import mlflow
import numpy as np
import polars as pl
import pytest
from dagster import AssetKey, DagsterEventType

from pipelines.definitions import JOB, definitions_from_env
from pipelines.experiment import PROFILES
from pipelines.resources import DAGSTER_RUN_TAG, PARENT_TAG
from pipelines.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALL_ASSETS = {
    "market_prices",
    "alt_data",
    "feature_matrix",
    "labels",
    "base_models",
    "oof_predictions",
    "ensemble_model",
    "signals",
    "portfolio_weights",
    "cost_model",
    "backtest",
    "strategy_table",
    "seed_strategies",
    "shap_explanations",
    "risk_report",
    "var_backtest",
    "stress_scenarios",
    "correlation_forecasts",
    "run_report",
    "sector_map",
    "return_anomalies",
    "price_quarantine",
    "price_history",
    "news_sentiment",
    "daily_prices",
    "daily_quarantine",
    "quality_findings",
    "universe",
}

FAST_OUTER_FOLDS = PROFILES["fast"]["cv"]["outer_splits"]


def _client(m):
    return mlflow.MlflowClient(load_settings(m.env).mlflow_uri)


def test_every_asset_is_materialized(materialized):
    assert materialized.result.success
    for key in ALL_ASSETS:
        assert materialized.instance.get_latest_materialization_event(AssetKey(key)) is not None, (
            key
        )
    lake = materialized.home / "lake"
    # (the order books' assets, when the microstructure tests ran first, are their job's)
    daily = {p.stem for p in lake.iterdir() if not p.name.startswith((".", "lob_"))}
    assert daily == ALL_ASSETS
    # December 2022 as daily partitions: 20 weekdays, 26 Dec a market holiday (an empty day)
    days = sorted((lake / "daily_prices").iterdir())
    assert len(days) == 20
    rows = {p.stem: len(pl.read_parquet(p)) for p in days}
    assert rows["2022-12-26"] == 0 and sum(rows.values()) == 19 * 20
    assert pl.read_parquet(lake / "market_prices.parquet")["date"].max() == date(2022, 12, 28)


def test_contract_check_passed_on_bundled_data(materialized):
    checks = {c.check_name: c for c in materialized.result.get_asset_check_evaluations()}
    contract = checks["check_price_history_contract"]
    assert contract.passed and contract.metadata["rows_read"].value == (
        contract.metadata["rows_clean"].value + contract.metadata["rows_quarantined"].value
    )
    html = contract.metadata["validation_report"].value
    assert "expectations passed" in open(html).read()
    # the bundled data is real: its quality warnings are reported as they are, never blocking
    quality = checks["check_market_prices_quality"]
    assert quality.severity.value == "WARN"
    quarantine = pl.read_parquet(materialized.home / "lake" / "price_quarantine.parquet")
    assert quarantine.columns == ["source_file", "source_row", "symbol", "date", "rule", "values"]


def test_the_universe_keeps_the_bundled_stocks_though_they_carry_no_volume(materialized):
    lake = materialized.home / "lake"
    universe = pl.read_parquet(lake / "universe.parquet")
    panel = pl.read_parquet(lake / "market_prices.parquet")
    assert len(universe) == len(panel)  # one row per symbol and date
    assert not universe["rule"].drop_nulls().str.contains("dollar volume").any()
    last = universe.filter(pl.col("date") == universe["date"].max())
    assert last["eligible"].sum() == 20
    event = materialized.instance.get_latest_materialization_event(AssetKey("universe"))
    meta = event.asset_materialization.metadata
    assert meta["dollar_volume"].value.startswith("cannot judge without volume")
    assert "eligible_per_date" in meta
    # models see only the screened rows, every quality finding is in the lake
    features = pl.read_parquet(lake / "feature_matrix.parquet")
    out = universe.filter(~pl.col("eligible")).select("symbol", "date")
    assert features.join(out, on=["symbol", "date"]).is_empty()
    findings = pl.read_parquet(lake / "quality_findings.parquet")
    assert findings.columns == ["rule", "symbol", "date", "detail"]


def test_no_leak_found_on_the_bundled_data(materialized):
    checks = {c.check_name: c for c in materialized.result.get_asset_check_evaluations()}
    leakage = checks["check_oof_predictions_no_leakage"]
    assert leakage.passed, leakage.description
    assert leakage.metadata["max_abs_feature_rank_ic"].value < 0.3
    assert leakage.metadata["folds_checked"].value == FAST_OUTER_FOLDS


def test_registered_ensemble_has_challenger_alias_and_predicts(materialized):
    client = _client(materialized)
    version = client.get_model_version_by_alias("alphaforge-ensemble", "challenger")
    assert version.tags["dagster_run_id"] == materialized.result.run_id
    mlflow.set_tracking_uri(load_settings(materialized.env).mlflow_uri)
    model = mlflow.pyfunc.load_model("models:/alphaforge-ensemble@challenger")
    features = pl.read_parquet(materialized.home / "lake" / "feature_matrix.parquet").tail(40)
    pred = model.predict(features.drop("symbol", "date").to_pandas())
    assert pred.shape == (40,) and np.isfinite(pred).all()


def test_report_holds_finite_var_with_var99_at_least_var95(materialized):
    report = json.loads((materialized.home / "reports" / "risk_report.json").read_text())
    var = pl.DataFrame(report["var"])
    from assets.portfolio import STRATEGIES
    from assets.strategies import SEED_STRATEGIES

    # (every book + the seed strategies) x horizons x methods x levels
    assert var.height == (len(STRATEGIES) + len(SEED_STRATEGIES)) * 2 * 7 * 2
    assert var.select(pl.col("var", "es").is_finite().all()).row(0) == (True, True)
    wide = var.pivot(on="level", index=["strategy", "horizon_days", "method"], values="var")
    assert (wide["0.99"] >= wide["0.95"]).all()
    assert (var["es"] >= var["var"] - 1e-12).all()
    assert pl.DataFrame(report["var_backtest"]).height == 7 * 2
    # Monte Carlo over the generated scenarios (1 and 20 days), and the hypothetical shocks
    scenario = pl.DataFrame(report["scenario_var"])
    assert sorted(scenario["horizon_days"].unique()) == [1, 20]
    assert (scenario["coverage"] == 1.0).all() and (scenario["es"] >= scenario["var"]).all()
    shocks = pl.DataFrame(report["shocks"])
    assert shocks.filter(pl.col("shock").str.starts_with("market -10%"))["portfolio_return"][0] < 0
    stress = pl.DataFrame(report["stress"])
    assert stress.filter(pl.col("episode").str.starts_with("COVID"))["portfolio_return"][0] < 0
    assert (
        (materialized.home / "reports" / "risk_report.md")
        .read_text()
        .startswith("# AlphaForge risk report")
    )


def test_var_backtest_forecasts_only_from_earlier_returns(materialized):
    lake = materialized.home / "lake"
    forecasts = pl.read_parquet(lake / "var_backtest.parquet")
    book = (
        pl.read_parquet(lake / "backtest.parquet")
        .filter(strategy="ml_top_k", role="strategy")
        .sort("date")
    )
    # the first forecast comes after a full window (500 days) of the book's own returns
    assert forecasts["date"].min() == book["date"][500]
    assert forecasts.group_by("method", "level").len()["len"].unique().to_list() == [
        book.height - 500
    ]
    assert forecasts.select(pl.col("var", "es").is_finite().all()).row(0) == (True, True)
    assert (forecasts["exception"] == (forecasts["ret"] < -forecasts["var"])).all()
    # the forecast for a day equals the estimate from the 500 returns before it
    from models.risk.var import estimate

    day = book["date"][700]
    net = book["net"].to_numpy()
    row = forecasts.filter(date=day, method="historical", level=0.99)
    assert row["var"][0] == pytest.approx(estimate(net[200:700], "historical", 0.99).var)


def test_stress_scenarios_come_from_the_bootstrap_in_the_fast_profile(materialized):
    scenarios = materialized.defs.load_asset_value(
        "stress_scenarios", instance=materialized.instance
    )
    windows = scenarios["windows"]
    assert windows.shape == (2000, 20, len(scenarios["symbols"])) and np.isfinite(windows).all()
    # the fast profile turns the GAN off (risk.gan: false); the reason says so
    assert scenarios["source"] == "bootstrap" and scenarios["checks"].is_empty()
    assert "the GAN is off" in scenarios["reason"]
    # every scenario is a real 20-day window of the modelled assets
    market = pl.read_parquet(materialized.home / "lake" / "market_prices.parquet")
    assert set(scenarios["symbols"]) <= set(market["symbol"])


def test_correlation_forecasts_score_every_method_out_of_sample(materialized):
    scores = pl.read_parquet(materialized.home / "lake" / "correlation_forecasts.parquet")
    assert set(scores["method"]) == {"rolling", "ewma", "dcc", "lstm"}
    assert scores["mse"].is_finite().all() and (scores["mse"] > 0).all()
    # the fast profile's test days in 20-day blocks
    test_days = PROFILES["fast"]["risk"]["correlation_test_days"]
    assert (scores["blocks"] == test_days // 20).all()
    rolling = scores.filter(method="rolling")
    assert rolling["vs_rolling"][0] == pytest.approx(1.0)


def test_run_report_is_one_page_per_run_and_a_latest_copy(materialized):
    reports = materialized.home / "reports"
    run_id = materialized.result.run_id
    page = (reports / run_id / "report.html").read_text()
    assert page == (reports / "latest" / "report.html").read_text()
    assert run_id in page and page.count("data:image/png;base64,") >= 6
    assert "Investable universe" in page and "Investable symbols per date" in page
    data = json.loads((reports / run_id / "report.json").read_text())
    assert set(data) - {"Investable universe"} == {
        "Strategies",
        "VaR backtest",
        "Value at risk and expected shortfall",
        "Stress tests",
        "Generated scenarios",
        "Dynamic correlation",
        "Explanations",
    }
    coverage = pl.DataFrame(data["VaR backtest"][1])
    assert set(coverage["zone"]) <= {"green", "yellow", "red"}
    assert coverage["kupiec_p"].is_between(0, 1).all()


def test_oof_predictions_lie_after_each_fold_training_window(materialized):
    oof = pl.read_parquet(materialized.home / "lake" / "oof_predictions.parquet")
    assert (oof["date"] > oof["train_end"]).all()
    # and after the tuning window too: hyper-parameters never saw an OOF date
    base = materialized.defs.load_asset_value("base_models", instance=materialized.instance)
    assert oof["date"].min() > base.tune_end
    assert oof["fold"].n_unique() == FAST_OUTER_FOLDS
    # each fold's rows have labels ending after every training label
    per_fold = oof.group_by("fold").agg(
        pl.col("date").min().alias("start"), pl.col("train_end").first()
    )
    assert (per_fold["start"] > per_fold["train_end"]).all()


def test_mlflow_parent_run_with_nested_trials(materialized):
    client = _client(materialized)
    experiment = client.get_experiment_by_name("alphaforge")
    run_id = materialized.result.run_id
    parents = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{PARENT_TAG}` = 'true' and tags.`{DAGSTER_RUN_TAG}` = '{run_id}'",
    )
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"
    children = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
    )
    assert {c.data.tags["dagster.asset_key"] for c in children} == {
        "base_models",
        "oof_predictions",
        "ensemble_model",
        "signals",
        "seed_strategies",
        "backtest",
        "strategy_table",
        "shap_explanations",
        "var_backtest",
        "stress_scenarios",
        "correlation_forecasts",
        "risk_report",
        "run_report",
    }
    trials = client.search_runs([experiment.experiment_id], "attributes.run_name LIKE '%-trial-%'")
    assert len(trials) == 2 * PROFILES["fast"]["models"]["n_trials"]  # two models
    # each trial headlines its mean over the folds it was scored on, and keeps each fold's
    for t in trials:
        folds = [v for k, v in t.data.metrics.items() if re.fullmatch(r"fold_\d+_rank_ic", k)]
        assert len(folds) == t.data.metrics["folds_scored"] >= 1
        assert t.data.metrics["mean_rank_ic"] == pytest.approx(np.mean(folds), abs=1e-12)
    # each model's run holds its study's figures (drawn on a background thread), and so does
    # the step's metadata
    base = next(c for c in children if c.data.tags["dagster.asset_key"] == "base_models")
    step = materialized.instance.get_latest_materialization_event(AssetKey("base_models"))
    metadata = step.asset_materialization.metadata
    for model in ("lightgbm", "xgboost"):
        (run,) = client.search_runs(
            [experiment.experiment_id],
            f"tags.`mlflow.parentRunId` = '{base.info.run_id}' and attributes.run_name = '{model}'",
        )
        pictures = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {
            f"{model}_optimisation_history.png",
            f"{model}_parameter_importance.png",
        } <= pictures
        assert {f"optimisation_history_{model}", f"parameter_importance_{model}"} <= set(metadata)
    assert metadata["refit_seconds"].value > 0


def test_backtest_metrics_are_finite_and_costs_charged(materialized):
    from assets.portfolio import STRATEGIES
    from assets.strategies import SEED_STRATEGIES

    daily = pl.read_parquet(materialized.home / "lake" / "backtest.parquet")
    main = daily.filter(pl.col("role") == "strategy")
    assert set(main["strategy"].unique()) == set(STRATEGIES) | set(SEED_STRATEGIES)
    variants = daily.filter(pl.col("role") == "variant")["strategy"].unique()
    # 3 k x 3 every of the ML book, and the genetic search's candidates
    assert (~variants.str.starts_with("genetic[")).sum() == 9
    assert variants.str.starts_with("genetic[").sum() == _genetic_candidates(materialized)
    assert daily["net"].is_finite().all()
    assert (daily["net"] <= daily["gross"]).all()
    assert daily["cost"].sum() > 0
    # the bundled prices carry no volume: no impact; shorts pay borrowing
    assert daily["impact"].sum() == 0 and daily["spread"].sum() == 0
    assert main.filter(pl.col("strategy") == "ml_long_short")["borrow"].sum() > 0
    assert main.filter(pl.col("strategy") == "ml_top_k")["borrow"].sum() == 0


def _genetic_candidates(materialized) -> int:
    seed = pl.read_parquet(materialized.home / "lake" / "seed_strategies.parquet")
    return seed.filter(pl.col("kind") == "variant")["strategy"].n_unique()


def test_seed_strategies_trade_only_out_of_sample_from_earlier_information(materialized):
    lake = materialized.home / "lake"
    seed = pl.read_parquet(lake / "seed_strategies.parquet")
    signals = pl.read_parquet(lake / "signals.parquet").filter(pl.col("kind") == "oos")
    assert set(seed.filter(pl.col("kind") == "oos")["strategy"]) == {
        "lstm_momentum",
        "transformer_pairs",
        "rl_portfolio",
        "genetic",
    }
    # every target is dated inside the out-of-sample period (the backtest trades it a day later)
    assert seed["date"].min() >= signals["date"].min()
    assert seed["date"].max() <= signals["date"].max()

    def book(name: str) -> pl.DataFrame:
        return seed.filter(pl.col("strategy") == name)

    def per_day(name: str) -> pl.DataFrame:
        weights = pl.col("weight")
        return book(name).group_by("date").agg(net=weights.sum(), gross=weights.abs().sum())

    # the momentum book is long-only top-5; the pairs book never exceeds gross 1
    assert (per_day("lstm_momentum")["net"] - 1).abs().max() < 1e-9
    assert book("lstm_momentum").group_by("date").len()["len"].max() == 5
    assert per_day("transformer_pairs")["gross"].max() <= 1 + 1e-9
    assert per_day("transformer_pairs")["gross"].max() > 0  # it traded
    # the DQN's mixes stay within the books it mixes: gross at most 2 (long-short) and more
    # than one action taken over the period
    assert per_day("rl_portfolio")["gross"].max() <= 2 + 1e-9
    assert per_day("rl_portfolio")["gross"].n_unique() > 1
    # the search's candidates are distinct and the winner is one of them
    candidates = seed.filter(pl.col("kind") == "variant")["strategy"].unique()
    assert len(candidates) >= 6
    assert any(
        book(c)
        .select("date", "symbol", "weight")
        .equals(book("genetic").select("date", "symbol", "weight"))
        for c in candidates
    )


def test_strategy_table_reports_before_and_after_costs_and_honesty(materialized):
    from assets.portfolio import STRATEGIES
    from assets.strategies import SEED_STRATEGIES
    from models.backtest.strategy_table import TABLE_COLUMNS

    books = len(STRATEGIES) + len(SEED_STRATEGIES)
    table = pl.read_parquet(materialized.home / "lake" / "strategy_table.parquet")
    assert table.columns == list(TABLE_COLUMNS) and len(table) == books
    assert (table["annual_return_gross"] >= table["annual_return"]).all()
    assert table["dsr"].is_between(0, 1).all() and table["pbo"].is_between(0, 1).all()
    # every book over equal weight: its own excess is nil, every other one is measured
    bench = table.filter(pl.col("strategy") == "equal_weight")
    assert bench["excess_return"][0] == 0.0
    others = table.filter(pl.col("strategy") != "equal_weight")
    assert others["information_ratio"].is_finite().all()
    # the books + the seed strategies + 9 variants + the genetic candidates backtested, plus
    # 2 models x the fast profile's Optuna trials
    optuna_trials = 2 * PROFILES["fast"]["models"]["n_trials"]
    assert (
        table["n_trials"] == books + 9 + _genetic_candidates(materialized) + optuna_trials
    ).all()
    (check,) = [
        c
        for c in materialized.result.get_asset_check_evaluations()
        if c.check_name == "check_strategy_table_plausible"
    ]
    assert check.passed  # no strategy on the bundled data is too good to be true
    client = _client(materialized)
    experiment = client.get_experiment_by_name("alphaforge")
    runs = client.search_runs([experiment.experiment_id], "tags.strategy = 'hrp'")
    assert runs and "dsr" in runs[0].data.metrics and "sharpe_gross" in runs[0].data.metrics


def test_second_run_logs_a_second_parent_run_and_replaces_the_report(materialized):
    first_report = (materialized.home / "reports" / "risk_report.md").read_text()
    job = materialized.defs.resolve_job_def(JOB)
    again = job.execute_in_process(
        run_config=job.run_config_for_run_config_schema if False else None,
        instance=materialized.instance,
        asset_selection=[AssetKey("risk_report")],
    )
    assert again.success
    client = _client(materialized)
    experiment = client.get_experiment_by_name("alphaforge")
    parents = client.search_runs([experiment.experiment_id], f"tags.`{PARENT_TAG}` = 'true'")
    assert {p.data.tags[DAGSTER_RUN_TAG] for p in parents} >= {
        materialized.result.run_id,
        again.run_id,
    }
    second_report = (materialized.home / "reports" / "risk_report.md").read_text()
    assert materialized.result.run_id in first_report and again.run_id in second_report
    assert not [p for p in (materialized.home / "lake").iterdir() if p.name.startswith(".tmp-")]


def test_malformed_price_file_fails_the_check_and_overwrites_nothing(materialized, tmp_path):
    bad = tmp_path / "my_prices.csv"
    bad.write_text(
        "symbol,date,close\nAAA,2020-01-02,10.0\nAAA,2020-01-03,10.5\nAAA,2020-01-06,-3.0\nBBB,2020-01-02,20\n"
    )
    lake = materialized.home / "lake"
    before = {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in lake.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    defs = definitions_from_env(materialized.env | {"ALPHAFORGE_PRICES": str(bad)})
    result = defs.resolve_job_def(JOB).execute_in_process(
        instance=materialized.instance, raise_on_error=False
    )
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    message = check.description
    assert str(bad) in message and "'close'" in message and "row 4" in message and "-3.0" in message
    materialized_now = {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
    }
    # the independent ingest may run; nothing downstream of prices
    assert materialized_now <= {"alt_data", "news_sentiment"}
    after = {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in lake.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    assert after == before  # alt_data and news_sentiment, if rewritten, byte for byte
