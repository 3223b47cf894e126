"""Ingest benchmark: the user-directory path with only a column mapping, in its own process so
its peak memory is its own.

    python -m benchmarks.ingest [--quick]

Measures, on the shared S&P 500 set (AlphaVantage per-ticker CSV.gz) or, without it, the
bundled 20 stocks written out per ticker: the full history through source + contract +
corporate-action adjustment (rows/s, peak RSS) against a bare ``polars.read_csv`` of the same
files in the same run; then a nightly one-day load two ways: from the per-ticker history files
(every file is still decompressed) and from a daily delivery (``prices_{date}.csv``, one file).
Targets: the whole set in <= 20 s and <= 4 GB; the nightly day <= 10 % of the full run.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

from data_contracts import check_prices
from models.data.corporate_actions import adjust
from pipelines.sources import BundledPriceSource, FilePriceSource

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sp500-alphavantage"
ALPHAVANTAGE = {"date": "timestamp", "split": "split_coefficient", "dividend": "dividend_amount"}


def _bundled_folder(folder: Path) -> tuple[str, dict]:
    prices = BundledPriceSource().load_prices().frame
    for (symbol,), part in prices.group_by("symbol"):
        part.select("date", "close").write_csv(folder / f"{symbol}.csv")
    return str(folder / "*.csv"), {}


def _ingest(source: FilePriceSource, start: date | None = None, end: date | None = None):
    checked = check_prices(source.load_prices(start, end), date.today(), allow_empty=True)
    clean = checked.clean.drop("source_file", "source_row").sort("symbol", "date")
    return adjust(clean) if "split" in clean.columns else clean


def peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over from
    the parent across fork and exec, so a child started by a 9 GB benchmark reported 9 GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if SHARED.is_dir() and not quick:
            pattern, mapping, label = str(SHARED / "*.csv.gz"), ALPHAVANTAGE, "shared S&P 500 set"
        else:
            (tmp / "tickers").mkdir()
            (pattern, mapping), label = _bundled_folder(tmp / "tickers"), "bundled 20 stocks"
        source = FilePriceSource(path=pattern, columns=mapping, symbol_from_filename=True)
        t_full, panel = _timed(lambda: _ingest(source))
        peak_mib = peak_rss_mib()
        t_bare, _ = _timed(lambda: [pl.read_csv(f) for f in source.files()])
        last = panel["date"].max()
        t_day_files, day = _timed(lambda: _ingest(source, last, last))
        # a daily delivery: the last 20 trading days as one file per day, ticker in a column
        (tmp / "daily").mkdir()
        recent = panel.filter(pl.col("date") > panel["date"].unique().sort()[-21])
        for (d,), part in recent.group_by("date"):
            part.write_csv(tmp / "daily" / f"prices_{d}.csv")
        delivery = FilePriceSource(path=str(tmp / "daily" / "prices_{date}.csv"))
        t_day_delivery, day2 = _timed(lambda: _ingest(delivery, last, last))
    assert len(day) == len(day2) == panel.filter(pl.col("date") == last).height
    return {
        "label": label,
        "rows": len(panel),
        "symbols": panel["symbol"].n_unique(),
        "full_s": t_full,
        "bare_read_s": t_bare,
        "rows_per_s": len(panel) / t_full,
        "peak_mib": peak_mib,
        "day_rows": len(day),
        "day_from_history_files_s": t_day_files,
        "day_from_delivery_s": t_day_delivery,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
