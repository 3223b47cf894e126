"""VaR backtest table on the shared S&P 500 set: every method, rolling one-day-ahead forecasts.

    python -m benchmarks.var_sp500 [--window 500] [--refit-every 20] [--stocks 10]

Books: an equal-weight portfolio of every stock with a price that day (rebalanced daily, total
returns from ``adjusted_close``), and the first ``--stocks`` single stocks alphabetically. Each
day's VaR comes from the ``--window`` returns before it only. Writes
``benchmarks/results/var_sp500.md``. The set is today's S&P 500 members: survivorship bias.
"""

import argparse
import sys
import time
from pathlib import Path

import polars as pl

from benchmarks.__main__ import SHARED, read_shared
from models.risk.var import METHODS
from models.risk.var_backtest import backtest_var, coverage_table

RESULTS = Path(__file__).parent / "results"
COLUMNS = ["book", "method", "level", "days", "exceptions", "expected", "kupiec_p",
           "independence_p", "conditional_p", "last_250_exceptions", "zone"]  # fmt: skip


def load_returns() -> pl.DataFrame:
    """Total daily returns ``[symbol, date, ret]`` from ``adjusted_close``."""
    prices = read_shared(["adjusted_close"], "adjusted_close").rename({"adjusted_close": "close"})
    return prices.with_columns(ret=pl.col("close").pct_change().over("symbol")).drop_nulls("ret")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--refit-every", type=int, default=20)
    parser.add_argument("--stocks", type=int, default=10)
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"needs the shared S&P 500 set at {SHARED}", file=sys.stderr)
        return 2
    returns = load_returns()
    books = {"equal weight (all)": returns.group_by("date").agg(pl.col("ret").mean()).sort("date")}
    for symbol in returns["symbol"].unique().sort().head(args.stocks):
        books[symbol] = returns.filter(pl.col("symbol") == symbol).select("date", "ret")
    tables, started = [], time.perf_counter()
    for i, (book, frame) in enumerate(books.items(), 1):
        t0 = time.perf_counter()
        forecasts = backtest_var(
            frame["date"].to_numpy(),
            frame["ret"].to_numpy(),
            METHODS,
            (0.95, 0.99),
            args.window,
            args.refit_every,
        )
        tables.append(coverage_table(forecasts).with_columns(book=pl.lit(book)))
        print(
            f"[{i}/{len(books)}] {book}: {frame.height} days, {frame['date'][0]} to "
            f"{frame['date'][-1]}, {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    table = pl.concat(tables).select(COLUMNS)
    main_book = table.filter(pl.col("book") == "equal weight (all)")
    singles = table.filter(pl.col("book") != "equal weight (all)")
    summary = (
        singles.group_by("method", "level", maintain_order=True)
        .agg(
            pl.len().alias("stocks"),
            (pl.col("exceptions") / pl.col("expected")).mean().alias("mean_exceptions_ratio"),
            (pl.col("kupiec_p") < 0.05).sum().alias("kupiec_rejected"),
            (pl.col("conditional_p") < 0.05).sum().alias("cc_rejected"),
            (pl.col("zone") == "red").sum().alias("red_now"),
        )
        .sort("level", "method")
    )
    from assets._meta import to_markdown

    text = "\n\n".join(
        [
            "# VaR backtest on the shared S&P 500 set",
            f"Rolling one-day-ahead forecasts, window {args.window} days, ML refits every "
            f"{args.refit_every} days; {time.perf_counter() - started:.0f} s in all. "
            "Today's S&P 500 members: survivorship bias.",
            "## Equal-weight portfolio of every stock (daily rebalanced)",
            to_markdown(main_book.drop("book").sort("level", "method"), ".3f"),
            f"## {len(books) - 1} single stocks: tests rejected at 5 %",
            to_markdown(summary, ".3f"),
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "var_sp500.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
