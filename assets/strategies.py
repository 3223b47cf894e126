"""The seed's strategies, built for real: LSTM momentum, Transformer pairs, an RL (DQN) portfolio
and a genetic search over a blended ML/momentum book. Their targets join the other books in the
backtest; the genetic search's candidates join the variants that the strategy table counts as
trials."""

import polars as pl
from dagster import AssetExecutionContext, Config, MetadataValue, Output, ResourceParam, asset
from pydantic import Field

from assets._config import keyword_settings
from assets._meta import frame_metadata, image, png_bytes, table, to_markdown
from assets.ports import ReportStore, Tracker
from models.backtest.engine import CostModel
from models.reporting.plots import selection_vs_holdout
from models.strategies.seeds import SEED_STRATEGIES
from models.strategies.seeds import seed_strategies as build_seed_strategies


class SeedConfig(Config):
    """The seed books trade under the backtest's cost model (the ``cost_model`` asset)."""

    strategies: list[str] = Field(
        default=list(SEED_STRATEGIES), description=f"Of {', '.join(SEED_STRATEGIES)}."
    )
    top_k: int = Field(default=5, description="Names held by the LSTM momentum book.")
    rebalance_every: int = Field(
        default=5,
        description="Days between the momentum book's rebalances and the DQN's decisions.",
    )
    refit_every: int = Field(
        default=252, description="Trading days between refits of the LSTM and the DQN."
    )
    net_epochs: int = Field(
        default=5, description="LSTM momentum and Transformer pairs: training epochs per fit."
    )
    n_pairs: int = Field(default=5, description="Transformer pairs: pairs traded at a time.")
    pairs_reform_every: int = Field(
        default=126, description="Transformer pairs: trading days between pair formations."
    )
    rl_timesteps: int = Field(default=3000, description="DQN: environment steps per refit.")
    ga_population: int = Field(default=8, description="Genetic search: population size.")
    ga_generations: int = Field(default=4, description="Genetic search: generations.")
    ga_selection: float = Field(
        default=0.5,
        description="Genetic search: share of the out-of-sample period its fitness (net Sharpe) "
        "reads; the rest is a hold-out it never sees.",
    )
    seed: int = Field(default=42, description="Seeds the nets, the DQN and the genetic search.")


@asset(group_name="portfolio", kinds={"polars", "pytorch", "mlflow"}, io_manager_key="lake")
def seed_strategies(
    context: AssetExecutionContext,
    config: SeedConfig,
    signals: pl.DataFrame,
    portfolio_weights: pl.DataFrame,
    market_prices: pl.DataFrame,
    cost_model: CostModel,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """Target weights ``[strategy, date, symbol, weight, kind]`` of the seed's strategies over
    the out-of-sample period (``oos``) and the genetic search's candidates (``variant``); see
    ``models/strategies/seeds.py`` for how each is built."""
    built = build_seed_strategies(
        config.strategies,
        signals.filter(pl.col("kind") == "oos"),
        market_prices,
        cost_model,
        portfolio_weights,
        **keyword_settings(config, build_seed_strategies),
        lag=cost_model.lag,
        switch_cost=cost_model.costs.cost_bps / 1e4,
        log=context.log.info,
    )
    metadata = {name: table(frame) for name, frame in built.tables.items()}
    artefacts = _genetic_outputs(built.tables.get("genetic_candidates"), reports, metadata)
    with tracker.asset_run(context) as run:
        run.log_params(config.model_dump() | dict(cost_model.settings))
        run.log_metrics(built.metrics)  # timings stay in the metadata: metrics must reproduce
        for path in artefacts:
            run.log_artifact(str(path))
    seconds = pl.DataFrame(
        {"strategy": list(built.seconds), "seconds": list(built.seconds.values())}
    )
    return Output(
        built.weights,
        metadata={
            **frame_metadata(built.weights),
            **metadata,
            "seconds": table(seconds),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


def _genetic_outputs(found: pl.DataFrame | None, reports: ReportStore, metadata: dict) -> list:
    """The genetic candidates as a report table and their selection vs hold-out Sharpe
    ratios as a picture (into ``metadata`` too); the files written."""
    if found is None:
        return []
    png = png_bytes(
        selection_vs_holdout(
            found["selection_sharpe"].to_numpy(), found["holdout_sharpe"].to_numpy()
        )
    )
    metadata["genetic_selection_vs_holdout"] = image(png, "selection vs hold-out Sharpe")
    return [
        reports.write("genetic_candidates.md", to_markdown(found, ".3f")),
        reports.write("genetic_selection_vs_holdout.png", png),
    ]
