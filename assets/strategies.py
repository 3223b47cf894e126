"""The seed's strategies, built for real: LSTM momentum, Transformer pairs, an RL (DQN) portfolio
and a genetic search over a blended ML/momentum book. Their targets join the other books in the
backtest; the genetic search's candidates join the variants that the strategy table counts as
trials."""

import time

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, Output, ResourceParam, asset
from pydantic import Field

from assets._config import BacktestConfig, cost_model
from assets._meta import frame_metadata, image, png_bytes, table, to_markdown
from assets.ports import ReportStore, Tracker
from models.backtest import CostModel, performance
from models.genetic import Candidate, blended_scores, genetic_search
from models.momentum import lstm_momentum_scores
from models.nets import one_torch_thread
from models.pairs import transformer_pairs_weights
from models.plots import selection_vs_holdout
from models.portfolio import rebalance_dates, risk_parity_weights, top_k_weights
from models.rl import ACTIONS, dqn_decisions, mix_books

SEED_STRATEGIES = ("lstm_momentum", "transformer_pairs", "rl_portfolio", "genetic")


class SeedConfig(BacktestConfig):
    """The cost model is the backtest's (the experiment sets both from ``portfolio``)."""

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
    seed: int = Field(default=0, description="Seeds the nets, the DQN and the genetic search.")


