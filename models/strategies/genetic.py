"""Genetic search (DEAP) over a strategy's parameters: holding size, rebalance interval and the
blend of the ML forecast with price momentum.

Every distinct candidate the search evaluates is returned, so that the strategy table counts
each one as a trial: the deflated Sharpe ratio and the probability of backtest overfitting then
price in the search. The fitness is the candidate's net Sharpe ratio on a selection window (the
first part of the out-of-sample period); the rest of the period is a hold-out the search never
saw.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from deap import algorithms, base, creator, tools

from models.types import DATE, SYMBOL


@dataclass(frozen=True)
class Candidate:
    top_k: int
    every: int
    blend: float  # weight of the ML forecast's rank; the rest is 60-day momentum's

    @property
    def name(self) -> str:
        return f"genetic[k={self.top_k},every={self.every},blend={self.blend:.2f}]"


def blended_scores(signals: pl.DataFrame, returns: pl.DataFrame, blend: float) -> pl.DataFrame:
    """``[date, symbol, score]``: ``blend`` times the forecast's cross-sectional rank plus
    ``1 - blend`` times the rank of the trailing 60-day return (both known at the date's close;
    ranks in [0, 1])."""
    momentum = returns.sort(SYMBOL, DATE).select(
        DATE,
        SYMBOL,
        pl.col("ret").log1p().rolling_sum(60).over(SYMBOL).alias("momentum"),
    )
    rank = lambda c: (pl.col(c).rank() - 1) / (pl.len() - 1).clip(1)  # noqa: E731
    return (
        signals.select(DATE, SYMBOL, "score")
        .join(momentum, on=[DATE, SYMBOL], how="left")
        .with_columns(pl.col("momentum").fill_null(pl.col("momentum").median().over(DATE)))
        .select(
            DATE,
            SYMBOL,
            (blend * rank("score").over(DATE) + (1 - blend) * rank("momentum").over(DATE))
            .fill_null(0.5)
            .alias("score"),
        )
    )


def genetic_search(
    fitness: Callable[[Candidate], float],
    *,
    top_k: tuple[int, int],
    every: tuple[int, int],
    population: int = 8,
    generations: int = 4,
    seed: int = 0,
) -> list[tuple[Candidate, float]]:
    """Evolve candidates (tournament selection, uniform crossover, bounded mutation) and return
    every distinct one evaluated, with its fitness, in the order first seen."""
    if not hasattr(creator, "AlphaForgeFitness"):
        creator.create("AlphaForgeFitness", base.Fitness, weights=(1.0,))
        creator.create("AlphaForgeIndividual", list, fitness=creator.AlphaForgeFitness)
    rng = random.Random(seed)
    seen: dict[Candidate, float] = {}

    def candidate(ind) -> Candidate:
        return Candidate(
            int(np.clip(ind[0], *top_k)),
            int(np.clip(ind[1], *every)),
            round(float(np.clip(ind[2], 0, 1)) * 20) / 20,
        )

    def evaluate(ind) -> tuple[float]:
        c = candidate(ind)
        if c not in seen:
            value = fitness(c)
            seen[c] = value if np.isfinite(value) else -10.0
        return (seen[c],)

    def mutate(ind, indpb: float = 0.5):
        if rng.random() < indpb:
            ind[0] = int(np.clip(ind[0] + rng.choice((-2, -1, 1, 2)), *top_k))
        if rng.random() < indpb:
            ind[1] = int(np.clip(ind[1] + rng.choice((-5, -2, 2, 5)), *every))
        if rng.random() < indpb:
            ind[2] = float(np.clip(ind[2] + rng.gauss(0, 0.2), 0, 1))
        return (ind,)

    toolbox = base.Toolbox()
    toolbox.register(
        "individual",
        lambda: creator.AlphaForgeIndividual(
            [rng.randint(*top_k), rng.randint(*every), rng.random()]
        ),
    )
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", evaluate)
    toolbox.register("mate", tools.cxUniform, indpb=0.5)
    toolbox.register("mutate", mutate)
    toolbox.register("select", tools.selTournament, tournsize=3)
    # DEAP's operators draw from the global `random`: seed it for the search, then restore it
    state = random.getstate()
    random.seed(seed)
    try:
        algorithms.eaSimple(
            toolbox.population(n=population),
            toolbox,
            cxpb=0.6,
            mutpb=0.4,
            ngen=generations,
            verbose=False,
        )
    finally:
        random.setstate(state)
    return list(seen.items())
