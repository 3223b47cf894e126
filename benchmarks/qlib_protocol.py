"""Forecasts on the peer's protocol: every model and variant scored as a Qlib 0.9.7 benchmark is.

    python -m benchmarks.qlib_protocol [--config benchmarks/qlib_protocol.yaml] [--every 5]
                                       [--quick] [--out FILE.md]

The experiment file gives the data (the shared S&P 500 set), the feature set (Alpha158) and our
configured label; the protocol's dates are Qlib's US benchmark split (``models.learning.protocol.Periods``:
train to 2014-12-31, valid 2015-2016, test 2017-01-01 to 2021-04-20). ``models.learning.protocol.search``
tries the variants below, chooses everything on the valid block, and only then scores every
trial and the ensemble once on the test period, against Qlib's one-day label (close t+1 -> t+2)
and our configured label, with IC, Rank IC, ICIR, the Newey-West t and the IC decay over 1-20
days. The model card goes to stdout, to ``--out`` and to MLflow (ALPHAFORGE_HOME's store); time
and peak memory are printed per stage.

``--every 5`` keeps every fifth ticker (alphabetically, 101 names): with the default three
validation origins (``--folds 3``) 82 minutes and 5.3 GiB on the 2-core machine, 64 of them
DoubleEnsemble; with ``--folds 1`` (Qlib's one valid block) 27 minutes. Without ``--every``
all 504 names.
"""

import argparse
import json
import re
import resource
import sys
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from data_contracts import check_prices
from models.backtest.overfitting import deflated_sharpe, sharpe
from models.data.corporate_actions import adjust
from models.features import ENGINE, build_feature_matrix, feature_columns
from models.features.alternative import empty_alt
from models.learning.labels import excess_returns, forward_returns
from models.learning.metrics import daily_ic
from models.learning.protocol import (
    QLIB_LABEL,
    Periods,
    ProtocolData,
    Variant,
    centred_rank,
    holdout_scores,
    ic_decay,
    next_close_returns,
    replay,
    rows_for,
    search,
)
from pipelines.experiment import resolve
from pipelines.sources import FilePriceSource, read_sectors

CONFIG = Path(__file__).with_name("qlib_protocol.yaml")
DECAY = tuple(range(1, 21))

# Qlib's benchmark settings (examples/benchmarks/*/workflow_config_*_Alpha158.yaml), in the
# scikit-learn wrappers' names; early stopping on the valid block as Qlib's fit does
QLIB_LGB = {
    "n_estimators": 1000,
    "learning_rate": 0.2,
    "num_leaves": 210,
    "max_depth": 8,
    "colsample_bytree": 0.8879,
    "reg_alpha": 205.6999,
    "reg_lambda": 580.9768,
}  # Qlib's subsample 0.8789 has no effect there (no bagging_freq): left out
QLIB_XGB = {
    "n_estimators": 1000,
    "learning_rate": 0.0421,
    "max_depth": 8,
    "colsample_bytree": 0.8879,
    "subsample": 0.8789,
}
QLIB_DE = {"num_models": 6, "epochs": 136, "decay": 0.5, "fs_max_rows": 100_000}