@asset(group_name="portfolio", kinds={"polars", "pytorch", "mlflow"}, io_manager_key="lake")
def seed_strategies(
    context: AssetExecutionContext,
    config: SeedConfig,
    signals: pl.DataFrame,
    portfolio_weights: pl.DataFrame,
    market_prices: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """Target weights ``[strategy, date, symbol, weight, kind]`` of the seed's strategies over
    the out-of-sample period (``oos``) and the genetic search's candidates (``variant``):

    - ``lstm_momentum``: an LSTM on each asset's last 20 volatility-scaled returns, refitted
      walk-forward, its forecasts ranked into a top-k book;
    - ``transformer_pairs``: cointegrated pairs (Engle-Granger) re-formed every half year, the
      spread's next move forecast by a Transformer fitted on the formation window, traded on
      the forecast;
    - ``rl_portfolio``: a DQN choosing every rebalance between the ML long-short book, the
      risk-parity book, mixes and cash, trained only on decisions whose rewards had been
      realised;
    - ``genetic``: DEAP's genetic search over top-k, rebalance interval and the blend of the ML
      forecast with 60-day momentum, selected on the first part of the period.
    """
    oos = signals.filter(pl.col("kind") == "oos")
    costs = cost_model(config, market_prices)
    start = oos["date"].min()
    dates = rebalance_dates(oos["date"], config.rebalance_every)
    books: list[tuple[str, pl.DataFrame, str]] = []
    metadata: dict[str, object] = {}
    metrics: dict[str, float] = {}
    clock: dict[str, float] = {}
    artefacts = []
    with one_torch_thread():  # small nets: one thread is faster, and steps run side by side
        for name in config.strategies:
            began = time.perf_counter()
            context.log.info(f"seed strategy {name}: building")
            if name == "lstm_momentum":
                scores = lstm_momentum_scores(
                    costs.returns.select("date", "symbol", "ret"),
                    dates,
                    refit_every=config.refit_every,
                    epochs=config.net_epochs,
                    seed=config.seed,
                )
                books.append((name, top_k_weights(scores, dates, config.top_k), "oos"))
            elif name == "transformer_pairs":
                weights, pairs = transformer_pairs_weights(
                    market_prices,
                    start,
                    oos["date"].max(),
                    n_pairs=config.n_pairs,
                    reform_every=config.pairs_reform_every,
                    epochs=config.net_epochs,
                    seed=config.seed,
                )
                books.append((name, weights, "oos"))
                metadata["pairs"] = table(pairs)
                metrics["pairs_formed"] = pairs.height
            elif name == "rl_portfolio":
                weights, shares = _rl_portfolio(config, oos, portfolio_weights, costs, dates)
                books.append((name, weights, "oos"))
                metadata["rl_actions"] = table(shares)
                metrics |= {f"rl_share_{r['action']}": r["share"] for r in shares.to_dicts()}
            elif name == "genetic":
                best, candidates, found, png = _genetic(config, oos, costs)
                books.append((name, best, "oos"))
                books += [(c, w, "variant") for c, w in candidates.items()]
                metadata["genetic_candidates"] = table(found)
                metadata["genetic_selection_vs_holdout"] = image(
                    png, "selection vs hold-out Sharpe"
                )
                artefacts += [
                    reports.write("genetic_candidates.md", to_markdown(found, ".3f")),
                    reports.write("genetic_selection_vs_holdout.png", png),
                ]
                metrics |= {
                    "ga_candidates": len(candidates),
                    "ga_best_selection_sharpe": found["selection_sharpe"][0],
                    "ga_best_holdout_sharpe": found["holdout_sharpe"][0],
                }
            else:
                raise ValueError(f"unknown seed strategy {name!r}; known: {SEED_STRATEGIES}")
            clock[name] = time.perf_counter() - began
            context.log.info(f"seed strategy {name}: built in {clock[name]:.1f} s")
    frame = (
        pl.concat(
            w.select("date", "symbol", "weight").with_columns(
                strategy=pl.lit(name), kind=pl.lit(kind)
            )
            for name, w, kind in books
        ).select("strategy", "date", "symbol", "weight", "kind")
        if books
        else pl.DataFrame(
            schema={
                "strategy": pl.String,
                "date": pl.Date,
                "symbol": pl.String,
                "weight": pl.Float64,
                "kind": pl.String,
            }
        )
    )
    with tracker.asset_run(context) as run:
        run.log_params(config.model_dump())
        run.log_metrics(metrics)  # timings stay in the metadata: metrics must reproduce
        for path in artefacts:
            run.log_artifact(str(path))
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            **metadata,
            "seconds": table(
                pl.DataFrame({"strategy": list(clock), "seconds": list(clock.values())})
            ),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


def _rl_portfolio(
    config: SeedConfig,
    oos: pl.DataFrame,
    portfolio_weights: pl.DataFrame,
    costs: CostModel,
    dates: pl.Series,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The DQN's books (the pipeline's own ML long-short and risk-parity books when it built
    them), their net returns, the agent's walk-forward decisions and the mixed targets."""

    def book(name: str, build) -> pl.DataFrame:
        own = portfolio_weights.filter((pl.col("strategy") == name) & (pl.col("kind") == "oos"))
        return own.select("date", "symbol", "weight") if own.height else build()

    ls = book("ml_long_short", lambda: top_k_weights(oos, dates, config.top_k, long_short=True))
    rp = book(
        "risk_parity",
        lambda: risk_parity_weights(costs.returns, rebalance_dates(oos["date"], 21)),
    )
    net = (
        costs.run(ls)
        .select("date", pl.col("net").alias("ls"))
        .join(
            costs.run(rp).select("date", pl.col("net").alias("rp")),
            on="date",
            how="full",
            coalesce=True,
        )
        .sort("date")
        .fill_null(0.0)
        .filter(pl.col("date") <= oos["date"].max())  # decide only while there are signals
    )
    decisions = dqn_decisions(
        net.select("ls", "rp").to_numpy(),
        net["date"].to_numpy(),
        every=config.rebalance_every,
        lag=config.lag,
        switch_cost=config.cost_bps / 1e4,
        refit_every=config.refit_every,
        timesteps=config.rl_timesteps,
        seed=config.seed,
    )
    labels = {i: f"ls{a:.1f}_rp{b:.1f}" for i, (a, b) in enumerate(ACTIONS)}
    shares = (
        decisions.group_by("action")
        .agg(share=pl.len() / decisions.height)
        .sort("action")
        .with_columns(pl.col("action").replace_strict(labels))  # long-short and risk-parity parts
    )
    return mix_books(decisions, [("ls", ls), ("rp", rp)]), shares


def _genetic(
    config: SeedConfig, oos: pl.DataFrame, costs: CostModel
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame], pl.DataFrame, bytes]:
    """The genetic search's winner (by net Sharpe on the selection window), every candidate's
    targets, the candidates' Sharpe ratios on the selection window and the hold-out (best
    first), and the picture of one against the other."""
    days = oos["date"].unique().sort()
    cut = days[int(len(days) * config.ga_selection)]
    n = oos.filter(pl.col("date") == days[0]).height
    weights: dict[Candidate, pl.DataFrame] = {}
    halves: dict[Candidate, tuple[float, float]] = {}

    def fitness(c: Candidate) -> float:
        scores = blended_scores(oos, costs.returns, c.blend)
        w = top_k_weights(scores, rebalance_dates(scores["date"], c.every), c.top_k)
        net = costs.run(w)
        early = net.filter(pl.col("date") < cut)["net"].to_numpy()
        late = net.filter(pl.col("date") >= cut)["net"].to_numpy()
        weights[c] = w
        halves[c] = (performance(early)["sharpe"], performance(late)["sharpe"])
        return halves[c][0]

    found = genetic_search(
        fitness,
        top_k=(2, max(3, min(50, n // 2))),
        every=(1, 21),
        population=config.ga_population,
        generations=config.ga_generations,
        seed=config.seed,
    )
    ranked = sorted(found, key=lambda cf: -cf[1])
    candidates = pl.DataFrame(
        {
            "candidate": [c.name for c, _ in ranked],
            "top_k": [c.top_k for c, _ in ranked],
            "every": [c.every for c, _ in ranked],
            "blend": [c.blend for c, _ in ranked],
            "selection_sharpe": [halves[c][0] for c, _ in ranked],
            "holdout_sharpe": [halves[c][1] for c, _ in ranked],
        }
    )
    png = png_bytes(
        selection_vs_holdout(
            candidates["selection_sharpe"].to_numpy(), candidates["holdout_sharpe"].to_numpy()
        )
    )
    return weights[ranked[0][0]], {c.name: weights[c] for c, _ in found}, candidates, png
