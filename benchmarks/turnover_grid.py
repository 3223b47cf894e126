"""How much of the ML forecasts' gross edge each turnover control keeps, on a finished run.

    ALPHAFORGE_HOME=/tmp/sp500 python -m benchmarks.turnover_grid --config benchmarks/sp500_full.yaml

Reads the run's lake (``signals``, ``market_prices``), builds the TopkDropout and hold-buffer
books over a grid of book size, names replaced / buffer, score smoothing and rebalance
interval, backtests each under the run's cost model and prints them beside equal weight, with
the deflated Sharpe ratio of the best over *all* the configurations tried here and in the run
(every cell is a trial: choosing the best cell on the same out-of-sample period is selection,
and the DSR says how much of its Sharpe survives it). Writes
``benchmarks/results/turnover_grid.md``.
"""

import argparse
import itertools
import os
import sys
from pathlib import Path

import polars as pl

from assets._config import BacktestConfig, build_cost_model
from models.backtest.engine import performance
from models.backtest.overfitting import deflated_sharpe, sharpe
from models.backtest.strategy_table import excess_over
from models.portfolio import (
    equal_weights,
    hold_buffer_weights,
    rebalance_dates,
    smooth_scores,
    topk_dropout_weights,
)
from pipelines.experiment import resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.turnover_grid")
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default="benchmarks/results/turnover_grid.md")
    parser.add_argument(
        "--run-trials", type=int, default=None, help="trials the run counted (default: its table's)"
    )
    args = parser.parse_args(argv)
    lake = Path(os.environ["ALPHAFORGE_HOME"]) / "lake"
    prices = pl.read_parquet(lake / "market_prices.parquet")
    signals = pl.read_parquet(lake / "signals.parquet").filter(pl.col("kind") == "oos")
    ops = resolve(args.config, environ={}).run_config({"cost_model"})["ops"]
    config = BacktestConfig(**ops["cost_model"]["config"])
    model = build_cost_model(
        config, prices.filter(pl.col("symbol").is_in(signals["symbol"].unique()))
    )
    days = signals["date"]
    bench = model.run(equal_weights(signals.select("date", "symbol"), rebalance_dates(days, 5)))
    rows, nets = [], {}
    grid = itertools.product(("topk_dropout", "ml_hold_buffer"), (20, 50), (0, 5, 20), (5, 10))
    for book, k, halflife, every in grid:
        scores = smooth_scores(signals, halflife)
        dates = rebalance_dates(days, every)
        for knob in (2, 5) if book == "topk_dropout" else (k // 2, k):
            build = topk_dropout_weights if book == "topk_dropout" else hold_buffer_weights
            daily = model.run(build(scores, dates, k, knob))
            both = daily.join(bench, on="date", suffix="_ew")
            perf = performance(daily["net"].to_numpy(), daily["turnover"].to_numpy())
            gross = performance(daily["gross"].to_numpy())
            excess, ir = excess_over(both["net"].to_numpy(), both["net_ew"].to_numpy())
            name = f"{book}[k={k},{'n' if book == 'topk_dropout' else 'b'}={knob},h={halflife},every={every}]"
            nets[name] = daily.select("date", "net")
            rows.append(
                {
                    "book": name,
                    "gross": gross["annual_return"],
                    "net": perf["annual_return"],
                    "net_sharpe": perf["sharpe"],
                    "turnover": perf["annual_turnover"],
                    "excess": excess,
                    "ir": ir,
                }
            )
            print(rows[-1], file=sys.stderr)
    table = pl.DataFrame(rows).sort("ir", descending=True)
    wide = (
        pl.concat([v.with_columns(book=pl.lit(k)) for k, v in nets.items()])
        .pivot(on="book", index="date", values="net")
        .drop_nulls()
    )
    matrix = wide.drop("date").to_numpy()
    best = table["book"][0]
    run_trials = args.run_trials
    if run_trials is None:
        run_trials = int(pl.read_parquet(lake / "strategy_table.parquet")["n_trials"][0])
    n_trials = matrix.shape[1] + run_trials
    dsr = deflated_sharpe(wide[best].to_numpy(), sharpe(matrix), n_trials)["dsr"]
    ew = performance(bench["net"].to_numpy(), bench["turnover"].to_numpy())
    text = [
        f"{len(rows)} turnover-aware configurations on the run's out-of-sample forecasts "
        f"({days.min()} to {days.max()}); equal weight: net {ew['annual_return']:.1%}, "
        f"Sharpe {ew['sharpe']:.2f}. Best by IR: {best}, its DSR over {n_trials} trials "
        f"{dsr:.2f}.",
        "",
        "| book | gross | net | net Sharpe | turnover | excess | IR |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['book']} | {r['gross']:.1%} | {r['net']:.1%} | {r['net_sharpe']:.2f} | "
            f"{r['turnover']:.1f}x | {r['excess']:+.1%} | {r['ir']:.2f} |"
            for r in table.iter_rows(named=True)
        ),
    ]
    Path(args.out).write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