def variants(quick: bool) -> tuple[Variant, dict, list[Variant]]:
    """The base, its one-at-a-time changes and the other families (every one a trial)."""
    lgb = dict(QLIB_LGB, n_estimators=200) if quick else QLIB_LGB
    base = Variant("lightgbm", "lightgbm", lgb, early_stopping=50)
    options = {
        "label": ["qlib_5", "ours"],  # the horizon against a weekly rebalance; our label
        "target": ["sector_rank", "zscore"],
        "features": ["rank", "both"],
        "weights": ["recency", "liquidity"],
        "window_years": [5.0],
    }
    families = [
        Variant("xgboost", "xgboost", QLIB_XGB, early_stopping=50),
        Variant(
            "double_ensemble",
            "double_ensemble",
            dict(QLIB_DE, epochs=20, num_models=2) if quick else QLIB_DE,
        ),
        Variant("ridge_ranked", "ridge", {"alpha": 1000.0}, features="rank", family="linear"),
        Variant(
            "mlp_ranked",
            "mlp",
            {"hidden": 64, "layers": 2, "dropout": 0.1, "lr": 1e-3, "weight_decay": 1e-4}
            | {"epochs": 1 if quick else 4, "batch_size": 4096},
            features="rank",
        ),
        Variant(
            "mlp_alpha360",
            "mlp",
            {"hidden": 64, "layers": 2, "dropout": 0.1, "lr": 1e-3, "weight_decay": 1e-4}
            | {"epochs": 4, "batch_size": 4096},
            features="alpha360",
            family="mlp",
        ),
        Variant("lightgbm_5_seeds", "lightgbm", lgb, early_stopping=50, seeds=5),
        Variant(
            "lightgbm_optuna",
            "lightgbm",
            tune_trials=2 if quick else 12,
            family="lightgbm",
        ),
    ]
    if quick:
        families = [f for f in families if f.model != "xgboost" and f.features != "alpha360"]
    return base, options, families


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load(config: Path, every: int | None, quick: bool, windows: bool = True):
    """Prices (split- and dividend-adjusted as the pipeline does), features, labels, sectors."""
    exp = resolve(config, environ={}).experiment
    data = exp.data
    source = FilePriceSource(
        path=data.path,
        columns=dict(data.columns),
        symbol_from_filename=data.symbol_from_filename,
        root=data.root,
    )
    # the pipeline's own ingest: the contract (typed, bad rows quarantined), then the adjustment
    checked = check_prices(
        source.load_prices(data.start_date, data.end_date), date.today(), data.max_quarantine_share
    )
    prices = adjust(checked.clean.sort("symbol", "date"))
    symbols = prices["symbol"].unique().sort()
    if quick:
        symbols = symbols[::25]
    elif every:
        symbols = symbols[::every]
    prices = prices.filter(pl.col("symbol").is_in(symbols.implode()))
    features = build_feature_matrix(
        prices.lazy(), empty_alt().lazy(), feature_set=exp.features.set, cs_rank=[]
    ).collect(engine=ENGINE)
    names = feature_columns(features)
    features = features.with_columns(pl.col(names).cast(pl.Float32))
    horizon, kind = exp.labels.horizon, exp.labels.kind
    if kind == "forward":
        ours = forward_returns(prices.lazy(), horizon)
    elif kind == "excess":
        market = prices.group_by("date").agg(pl.col("close").mean())  # no index in the files
        ours = excess_returns(prices.lazy(), market.lazy(), horizon)
    else:
        raise ValueError(f"the protocol benchmark scores forward or excess labels, not {kind!r}")
    ahead = next_close_returns(prices.lazy(), sorted({*DECAY, 5})).collect()
    windows = alpha360(prices) if windows and not quick else None
    liquidity = prices.sort("symbol", "date").select(
        "symbol",
        "date",
        (pl.col("close") * pl.col("volume")).rolling_mean(20).over("symbol").alias("liquidity"),
    )
    sectors = (
        read_sectors(data.sectors)
        if data.sectors
        else pl.DataFrame(schema={"symbol": pl.String, "sector": pl.String})
    )
    frame = (
        features.join(ahead, on=["symbol", "date"], how="left")
        .join(
            ours.collect().rename({"label": "ours", "label_end": "ours_end"}),
            on=["symbol", "date"],
            how="left",
        )
        .join(liquidity, on=["symbol", "date"], how="left")
        .join(sectors.select("symbol", "sector"), on="symbol", how="left")
        .with_columns(pl.col("sector").fill_null("(none)"))
    )
    if windows is not None:
        frame = frame.join(windows, on=["symbol", "date"], how="left")
    return exp, frame.sort("date", "symbol"), names, horizon


