"""The seed's four strategies built for real, each a book of target weights over the out-of-sample
period: LSTM momentum, Transformer pairs, a DQN choosing between the ML long-short and
risk-parity books, and a genetic search over a blended ML/momentum top-k book (its candidates
are trials the strategy table counts)."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from models.backtest.engine import CostModel, performance
from models.learning.nets import one_torch_thread
from models.portfolio import rebalance_dates, risk_parity_weights, top_k_weights
from models.strategies.genetic import Candidate, blended_scores, genetic_search
from models.strategies.momentum import lstm_momentum_scores
from models.strategies.pairs import transformer_pairs_weights
from models.strategies.rl import ACTIONS, dqn_decisions, mix_books

SEED_STRATEGIES = ("lstm_momentum", "transformer_pairs", "rl_portfolio", "genetic")
WEIGHTS_SCHEMA = {
    "strategy": pl.String,
    "date": pl.Date,
    "symbol": pl.String,
    "weight": pl.Float64,
    "kind": pl.String,
}


@dataclass
class SeedBooks:
    """What :func:`seed_strategies` built: ``weights`` ``[strategy, date, symbol, weight,
    kind]`` (``oos`` books, ``variant`` genetic candidates), the tables worth showing (pairs
    formed, the DQN's action shares, the genetic candidates), reproducible ``metrics``, and
    each strategy's build ``seconds``."""

    weights: pl.DataFrame
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def seed_strategies(
    strategies: list[str],
    signals: pl.DataFrame,
    prices: pl.DataFrame,
    costs: CostModel,
    own_books: pl.DataFrame,
    *,
    top_k: int,
    rebalance_every: int,
    refit_every: int,
    net_epochs: int,
    n_pairs: int,
    pairs_reform_every: int,
    rl_timesteps: int,
    ga_population: int,
    ga_generations: int,
    ga_selection: float,
    lag: int,
    switch_cost: float,
    seed: int,
    log: Callable[[str], None] = lambda _: None,
) -> SeedBooks:
    """Build ``strategies`` on the out-of-sample ``signals`` (``[date, symbol, score]``),
    trading under ``costs``; ``own_books``: the pipeline's books, whose ML long-short and risk
    parity the DQN mixes (built here when absent).

    - ``lstm_momentum``: an LSTM on each asset's last 20 volatility-scaled returns, refitted
      walk-forward every ``refit_every`` days, its forecasts ranked into a top-k book;
    - ``transformer_pairs``: cointegrated pairs (Engle-Granger) re-formed every
      ``pairs_reform_every`` days, the spread's next move forecast by a Transformer fitted on
      the formation window, traded on the forecast;
    - ``rl_portfolio``: a DQN choosing every rebalance between the ML long-short book, the
      risk-parity book, mixes and cash, trained only on decisions whose rewards had been
      realised;
    - ``genetic``: DEAP's genetic search over top-k, rebalance interval and the blend of the ML
      forecast with 60-day momentum, selected on the first ``ga_selection`` of the period.
    """
    start, end = signals["date"].min(), signals["date"].max()
    dates = rebalance_dates(signals["date"], rebalance_every)
    out = SeedBooks(pl.DataFrame(schema=WEIGHTS_SCHEMA))
    books: list[tuple[str, pl.DataFrame, str]] = []
    with one_torch_thread():  # small nets: one thread is faster, and steps run side by side
        for name in strategies:
            began = time.perf_counter()
            log(f"seed strategy {name}: building")
            if name == "lstm_momentum":
                scores = lstm_momentum_scores(
                    costs.returns.select("date", "symbol", "ret"),
                    dates,
                    refit_every=refit_every,
                    epochs=net_epochs,
                    seed=seed,
                )
                books.append((name, top_k_weights(scores, dates, top_k), "oos"))
            elif name == "transformer_pairs":
                weights, pairs = transformer_pairs_weights(
                    prices,
                    start,
                    end,
                    n_pairs=n_pairs,
                    reform_every=pairs_reform_every,
                    epochs=net_epochs,
                    seed=seed,
                )
                books.append((name, weights, "oos"))
                out.tables["pairs"] = pairs
                out.metrics["pairs_formed"] = pairs.height
            elif name == "rl_portfolio":
                weights, shares = rl_portfolio(
                    signals,
                    costs,
                    dates,
                    own_books,
                    top_k=top_k,
                    every=rebalance_every,
                    lag=lag,
                    switch_cost=switch_cost,
                    refit_every=refit_every,
                    timesteps=rl_timesteps,
                    seed=seed,
                )
                books.append((name, weights, "oos"))
                out.tables["rl_actions"] = shares
                out.metrics |= {f"rl_share_{r['action']}": r["share"] for r in shares.to_dicts()}
            elif name == "genetic":
                best, candidates, found = genetic_book(
                    signals,
                    costs,
                    selection=ga_selection,
                    population=ga_population,
                    generations=ga_generations,
                    seed=seed,
                )
                books.append((name, best, "oos"))
                books += [(c, w, "variant") for c, w in candidates.items()]
                out.tables["genetic_candidates"] = found
                out.metrics |= {
                    "ga_candidates": len(candidates),
                    "ga_best_selection_sharpe": found["selection_sharpe"][0],
                    "ga_best_holdout_sharpe": found["holdout_sharpe"][0],
                }
            else:
                raise ValueError(f"unknown seed strategy {name!r}; known: {SEED_STRATEGIES}")
            out.seconds[name] = time.perf_counter() - began
            log(f"seed strategy {name}: built in {out.seconds[name]:.1f} s")
    if books:
        out.weights = pl.concat(
            w.select("date", "symbol", "weight").with_columns(
                strategy=pl.lit(name), kind=pl.lit(kind)
            )
            for name, w, kind in books
        ).select(*WEIGHTS_SCHEMA)
    return out


def rl_portfolio(
    signals: pl.DataFrame,
    costs: CostModel,
    dates: pl.Series,
    own_books: pl.DataFrame,
    *,
    top_k: int,
    every: int,
    lag: int,
    switch_cost: float,
    refit_every: int,
    timesteps: int,
    seed: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The DQN's books (``own_books``' ML long-short and risk-parity books when it has them),
    their net returns, the agent's walk-forward decisions and the mixed targets; with the
    share of decisions per action."""

    def book(name: str, build) -> pl.DataFrame:
        own = own_books.filter((pl.col("strategy") == name) & (pl.col("kind") == "oos"))
        return own.select("date", "symbol", "weight") if own.height else build()

    ls = book("ml_long_short", lambda: top_k_weights(signals, dates, top_k, long_short=True))
    rp = book(
        "risk_parity",
        lambda: risk_parity_weights(costs.returns, rebalance_dates(signals["date"], 21)),
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
        .filter(pl.col("date") <= signals["date"].max())  # decide only while there are signals
    )
    decisions = dqn_decisions(
        net.select("ls", "rp").to_numpy(),
        net["date"].to_numpy(),
        every=every,
        lag=lag,
        switch_cost=switch_cost,
        refit_every=refit_every,
        timesteps=timesteps,
        seed=seed,
    )
    labels = {i: f"ls{a:.1f}_rp{b:.1f}" for i, (a, b) in enumerate(ACTIONS)}
    shares = (
        decisions.group_by("action")
        .agg(share=pl.len() / decisions.height)
        .sort("action")
        .with_columns(pl.col("action").replace_strict(labels))  # long-short and risk-parity parts
    )
    return mix_books(decisions, [("ls", ls), ("rp", rp)]), shares


def genetic_book(
    signals: pl.DataFrame,
    costs: CostModel,
    *,
    selection: float,
    population: int,
    generations: int,
    seed: int,
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame], pl.DataFrame]:
    """The genetic search's winner (by net Sharpe on the first ``selection`` of the period),
    every candidate's targets, and the candidates' Sharpe ratios on the selection window and
    on the hold-out after it (best first)."""
    days = signals["date"].unique().sort()
    cut = days[int(len(days) * selection)]
    n = signals.filter(pl.col("date") == days[0]).height
    weights: dict[Candidate, pl.DataFrame] = {}
    halves: dict[Candidate, tuple[float, float]] = {}

    def fitness(c: Candidate) -> float:
        scores = blended_scores(signals, costs.returns, c.blend)
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
        population=population,
        generations=generations,
        seed=seed,
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
    return weights[ranked[0][0]], {c.name: weights[c] for c, _ in found}, candidates
