"""Contract benchmark: the price contract on clean and on dirty data, in its own process.

    python -m benchmarks.contract [--quick]

On the shared S&P 500 set (AlphaVantage per-ticker CSV.gz, read once through the user-data
source) or, without it, the bundled 20 stocks written out per ticker: ``check_prices`` on the
rows as they are, then on the same rows with 75 % made OHLC-inconsistent (the low lifted above
the close, as an adjusted close beside raw high/low reads), once with the quarantine limit
lifted (every bad row named and set aside) and once with the default limit (the run is
blocked; the message must name the dominant rule and its likely cause). Target: dirty / clean
<= 2 (a COMPLETE GX result once took ~400 s on 437 k bad rows against ~12 s clean).
"""

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from data_contracts import ContractViolation, RawPrices, check_prices
from pipelines.sources import BundledPriceSource, FilePriceSource

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sp500-alphavantage"
ALPHAVANTAGE = {"date": "timestamp", "split": "split_coefficient", "dividend": "dividend_amount"}
RUN = date.today()


def _raw(quick: bool, tmp: Path) -> tuple[RawPrices, str]:
    if SHARED.is_dir():
        files = sorted(SHARED.glob("*.csv.gz"))[: 60 if quick else None]
        folder = tmp / "links"
        folder.mkdir()
        for f in files:
            (folder / f.name).symlink_to(f)
        source = FilePriceSource(
            path=str(folder / "*.csv.gz"), columns=ALPHAVANTAGE, symbol_from_filename=True
        )
        return source.load_prices(), f"shared S&P 500 set, {len(files)} files"
    prices = BundledPriceSource().load_prices().frame
    # the bundled closes with a made-up range around them, so the OHLC rules have work to do
    frame = prices.select(
        "symbol",
        pl.col("date").cast(pl.String),
        open=pl.col("close"),
        high=pl.col("close") * 1.01,
        low=pl.col("close") * 0.99,
        close="close",
        source_file="source_file",
        source_row="source_row",
    ).with_columns(pl.exclude("symbol", "date", "source_file", "source_row").cast(pl.String))
    return RawPrices(frame), "bundled 20 stocks (synthetic range)"


def _dirty(raw: RawPrices, share: float = 0.75, seed: int = 0) -> RawPrices:
    frame = raw.frame
    bad = np.random.default_rng(seed).random(len(frame)) < share
    lifted = pl.col("close").cast(pl.Float64, strict=False) * 1.05
    return RawPrices(
        frame.with_columns(
            low=pl.when(pl.Series(bad)).then(lifted.cast(pl.String)).otherwise(pl.col("low"))
        ),
        raw.skipped,
        raw.mapping,
        raw.notes,
    )


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        raw, label = _raw(quick, Path(tmp))
        check_prices(raw, RUN)  # warm: the GX context, imports
        t_clean, clean = _timed(lambda: check_prices(raw, RUN))
        dirty = _dirty(raw)
        t_dirty, dirt = _timed(lambda: check_prices(dirty, RUN, max_quarantine_share=1.0))
        start = time.perf_counter()
        try:
            check_prices(dirty, RUN)
            message = "(not blocked)"
        except ContractViolation as err:
            message = str(err).splitlines()[-1].strip()
        t_blocked = time.perf_counter() - start
    return {
        "label": label,
        "rows": clean.rows_in,
        "clean_s": t_clean,
        "clean_quarantined": int(clean.quarantine["source_row"].is_not_null().sum()),
        "dirty_s": t_dirty,
        "dirty_quarantined": int(dirt.quarantine["source_row"].is_not_null().sum()),
        "blocked_s": t_blocked,
        "blocked_message": message,
        "ratio": t_dirty / t_clean,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.contract")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    r = run(args.quick)
    print(
        f"contract on {r['label']}: {r['rows']:,} rows clean {r['clean_s']:.1f} s "
        f"({r['clean_quarantined']:,} quarantined); 75 % inconsistent {r['dirty_s']:.1f} s "
        f"({r['dirty_quarantined']:,} quarantined), ratio {r['ratio']:.2f}; blocked at the "
        f"default limit in {r['blocked_s']:.1f} s: {r['blocked_message']}"
    )
    print(json.dumps(r))
    ok = r["ratio"] <= 2
    if not args.quick:
        print(f"  {'ok  ' if ok else 'MISS'} contract dirty / clean <= 2")
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
