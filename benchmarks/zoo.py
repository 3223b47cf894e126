"""Every model of the zoo, tuned and scored the pipeline's way, side by side with the ensemble.

    python -m benchmarks.zoo --data shared [--symbols 100] [--start 2010-01-01] [--trials 10]
    python -m benchmarks.zoo --lake .alphaforge/lake        (what `make run` materialized)

Protocol (``models.learning.training``): Optuna TPE on purged walk-forward folds inside the tuning window,
then out-of-fold predictions on outer walk-forward folds after it, then the meta-learner
(non-negative least squares) refitted walk-forward on earlier folds only. Every figure is
out-of-sample and every model is scored on the same rows. The nets, whose results move with the
seed, are also refitted under ``--seeds`` seeds: mean ± std of their Rank IC.
"""

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import numpy as np
import optuna
import polars as pl
from sklearn.linear_model import LinearRegression

from models.features import ENGINE, build_feature_matrix
from models.features.alternative import empty_alt
from models.features.statistical import statistical_features
from models.learning.dataset import Dataset, assemble
from models.learning.estimators import MODEL_SPECS
from models.learning.labels import forward_returns
from models.learning.metrics import ic_summary
from models.learning.nets import ARCHITECTURES
from models.learning.stacking import walk_forward_meta
from models.learning.training import (
    BaseModels,
    inner_splits,
    oof_frame,
    tune_and_fit,
    tuning_window,
)

RESULTS = Path(__file__).parent / "results"
EMPTY_ALT = empty_alt()


def zoo_table(
    ds: Dataset,
    models: Sequence[str],
    *,
    n_trials: int,
    inner: int,
    outer: int,
    tune_fraction: float = 0.5,
    seed: int = 42,
    seeds: int = 1,
    n_jobs: int = 2,
    progress: Callable[[str], None] = print,
) -> pl.DataFrame:
    """``[model, ic, rank_ic, rank_icir, hit_rate, long_short, n_dates, rank_ic_seed_std,
    tune_s]``: out-of-sample, on the rows the walk-forward ensemble also predicts."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tune_end, mask = tuning_window(ds, tune_fraction)
    splits = inner_splits(ds, mask, inner)
    base = BaseModels({}, {}, tune_end, ds.target, ds.feature_names, seed, n_jobs)
    seconds = {}
    for i, name in enumerate(models, 1):
        started = time.perf_counter()
        params, score, _, _ = tune_and_fit(
            ds,
            name,
            splits=splits,
            fit_rows=None,
            n_trials=n_trials,
            seed=seed,
            n_jobs=n_jobs,
            storage=None,
        )
        seconds[name] = time.perf_counter() - started
        base.params[name], base.cv_scores[name] = params, score
        progress(f"[{i}/{len(models)}] {name}: cv rank IC {score:+.4f} ({seconds[name]:.0f} s)")
    oof = oof_frame(ds, base, outer)
    pred_cols = [f"pred_{m}" for m in models]
    history = walk_forward_meta(oof, pred_cols, LinearRegression(positive=True), "target")
    d, y = history["date"].to_numpy(), history["label"].to_numpy()
    rows = [
        {"model": c.removeprefix("pred_"), **ic_summary(d, history[c].to_numpy(), y)}
        for c in [*pred_cols, "ensemble"]
    ]
    spread = {}
    for name in [m for m in models if m in ARCHITECTURES] if seeds > 1 else []:
        ics = []
        for s in range(seed, seed + seeds):
            one = BaseModels(
                {name: base.params[name]}, {}, tune_end, ds.target, ds.feature_names, s, n_jobs
            )
            o = oof_frame(ds, one, outer).join(
                history.select("symbol", "date"), on=["symbol", "date"]
            )
            ics.append(
                ic_summary(
                    o["date"].to_numpy(), o[f"pred_{name}"].to_numpy(), o["label"].to_numpy()
                )["rank_ic"]
            )
        spread[name] = (float(np.mean(ics)), float(np.std(ics, ddof=1)))
        progress(
            f"{name} over {seeds} seeds: rank IC {spread[name][0]:+.4f} ± {spread[name][1]:.4f}"
        )
    table = pl.DataFrame(rows).with_columns(
        rank_ic_seed_mean=pl.col("model").replace_strict(
            {k: v[0] for k, v in spread.items()}, default=None, return_dtype=pl.Float64
        ),
        rank_ic_seed_std=pl.col("model").replace_strict(
            {k: v[1] for k, v in spread.items()}, default=None, return_dtype=pl.Float64
        ),
        tune_s=pl.col("model").replace_strict(seconds, default=None, return_dtype=pl.Float64),
    )
    return table


def shared_dataset(symbols: int, start: date, horizon: int = 5) -> tuple[Dataset, str]:
    from benchmarks.__main__ import load_universe

    prices, label = load_universe(quick=False)
    chosen = prices["symbol"].unique().sort().gather_every(max(1, 505 // symbols))[:symbols]
    prices = prices.filter(pl.col("symbol").is_in(chosen.implode()) & (pl.col("date") >= start))
    features = build_feature_matrix(prices.lazy(), EMPTY_ALT.lazy()).collect(engine=ENGINE)
    stats = statistical_features(prices, horizon=horizon, n_jobs=2)
    features = features.join(stats, on=["symbol", "date"], how="left")
    labels = forward_returns(prices.lazy(), horizon).collect()
    return assemble(features, labels), f"{label}: {len(chosen)} tickers from {start}"


def lake_dataset(lake: Path, horizon: int = 5) -> tuple[Dataset, str]:
    prices = pl.read_parquet(lake / "market_prices.parquet")
    features = pl.read_parquet(lake / "feature_matrix.parquet")
    if "stat_arima" not in features.columns:
        stats = statistical_features(prices, horizon=horizon, n_jobs=2)
        features = features.join(stats, on=["symbol", "date"], how="left")
    labels = pl.read_parquet(lake / "labels.parquet")
    return assemble(features, labels), f"lake {lake}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zoo")
    parser.add_argument("--data", choices=["shared", "lake"], default="lake")
    parser.add_argument("--lake", type=Path, default=Path(".alphaforge/lake"))
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2010, 1, 1))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--outer", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=sorted(MODEL_SPECS))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.data == "shared":
        ds, label = shared_dataset(args.symbols, args.start)
    else:
        ds, label = lake_dataset(args.lake)
    print(f"{label}: {len(ds.frame):,} rows, {len(ds.feature_names)} features", flush=True)
    table = zoo_table(
        ds,
        args.models,
        n_trials=args.trials,
        inner=args.inner,
        outer=args.outer,
        seeds=args.seeds,
        progress=lambda m: print(m, flush=True),
    )
    from assets._meta import to_markdown

    text = (
        f"# Model zoo, out-of-sample\n\n{label}: {len(ds.frame):,} rows, "
        f"{len(ds.feature_names)} features; {args.trials} Optuna trials per model, "
        f"{args.inner} inner / {args.outer} outer purged walk-forward folds; "
        f"{time.perf_counter() - started:.0f} s in all.\n\n{to_markdown(table)}\n"
    )
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"zoo_{args.data}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