A360 = "a360_"


def alpha360(prices: pl.DataFrame, days: int = 60) -> pl.DataFrame:
    """Qlib's Alpha360 inputs without VWAP (the files have none): the last ``days`` closes, opens,
    highs and lows over today's close and volumes over today's volume, oldest first, for the nets
    to find their own patterns in."""
    close, volume = pl.col("close"), pl.col("volume")
    columns = [
        # a day without volume has no volume ratio (null, not an infinity)
        (pl.col(c).shift(k) / (pl.when(volume > 0).then(volume) if c == "volume" else close))
        .over("symbol")
        .cast(pl.Float32)
        .alias(f"{A360}{c}_{k}")
        for k in range(days - 1, -1, -1)
        for c in ("close", "open", "high", "low", "volume")
    ]
    return (
        prices.sort("symbol", "date")
        .select("symbol", "date", *columns)
        .with_columns(pl.selectors.float().fill_nan(None))
    )


def protocol_data(
    frame: pl.DataFrame, names: list[str], ranks: bool = True
) -> tuple[ProtocolData, dict]:
    """The protocol's arrays, and the 1-20 day returns after the next close (the decay)."""
    dates = frame["date"].to_numpy().astype("datetime64[D]")
    X = frame.select(names).to_numpy().astype(np.float32)
    ranked = (
        frame.select(
            (pl.col(n).rank() / pl.col(n).count() - 0.5).over("date").cast(pl.Float32)
            for n in names
        )
        if ranks
        else None
    )
    far = np.datetime64("2100-01-01")

    def arr(column: str) -> np.ndarray:
        return frame[column].cast(pl.Float64).fill_null(np.nan).to_numpy()

    def end(column: str) -> np.ndarray:
        return frame[column].fill_null(far).to_numpy().astype("datetime64[D]")

    decay = {h: arr(f"ret_{h}") for h in DECAY}
    return ProtocolData(
        dates,
        X,
        names,
        {
            QLIB_LABEL: (arr("ret_1"), end("end_1")),
            "qlib_5": (arr("ret_5"), end("end_5")),
            "ours": (arr("ours"), end("ours_end")),
        },
        sectors=frame["sector"].to_numpy(),
        liquidity=arr("liquidity"),
        X_rank=ranked.to_numpy().astype(np.float32) if ranks else None,
        extra={"alpha360": frame.select(pl.selectors.starts_with(A360)).to_numpy()}
        if any(c.startswith(A360) for c in frame.columns)
        else {},
    ), decay


