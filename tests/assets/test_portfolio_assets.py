"""The portfolio group's assets called directly, as plain functions, on the shared fast run's
inputs, tracking through the fake of our port (``fakes.FakeTracker``): each returns what the
pipeline wrote and logs what its MLflow run holds, without Dagster's executor or MLflow."""

import pickle

import polars as pl
import pytest
from dagster import build_asset_context
from fakes import FakeTracker
from polars.testing import assert_frame_equal

from assets._config import BacktestConfig
from assets.portfolio import backtest, cost_model
from pipelines.experiment import resolve
from pipelines.resources import ReportsResource

pytestmark = pytest.mark.integration  # reads the shared materialized home


@pytest.fixture(scope="module")
def lake(materialized):
    folder = materialized.home / "lake"
    return lambda name: pl.read_parquet(folder / f"{name}.parquet")


@pytest.fixture(scope="module")
def settings(materialized) -> dict:
    return resolve(None, environ=materialized.env).run_config()["ops"]["cost_model"]["config"]


@pytest.fixture(scope="module")
def costs(lake, settings):
    return cost_model(BacktestConfig(**settings), lake("market_prices"), lake("universe"))


def test_the_cost_model_says_what_it_charges_and_carries_its_settings(costs, settings):
    model = costs.value
    assert dict(model.settings) == settings
    # the bundled prices are closes only: no volume for the impact law, no OHLC for a spread,
    # and the metadata says so rather than charging a made-up figure
    assert not any(model.has.values())
    assert model.liquid is None and model.spreads is None
    assert costs.metadata["market_impact"].value == "not charged: the prices carry no volume"
    assert costs.metadata["spread_cost"].value == (
        "not charged: the prices lack the columns edge needs"
    )
    assert not [k for k in costs.metadata if k.startswith("spread_mae")]
    assert pickle.loads(pickle.dumps(model)).settings == model.settings  # the lake pickles it


def test_the_backtest_called_directly_is_the_pipelines_and_logs_its_settings(
    lake, costs, settings, tmp_path
):
    tracker = FakeTracker()
    out = backtest(
        build_asset_context(),
        portfolio_weights=lake("portfolio_weights"),
        seed_strategies=lake("seed_strategies"),
        cost_model=costs.value,
        universe=lake("universe"),
        tracker=tracker,
        reports=ReportsResource(base_dir=str(tmp_path)),
    )
    assert_frame_equal(out.value, lake("backtest"))
    run = tracker.runs["backtest"]
    assert run.params == settings
    books = set(out.value.filter(pl.col("role") == "strategy")["strategy"])
    assert (
        "equal_weight_sharpe" in run.metrics
        and {m.split("_sharpe")[0] for m in run.metrics if m.endswith("_sharpe")} <= books
    )
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in run.artifacts) == [
        "drawdowns.png",
        "equity_curve.png",
    ]
    assert out.metadata["spread_cost"] == costs.metadata["spread_cost"]


def test_the_strategy_table_called_directly_is_the_pipelines_with_a_run_per_strategy(
    materialized, lake, tmp_path
):
    from assets.portfolio import StrategyTableConfig, strategy_table
    from pipelines.io_managers import LakeIOManager

    folder = materialized.home / "lake"
    base_models = LakeIOManager(base_dir=str(folder)).read_pickle(folder / "base_models.pkl")
    tracker = FakeTracker()
    events = list(
        strategy_table(
            build_asset_context(),
            config=StrategyTableConfig(),
            backtest=lake("backtest"),
            base_models=base_models,
            tracker=tracker,
            reports=ReportsResource(base_dir=str(tmp_path)),
        )
    )
    output, check = events
    assert_frame_equal(output.value, lake("strategy_table"))
    assert check.check_name == "check_strategy_table_plausible" and check.passed
    parent = tracker.runs["strategy_table"]
    assert {c.tags["strategy"] for c in parent.children} == set(output.value["strategy"])
    assert 0 <= parent.metrics["pbo"] <= 1
    assert set(tracker.headlines["strategy_table"]) == {
        "best_net_sharpe",
        "best_net_sharpe_dsr",
        "pbo",
    }
