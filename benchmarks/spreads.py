"""The spread table of issue 21: each spread estimator's median half-spread on the universe of a
finished run, and what each does to every book's net Sharpe.

    ALPHAFORGE_HOME=/tmp/sp500 python -m benchmarks.spreads --config benchmarks/sp500_full.yaml

Reads the run's lake (``market_prices``, ``portfolio_weights``, ``seed_strategies``) and
backtests every book again under each spread source with the run's other costs (commission,
impact, borrowing, fills) unchanged; writes ``benchmarks/results/spreads_sp500.md``.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from assets._config import BacktestConfig, build_cost_model
from models.backtest.costs import SPREAD_ESTIMATORS
from models.backtest.engine import performance
from pipelines.experiment import resolve

LOBSTER = Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster-2012-06-21"


def quoted_half_spreads() -> dict[str, float]:
    """Time-weighted quoted half-spread (bp) of each LOBSTER sample's NASDAQ book over its day
    (AAPL and GOOG, 2012-06-21): what a real order book says these names cost to cross."""
    out = {}
    for book in sorted(LOBSTER.glob("*_orderbook_1.csv.gz")):
        ticker = book.name.split("_")[0]
        times = pl.read_csv(
            str(book).replace("orderbook", "message"), has_header=False, columns=[0]
        )[:, 0].to_numpy()
        quotes = pl.read_csv(book, has_header=False, columns=[0, 2]).to_numpy() / 1e4
        held = np.diff(np.append(times, 57600.0))  # each quote lasts until the next message
        rel = (quotes[:, 0] - quotes[:, 1]) / quotes.mean(axis=1)
        out[ticker] = float((rel * held).sum() / held.sum() / 2 * 1e4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spreads")
    parser.add_argument("--config", required=True, help="the run's experiment file")
    parser.add_argument("--out", default="benchmarks/results/spreads_sp500.md")
    args = parser.parse_args(argv)
    lake = Path(os.environ["ALPHAFORGE_HOME"]) / "lake"
    prices = pl.read_parquet(lake / "market_prices.parquet")
    books = pl.concat(
        [
            pl.read_parquet(lake / "portfolio_weights.parquet"),
            pl.read_parquet(lake / "seed_strategies.parquet"),
        ]
    ).filter(pl.col("kind") == "oos")
    ops = resolve(args.config, environ={}).run_config({"cost_model"})["ops"]
    base = BacktestConfig(**ops["cost_model"]["config"])
    start = books["date"].min()
    rows, sharpes = [], {}
    for source in (*SPREAD_ESTIMATORS, "none"):
        began = time.perf_counter()
        config = base.model_copy(update={"costs": source})
        model = build_cost_model(config, prices)
        if model.spreads is not None:
            oos = model.spreads.filter(pl.col("date") >= start)
            half = 0.5 * oos["spread_forecast"]
            charged = half.clip(config.spread_floor_bps / 1e4, config.spread_cap_bps / 1e4)
            rows.append(
                {
                    "estimator": source,
                    "median half-spread (bp)": float(half.median()) * 1e4,
                    "share below zero": float((half < 0).mean()),
                    "median charged (bp)": float(charged.median()) * 1e4,
                    "mean charged (bp)": float(charged.mean()) * 1e4,
                }
            )
        for (name,), w in books.group_by("strategy", maintain_order=True):
            daily = model.run(w.drop("strategy", "kind"))
            perf = performance(daily["net"].to_numpy(), daily["turnover"].to_numpy())
            sharpes.setdefault(name, {})[source] = perf["sharpe"]
        print(f"{source}: {time.perf_counter() - began:.0f} s", file=sys.stderr)
    spreads = pl.DataFrame(rows)
    lobster = quoted_half_spreads() if LOBSTER.is_dir() else {}
    # each estimator on the LOBSTER day for the same names (GOOG trades as GOOGL in this set)
    day = pl.date(2012, 6, 21)
    names = {"AAPL": "AAPL", "GOOG": "GOOGL"}
    check = []
    for source in SPREAD_ESTIMATORS:
        from models.backtest.costs import spread_estimates

        usable = prices.filter(pl.col("symbol").is_in(list(names.values())))
        if not usable.height:
            break
        est = spread_estimates(usable.drop_nulls(["open", "high", "low"]), estimator=source)
        for ticker, symbol in names.items():
            hit = est.filter((pl.col("symbol") == symbol) & (pl.col("date") == day))
            if ticker in lobster and hit.height:
                check.append(
                    {
                        "name": ticker,
                        "estimator": source,
                        "estimated half-spread (bp)": float(hit["spread"][0]) * 1e4 / 2,
                        "LOBSTER quoted half-spread (bp)": lobster[ticker],
                    }
                )
    table = pl.DataFrame([{"strategy": k, **v} for k, v in sharpes.items()])
    text = [
        f"Spread estimators on {prices['symbol'].n_unique()} names, forecasts from {start} on",
        "",
        _markdown(spreads, ".2f"),
        "",
        "Against a real order book (LOBSTER, NASDAQ, 2012-06-21; time-weighted quoted half-spread)",
        "",
        _markdown(pl.DataFrame(check), ".2f") if check else "(no LOBSTER files)",
        "",
        "Net Sharpe of every book under each spread source (other costs as in the run)",
        "",
        _markdown(table, ".2f"),
    ]
    Path(args.out).write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


def _markdown(frame: pl.DataFrame, fmt: str) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| "
        + " | ".join(
            format(v, fmt) if isinstance(v, float) and np.isfinite(v) else str(v) for v in row
        )
        + " |"
        for row in frame.iter_rows()
    ]
    return "\n".join([head, rule, *body])


if __name__ == "__main__":
    sys.exit(main())