def model_card(result, tests: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """One row per trial and the ensemble: what it is, its valid and test figures."""
    member_names = {t.variant.name for t in result.members}
    rows = []
    for trial in result.trials:
        s = trial.valid_score
        rows.append(
            {
                **trial.variant.describe(),
                "member": trial.variant.name in member_names,
                "weight": result.ensemble.weights.get(trial.variant.name, 0.0),
                "valid_rank_ic": s["rank_ic"],
                "valid_t": s["t"],
                "fit_s": trial.fit_seconds,
            }
        )
    card = pl.DataFrame(rows)
    ens = {
        "variant": "ensemble",
        "model": f"meta: {result.ensemble.meta}",
        "member": True,
        "weight": 1.0,
    }
    card = pl.concat([card, pl.DataFrame([ens])], how="diagonal_relaxed")
    keep = [
        "model",
        "qlib_rank_ic",
        "qlib_t",
        "qlib_ic",
        "qlib_rank_icir",
        "ours_rank_ic",
        "ours_t",
        "qlib_n_pairs",
    ]
    return card.join(tests.select(keep).rename({"model": "variant"}), on="variant", how="left")


def markdown(frame: pl.DataFrame) -> str:
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.iter_rows():
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def log_mlflow(
    card: pl.DataFrame, decay: pl.DataFrame, result, summary: dict, text: str, min_t: float
) -> str | None:
    """The model card as an MLflow run (params: the chosen configuration; metrics: the
    ensemble's test figures; artefacts: the card and the decay table)."""
    import mlflow

    from pipelines.settings import load_settings

    settings = load_settings()
    mlflow.set_tracking_uri(settings.mlflow_uri)
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name("qlib-protocol") is None:
        # artefacts in the home beside the store (MLflow's default is ./mlruns in the cwd)
        client.create_experiment(
            "qlib-protocol", artifact_location=settings.mlflow_artifacts.as_uri()
        )
    mlflow.set_experiment("qlib-protocol")
    with mlflow.start_run(run_name="qlib-protocol") as run:
        chosen = result.data_variant.describe()
        mlflow.log_params({f"chosen_{k}": v for k, v in chosen.items()})
        mlflow.log_params(
            {
                "meta_learner": result.ensemble.meta,
                "n_trials": result.n_trials,
                "folds": result.periods.folds,
                "min_t": min_t,
            }
        )
        # a variant's name ("lightgbm+weights=recency") holds characters MLflow's keys refuse
        mlflow.log_params(
            {
                "weight_" + re.sub(r"[^\w\-. :/]", "_", k): round(v, 4)
                for k, v in result.ensemble.weights.items()
            }
        )
        mlflow.log_metrics({k: v for k, v in summary.items() if np.isfinite(v)})
        mlflow.log_text(text, "model_card.md")
        mlflow.log_text(decay.write_csv(), "ic_decay.csv")
        return run.info.run_id


def _print(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.qlib_protocol")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--every", type=int, default=None, help="every n-th ticker only")
    parser.add_argument("--quick", action="store_true", help="every 25th ticker, small fits")
    parser.add_argument("--out", type=Path, default=None, help="write the model card here")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument(
        "--folds",
        type=int,
        default=3,
        help="validation origins (3: valid 2011-12, 2013-14 and 2015-16; 1: Qlib's one block)",
    )
    parser.add_argument(
        "--min-t",
        type=float,
        default=1.0,
        help="a data change or a meta-learner is chosen over the base / the mean only with a "
        "paired t of at least this on the valid rows (0: any gain)",
    )
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument(
        "--save-members", type=Path, default=None, help="write the chosen members (JSON) here"
    )
    parser.add_argument(
        "--replay",
        type=Path,
        default=None,
        help="refit the members a search saved (--save-members) instead of searching",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    periods = Periods(folds=args.folds)
    saved = json.loads(args.replay.read_text()) if args.replay else None
    used = (
        {v["features"] for v in saved["members"]} if saved else {"raw", "rank", "both", "alpha360"}
    )
    # a replay builds only the inputs its members read (all 504 names: ~3 GB a matrix)
    exp, frame, names, horizon = load(args.config, args.every, args.quick, "alpha360" in used)
    n_symbols = frame["symbol"].n_unique()
    print(
        f"data: {n_symbols} tickers, {len(frame):,} rows x {len(names)} features "
        f"({exp.features.set}); {time.perf_counter() - started:.0f} s, peak {peak_gib():.1f} GiB",
        flush=True,
    )
    data, decay_returns = protocol_data(frame, names, bool(used & {"rank", "both"}))
    del frame
    search_started = time.perf_counter()
    if saved:
        members = [Variant(**v) for v in saved["members"]]
        result = replay(
            data, members, periods, saved["n_trials"], args.n_jobs, log=_print, min_t=args.min_t
        )
    else:
        base, options, families = variants(args.quick)
        result = search(
            data,
            base,
            options,
            families,
            periods,
            n_jobs=args.n_jobs,
            log=_print,
            min_t=args.min_t,
        )
    search_s = time.perf_counter() - search_started
    if args.save_members:
        members = [asdict(v) for v in result.chosen_variants()]
        args.save_members.write_text(
            json.dumps({"members": members, "n_trials": result.n_trials}, indent=1, default=str)
        )
    labels = {"qlib": (QLIB_LABEL, 1), "ours": ("ours", horizon)}
    tests = holdout_scores(data, result, labels)
    card = model_card(result, tests, horizon)
    test_rows = rows_for(data, QLIB_LABEL, periods, None).test
    d = data.dates[test_rows]
    decay_frames = []
    ahead = {h: r[test_rows] for h, r in decay_returns.items()}
    for t in [*result.members, None]:
        pred = result.ensemble.test_pred if t is None else t.test_pred
        name = "ensemble" if t is None else t.variant.name
        decay_frames.append(
            ic_decay(d, centred_rank(d, pred), ahead).with_columns(model=pl.lit(name))
        )
    decay = pl.concat(decay_frames).pivot(on="model", index="horizon", values="rank_ic")
    ens = tests.filter(pl.col("model") == "ensemble").row(0, named=True)
    best_member = max(
        (
            tests.filter(pl.col("model") == t.variant.name).row(0, named=True)
            for t in result.members
        ),
        key=lambda r: r["qlib_rank_ic"],
    )
    # the deflated Sharpe ratio of the ensemble's daily Rank IC, every trial of the search counted
    qlib_test = data.labels[QLIB_LABEL][0][test_rows]
    daily = {
        t.variant.name: daily_ic(d, t.test_pred, qlib_test)["ic"].to_numpy() for t in result.trials
    }
    ens_daily = daily_ic(d, result.ensemble.test_pred, qlib_test)["ic"].to_numpy()
    dsr = deflated_sharpe(ens_daily, np.array([sharpe(v) for v in daily.values()]), result.n_trials)
    total_s = time.perf_counter() - started
    summary = {
        "test_qlib_rank_ic": ens["qlib_rank_ic"],
        "test_qlib_t": ens["qlib_t"],
        "test_qlib_ic": ens["qlib_ic"],
        "test_ours_rank_ic": ens["ours_rank_ic"],
        "test_ours_t": ens["ours_t"],
        "best_member_qlib_rank_ic": best_member["qlib_rank_ic"],
        "ratio_to_best_member": ens["qlib_rank_ic"] / best_member["qlib_rank_ic"],
        "n_pairs": ens["qlib_n_pairs"],
        "n_trials": float(result.n_trials),
        "dsr_daily_rank_ic": dsr["dsr"],
        "total_s": total_s,
        "search_s": search_s,
        "peak_gib": peak_gib(),
    }
    text = "\n\n".join(
        [
            f"Qlib protocol on {n_symbols} tickers ({exp.features.set}); train to {periods.train_end}, "
            f"valid to {periods.valid_end}, test {periods.test_start}..{periods.test_end}; "
            f"{periods.folds} validation origin(s): "
            + ", ".join(
                f"train to {f.train_end}, valid to {f.valid_end}" for f in periods.each_fold()
            )
            + f"; choices need a paired t >= {args.min_t:g}; "
            f"{result.n_trials} trials; chosen data settings: {result.data_variant.describe()}; "
            f"members {[t.variant.name for t in result.members]}, meta-learner {result.ensemble.meta} "
            f"(Rank IC by meta-learner on {'the last valid block' if periods.folds > 1 else 'the second half of valid'}, fitted before it: "
            f"{ {k: round(v, 4) for k, v in result.ensemble.meta_scores.items()} })",
            markdown(card),
            "IC decay (Rank IC against the h-day return after the next close, test period):",
            markdown(decay),
            "summary: " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()),
        ]
    )
    print(text, flush=True)
    if args.out:
        args.out.write_text(text + "\n")
    if not args.no_mlflow:
        run_id = log_mlflow(card, decay, result, summary, text, args.min_t)
        print(f"MLflow run {run_id} (experiment qlib-protocol)")
    print(
        f"protocol: {total_s:.0f} s in all ({search_s:.0f} s in the search), "
        f"peak RSS {peak_gib():.1f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
