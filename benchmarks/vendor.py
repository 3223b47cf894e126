"""A real vendor download end to end: the fast profile through every asset on the shared S&P
500 set cut to 2015-2020 (OHLCV, AlphaVantage layout, through the user-data path with the
mapping of ``examples/alphavantage_csvs.yaml``), then on a copy where one symbol misses a year
in the middle of its history and another ends in a half-cent, zero-volume tail.

    python -m benchmarks.vendor [--only clean|dirty] [--out benchmarks/results/vendor_sp500.md]

Each run is ``alphaforge run`` in a fresh home, December 2020 as a backfill of daily partitions.
Judged: the run succeeds (every asset materialized), every book's performance figures are
finite or null (never an object), the gap symbol's labels never span its hole, the tail symbol
is excluded from its first half-cent day. Written to ``--out``: timings, the universe count per
date (monthly), and the excluded symbols with their reasons. Run it under the heavy lock:
``flock /tmp/heavy.lock python -m benchmarks.vendor`` (each run takes a quarter of an hour or
more on 2 cores).
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sp500-alphavantage"
START, END = date(2015, 1, 1), date(2020, 12, 31)
GAP_SYMBOL, GAP = "AAPL", (date(2017, 1, 1), date(2017, 12, 31))
TAIL_SYMBOL, TAIL_FROM = "XOM", date(2020, 7, 1)


def experiment(path: str, root: str) -> dict:
    """examples/alphavantage_csvs.yaml, pointed at ``path`` and cut to 2015-2020."""
    exp = yaml.safe_load((ROOT / "examples" / "alphavantage_csvs.yaml").read_text())
    exp["data"] |= {
        "path": path,
        "root": root,
        "start_date": START.isoformat(),
        "daily_from": "2020-12-01",
        "end_date": END.isoformat(),
    }
    return exp


def dirty_copy(folder: Path) -> None:
    """The 2015-2020 rows of every file, AAPL without 2017, XOM at $0.005 with no volume from
    July 2020 (a delisted name's tail as vendors leave it)."""
    folder.mkdir()
    for path in sorted(SHARED.glob("*.csv.gz")):
        try:
            frame = pl.read_csv(path, infer_schema=False)
        except pl.exceptions.PolarsError:
            (folder / path.name).write_bytes(path.read_bytes())  # the vendor error payload
            continue
        if "timestamp" not in frame.columns:
            (folder / path.name).write_bytes(path.read_bytes())
            continue
        day = pl.col("timestamp").str.to_date(strict=False)
        frame = frame.filter(day.is_between(START, END))
        symbol = path.name.removesuffix(".csv.gz")
        if symbol == GAP_SYMBOL:
            frame = frame.filter(~day.is_between(*GAP))
        if symbol == TAIL_SYMBOL:
            tail = day >= TAIL_FROM
            frame = frame.with_columns(
                [
                    pl.when(tail).then(pl.lit("0.005")).otherwise(pl.col(c)).alias(c)
                    for c in ("open", "high", "low", "close", "adjusted_close")
                ]
                + [pl.when(tail).then(pl.lit("0")).otherwise(pl.col("volume")).alias("volume")]
                + [
                    pl.when(tail)
                    .then(pl.lit("0.0"))
                    .otherwise("dividend_amount")
                    .alias("dividend_amount")
                ]
                + [
                    pl.when(tail)
                    .then(pl.lit("1.0"))
                    .otherwise("split_coefficient")
                    .alias("split_coefficient")
                ]
            )
        (folder / path.name).write_bytes(gzip.compress(frame.write_csv().encode()))


def run(label: str, exp: dict, workdir: Path) -> dict:
    home = workdir / f"home-{label}"
    config = workdir / f"{label}.yaml"
    config.write_text(yaml.safe_dump(exp, sort_keys=False))
    env = os.environ | {"ALPHAFORGE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("ALPHAFORGE_PROFILE", None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    (workdir / f"{label}.log").write_text(done.stdout + done.stderr)
    out = {"label": label, "seconds": seconds, "returncode": done.returncode}
    if done.returncode != 0:
        out["tail"] = (done.stdout + done.stderr)[-3000:]
        return out
    lake = home / "lake"
    out |= judge(lake)
    return out


def judge(lake: Path) -> dict:
    universe = pl.read_parquet(lake / "universe.parquet")
    table = pl.read_parquet(lake / "strategy_table.parquet")
    figures = [c for c in table.columns if c != "strategy"]
    bad_types = [c for c in figures if not table.schema[c].is_numeric()]
    non_finite = [
        c
        for c in figures
        if table.schema[c].is_float() and not table[c].drop_nulls().is_finite().all()
    ]
    labels = pl.read_parquet(lake / "labels.parquet")
    gap_labels = labels.filter(
        (pl.col("symbol") == GAP_SYMBOL)
        & (pl.col("date") < GAP[0])
        & (pl.col("label_end") > GAP[1])
    )
    tail = universe.filter((pl.col("symbol") == TAIL_SYMBOL) & (pl.col("date") >= TAIL_FROM))
    counts = (
        universe.group_by("date")
        .agg(eligible=pl.col("eligible").sum(), listed=pl.len())
        .sort("date")
    )
    from models.data.universe import excluded_symbols

    excluded = excluded_symbols(universe)
    return {
        "assets": sorted(p.stem for p in lake.iterdir() if not p.name.startswith(".")),
        "strategies": table.height,
        "object_figures": bad_types,
        "non_finite_figures": non_finite,
        "labels_across_gap": gap_labels.height,
        "tail_rows": tail.height,
        "tail_excluded": int((~tail["eligible"]).sum()),
        "monthly": counts.group_by_dynamic("date", every="1mo")
        .agg(pl.col("listed").mean().round(1), pl.col("eligible").mean().round(1))
        .to_dicts(),
        "excluded": excluded.to_dicts(),
        "symbols": universe["symbol"].n_unique(),
        "strategy_table": table.select(
            "strategy", "annual_return", "sharpe", "max_drawdown"
        ).to_dicts(),
    }


def markdown(results: list[dict]) -> str:
    lines = ["# The shared S&P 500 set, 2015-2020, fast profile, through the user-data path", ""]
    for r in results:
        lines += [f"## {r['label']}", ""]
        lines.append(
            f"- run: {'succeeded' if r['returncode'] == 0 else 'FAILED'} in {r['seconds']:.0f} s"
        )
        if r["returncode"] != 0:
            lines += ["", "```", r.get("tail", ""), "```", ""]
            continue
        lines.append(
            f"- {len(r['assets'])} assets materialized; {r['symbols']} symbols; "
            f"{r['strategies']} books, figures of object type: {r['object_figures'] or 'none'}, "
            f"non-finite: {r['non_finite_figures'] or 'none'}"
        )
        if r["label"] == "dirty":
            lines.append(
                f"- {GAP_SYMBOL} without {GAP[0].year}: {r['labels_across_gap']} labels span the "
                f"hole; {TAIL_SYMBOL}'s half-cent tail: {r['tail_excluded']} of {r['tail_rows']} "
                "rows excluded"
            )
        lines += ["", "Universe per month (mean symbols per date):", ""]
        lines += ["| month | in the panel | investable |", "|---|---|---|"]
        lines += [f"| {m['date']:%Y-%m} | {m['listed']} | {m['eligible']} |" for m in r["monthly"]]
        lines += ["", f"Excluded symbols ({len(r['excluded'])}), beyond their first days:", ""]
        lines += ["| symbol | days out | share | rules | first reason |", "|---|---|---|---|---|"]
        lines += [
            f"| {e['symbol']} | {e['excluded_days']} | {e['share']:.1%} | {e['rules']} | "
            f"{(e['example'] or '')[:90]} |"
            for e in r["excluded"]
        ]
        lines += ["", "| book | annual return | Sharpe | max drawdown |", "|---|---|---|---|"]
        lines += [
            f"| {b['strategy']} | {_num(b['annual_return'])} | {_num(b['sharpe'])} | "
            f"{_num(b['max_drawdown'])} |"
            for b in r["strategy_table"]
        ]
        lines.append("")
    return "\n".join(lines)


def _num(value) -> str:
    return "null" if value is None or not np.isfinite(value) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vendor")
    parser.add_argument("--only", choices=["clean", "dirty"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vendor_sp500.md"))
    parser.add_argument("--keep", help="folder to keep the homes and logs in")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"skipped: the shared S&P 500 set is not at {SHARED}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = []
        if args.only in (None, "clean"):
            exp = experiment(str(SHARED / "*.csv.gz"), str(SHARED))
            results.append(run("clean", exp, workdir))
        if args.only in (None, "dirty"):
            copy = workdir / "dirty-prices"
            dirty_copy(copy)
            results.append(run("dirty", experiment(str(copy / "*.csv.gz"), str(copy)), workdir))
    Path(args.out).write_text(markdown(results))
    for r in results:
        print(
            json.dumps(
                {k: v for k, v in r.items() if k not in ("monthly", "excluded")}, default=str
            )
        )
    ok = all(
        r["returncode"] == 0 and not r["object_figures"] and not r["non_finite_figures"]
        for r in results
    ) and all(
        r["labels_across_gap"] == 0 and r["tail_excluded"] == r["tail_rows"]
        for r in results
        if r["label"] == "dirty" and r["returncode"] == 0
    )
    print(f"  {'ok  ' if ok else 'MISS'} fast profile end to end on the shared set (clean, dirty)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
