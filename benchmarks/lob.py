"""Order-book benchmark (``make bench`` runs it in its own process): the LOB ingest against a
bare ``polars.read_csv`` of the same files, the batch features, and the tick-by-tick scorer on
the GOOG 10-level day with every event scored.

    python -m benchmarks.lob [--quick]

Needs the shared LOBSTER files (``../shared/data/lobster-2012-06-21``); says so and does nothing
without them. The scorer's model is a LightGBM fitted here on the first 60 % of the day's
trading time (the horizon the pipeline registers, k50), wrapped as ``alphaforge-lob`` is, so the
replay runs exactly what ``alphaforge stream --lob`` runs after loading the champion. Targets
on 2 cores: the day's 147,916 events in <= 10 s and p99 <= 1 ms per event for the feature
update and the tree score; the replay's probabilities equal the batch ones.
"""

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster-2012-06-21"


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_ingest(quick: bool) -> list[dict]:
    """Every shared pair through the source, the contract and the typing, against a bare
    ``polars.read_csv`` of its two files."""
    from data_contracts.lob import check_lob
    from models.microstructure.reader import book_frame, events_frame
    from pipelines.lob import FileLobSource

    source = FileLobSource(path=str(SHARED))
    pairs = source.all_pairs()
    if quick:
        pairs = [p for p in pairs if p.levels == 1][:1]
    check_lob(source.load(pairs[0]))  # the GX context, once per process (~2 s), off the clock
    rows = []
    for pair in pairs:

        def ingest(pair=pair):
            checked = check_lob(source.load(pair))
            return (
                events_frame(checked.messages, pair.day),
                book_frame(checked.book, pair.levels),
                checked,
            )

        t_ours, (events, book, checked) = _timed(ingest)
        t_bare, _ = _timed(
            lambda pair=pair: [pl.read_csv(f, has_header=False) for f in (pair.message, pair.book)]
        )
        rows.append(
            {
                "pair": f"{pair.ticker} {pair.levels}",
                "rows_in": checked.rows,
                "events": len(events),
                "book_rows": len(book),
                "ingest_s": t_ours,
                "bare_read_s": t_bare,
                "events_per_s": len(events) / t_ours,
                "bare_rows_per_s": checked.rows / t_bare,
            }
        )
    return rows


def bench_replay(quick: bool) -> dict:
    """Features in batch, a LightGBM on the first 60 % of the day, then the replay."""
    from models.microstructure.features import FeatureParams, features_frame, model_features
    from models.microstructure.labels import labels_frame, parse_horizons
    from models.microstructure.models import (
        LobModel,
        assemble,
        classes,
        dead_zone,
        fit_lightgbm,
        time_split,
    )
    from pipelines.lob import FileLobSource, latency_summary, load_day, replay_day

    source = FileLobSource(path=str(SHARED))
    pair = next(p for p in source.all_pairs() if p.ticker == "GOOG" and p.levels == 10)
    events, book = load_day(source, pair, 100)
    if quick:
        events, book = events.head(10_000), book.head(10_000)
    params = FeatureParams()
    t_features, feats = _timed(lambda: features_frame(events, book, params))
    key = pl.lit("GOOG").alias("lob_partition")
    labels = labels_frame(events, book, parse_horizons(["k50"], {}))
    names = model_features(params)
    data = assemble(feats.with_columns(key), labels.with_columns(key), None, names, ["k50"], 10)
    labelled = np.isfinite(data.returns["k50"])
    split = time_split(data.ts_ns, data.day, data.ends_ns["k50"], labelled, 0.6, 0.2)
    zone = dead_zone(data.returns["k50"][split.train])
    y = classes(np.nan_to_num(data.returns["k50"]), zone)
    t_fit, tree = _timed(
        lambda: fit_lightgbm(
            data.X[split.train], y[split.train], data.X[split.valid], y[split.valid], n_jobs=2
        )
    )
    model = LobModel(tree, names, "k50", zone, asdict(params), "lightgbm", "GOOG", 10)
    out = replay_day(events, book, model)
    summary = latency_summary(out["latency_ns"], out["wall_s"])
    batch = model.predict_proba(feats.select(names).cast(pl.Float64).fill_null(np.nan).to_numpy())
    return {
        **summary,
        "features_batch_s": t_features,
        "fit_s": t_fit,
        "trees": int(tree.booster_.num_trees()),
        "max_gap_to_batch": float(np.abs(out["probabilities"] - batch).max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lob")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(json.dumps({"skipped": f"the shared LOBSTER files are absent ({SHARED})"}))
        return 0
    ingest = bench_ingest(args.quick)
    replay = bench_replay(args.quick)
    print(json.dumps({"ingest": ingest, "replay": replay}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
