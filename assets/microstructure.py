"""Microstructure group: LOBSTER order books ingested under a blocking contract, one partition
per ticker-day; order-flow features at event time and on a clock; short-horizon labels;
models split in time and tracked in MLflow (the best registered as ``alphaforge-lob``); an
impact model fitted on the real trades; and the calibrated costs for the daily backtest.

Without ``data.lob`` nothing here runs: ``alphaforge run`` says so and skips the group."""

import warnings

import numpy as np
import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    BackfillPolicy,
    BetaWarning,
    Config,
    DynamicPartitionsDefinition,
    Failure,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
    multi_asset,
)
from pydantic import Field

from assets._meta import contract_check, frame_metadata, image, png_bytes, table
from assets.ports import LobSource, ModelRegistry, ReportStore, Tracker
from data_contracts import ContractViolation
from data_contracts.lob import check_lob
from models.microstructure import impact as impact_model
from models.microstructure.features import (
    FeatureParams,
    clock_features,
    describe,
    features_frame,
    model_features,
)
from models.microstructure.labels import labels_frame, parse_horizons
from models.microstructure.plots import depth_heatmap, impact_curve, ofi_vs_mid
from models.microstructure.reader import PRICE_SCALE, book_columns, book_frame, events_frame

# ``backfill_policy`` is beta on @asset in Dagster 1.13 (not on @multi_asset): a range of
# ticker-days in one run is what ``alphaforge run`` and a backfill from the UI rely on
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)

GROUP = "microstructure"
LOB_PARTITIONS = DynamicPartitionsDefinition(name="lob_ticker_days")
REGISTERED_MODEL = "alphaforge-lob"
PARTITION = "lob_partition"
ALL = {"partition_mapping": AllPartitionMapping()}


class LobIngestConfig(Config):
    tick: float = Field(
        default=0.01,
        description="Price grid of the contract in dollars (hidden executions may print on "
        "the half tick).",
    )


class LobFeaturesConfig(Config):
    levels: int = Field(
        default=10, description="Book levels the features read (capped at the file's depth)."
    )
    ofi_windows: list[int] = Field(
        default=[10, 100], description="Events summed by the order-flow-imbalance features."
    )
    trade_windows: list[int] = Field(
        default=[100, 1000], description="Events over which trade-sign imbalance is measured."
    )
    rate_windows_s: list[int] = Field(
        default=[1, 10], description="Seconds over which arrival rates per event type are counted."
    )
    vol_windows_s: list[int] = Field(
        default=[10, 60], description="Seconds of mid changes in the realized volatility."
    )
    kyle_trades: int = Field(default=100, description="Executions in the trailing Kyle's lambda.")
    clocks_s: list[int] = Field(
        default=[1, 10], description="Clocks (seconds) of lob_clock_features."
    )

    def params(self, tick: int = 100) -> FeatureParams:
        return FeatureParams(
            levels=self.levels,
            ofi_windows=tuple(self.ofi_windows),
            trade_windows=tuple(self.trade_windows),
            rate_windows_s=tuple(self.rate_windows_s),
            vol_windows_s=tuple(self.vol_windows_s),
            kyle_trades=self.kyle_trades,
            tick=tick,
        )


class LobLabelsConfig(Config):
    horizons: list[str] = Field(
        default=["k10", "k50", "k100", "s10", "s60"],
        description="k<N>: the DeepLOB smoothed mid over the next N events; s<T>: the mid "
        "return over the next T seconds.",
    )


class LobModelsConfig(LobFeaturesConfig):
    """The features' settings (routed from the same experiment keys as lob_features, so the
    registered model knows how its inputs were built), plus the models'."""

    ticker: str | None = Field(
        default=None,
        description="Ticker whose days train the models (none: the one with the deepest book, "
        "then the most events).",
    )
    models: list[str] = Field(
        default=["majority", "persistence", "cks_ofi", "lightgbm", "deeplob"],
        description="Models fitted per horizon.",
    )
    train_fraction: float = Field(
        default=0.6, description="Share of the sessions' trading time that trains (time order)."
    )
    valid_fraction: float = Field(
        default=0.2, description="Last share of the training time held out for early stopping."
    )
    stationary_share: float = Field(
        default=1 / 3,
        description="Dead zone per horizon: the training rows' |return| quantile that makes "
        "this share of them stationary (DeepLOB's alpha).",
    )
    dead_zones_bp: dict[str, float] = Field(
        default={}, description="Fixed dead zones (bp) by horizon, instead of calibrating them."
    )
    serve_horizon: str = Field(
        default="k50", description="Horizon of the model registered as alphaforge-lob."
    )
    seed: int = Field(default=42, description="Seed of LightGBM and the net.")
    n_jobs: int = Field(default=2, description="LightGBM threads.")
    deeplob_epochs: int = Field(default=3, description="DeepLOB training epochs (early-stopped).")
    deeplob_windows: int = Field(
        default=30_000, description="DeepLOB training windows, spread evenly over the period."
    )
    deeplob_threads: int = Field(default=2, description="Torch threads for the net.")


class LobImpactConfig(Config):
    interval_s: int = Field(
        default=10, description="Clock (seconds) of the interval impact regressions."
    )
    train_fraction: float = Field(
        default=0.6, description="First share of the intervals that fits; the rest tests."
    )


def _tick_units(tick: float) -> int:
    return int(round(tick * PRICE_SCALE))


@multi_asset(
    name="lob_events",
    group_name=GROUP,
    partitions_def=LOB_PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    outs={
        "lob_events": AssetOut(
            io_manager_key="lake",
            kinds={"polars", "great_expectations"},
            description="One row per LOBSTER message: [lob_partition, symbol, seq, t_ns, ts, "
            "type, order_id, size, price, direction, trade_sign, halt_state].",
        ),
        "lob_book": AssetOut(
            io_manager_key="lake",
            kinds={"polars"},
            description="The book after each message: [lob_partition, seq, ask_price_1, "
            "ask_size_1, bid_price_1, bid_size_1, ...], dollars, empty levels null.",
        ),
    },
    check_specs=[
        AssetCheckSpec(
            contract_check(name),
            asset=name,
            blocking=True,
            description="data_contracts/suites/lob_book.json plus file-level refusals: a pair "
            "with any violation is refused whole and nothing of it is written.",
        )
        for name in ("lob_events", "lob_book")
    ],
)
def lob_ingest(
    context: AssetExecutionContext,
    config: LobIngestConfig,
    lob_source: ResourceParam[LobSource],
    reports: ResourceParam[ReportStore],
):
    """Each ticker-day's LOBSTER pair read, validated and typed: prices in dollars, exchange
    timestamps, dummy levels as nulls, halts as a state. Every pair of the run is validated
    before anything is written; one bad pair fails the run, naming its file, line and rule."""
    pairs = lob_source.pairs()
    tick = _tick_units(config.tick)
    checked, failures = {}, []
    for key in context.partition_keys:
        if key not in pairs:
            failures.append(f"{key}: no LOBSTER pair under {lob_source.describe()} any more")
            continue
        try:
            checked[key] = check_lob(lob_source.load(pairs[key]), tick)
        except ContractViolation as err:
            failures.append(f"{key}: {err}")
    if failures:
        for name in ("lob_events", "lob_book"):
            yield AssetCheckResult(
                check_name=contract_check(name),
                asset_key=name,
                passed=False,
                description="\n".join(failures),
            )
        raise Failure(description="\n".join(failures), allow_retries=False)
    events, books, counts, pictures = [], [], [], {}
    for key, pair in checked.items():
        raw = pair.raw
        ev = events_frame(pair.messages, raw.day).with_columns(
            pl.lit(key).alias(PARTITION), pl.lit(raw.ticker).alias("symbol")
        )
        bk = book_frame(pair.book, raw.levels).with_columns(pl.lit(key).alias(PARTITION))
        events.append(ev.select(PARTITION, "symbol", pl.exclude(PARTITION, "symbol")))
        books.append(bk.select(PARTITION, pl.exclude(PARTITION)))
        counts.append(
            {
                "partition": key,
                "levels": raw.levels,
                "rows_in": pair.rows,
                "events": len(ev),
                "book_rows": len(bk),
                "halts": int((ev["type"] == 7).sum()),
                "executions": int(ev["type"].is_in([4, 5]).sum()),
                "message_file": raw.message_file,
            }
        )
        png = png_bytes(
            depth_heatmap(ev, bk, f"{raw.ticker} {raw.day}: resting depth, {raw.levels} levels")
        )
        reports.write(f"lob_depth_heatmap_{key}.png", png)
        pictures[f"depth_heatmap_{key}"] = image(png, f"depth heat-map {key}")
        context.log.info(f"{key}: {pair.rows:,} lines read, {len(ev):,} events ingested")
    summary = pl.DataFrame(counts)
    for name in ("lob_events", "lob_book"):
        yield AssetCheckResult(
            check_name=contract_check(name),
            asset_key=name,
            passed=True,
            description=f"{len(checked)} pair(s), every line passed",
            metadata={"rows_in": int(summary["rows_in"].sum()), "pairs": table(summary)},
        )
    events_all = pl.concat(events, how="diagonal_relaxed")
    books_all = pl.concat(books, how="diagonal_relaxed")
    yield Output(
        events_all,
        output_name="lob_events",
        metadata={**frame_metadata(events_all), "pairs": table(summary), **pictures},
    )
    yield Output(
        books_all,
        output_name="lob_book",
        metadata={**frame_metadata(books_all), "pairs": table(summary), **pictures},
    )


def _days(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    return [
        (k, part)
        for (k,), part in frame.partition_by(PARTITION, as_dict=True, maintain_order=True).items()
    ]


def _books(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Each day's book with its own depth: days of shallower files, read together with deeper
    ones, come back with the deeper files' levels as all-null columns, which are dropped."""
    out = {}
    for key, part in _days(frame):
        empty = {c for c in part.columns if c != PARTITION and part[c].null_count() == len(part)}
        out[key] = part.drop(sorted(empty))
    return out


@asset(
    group_name=GROUP,
    partitions_def=LOB_PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="lake",
    kinds={"polars", "numpy"},
)
def lob_features(
    context: AssetExecutionContext,
    config: LobFeaturesConfig,
    lob_events: pl.DataFrame,
    lob_book: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Event-time order-book features (``models/microstructure/features.py``: quotes, depth
    and its imbalance per level, multi-level order-flow imbalance, trade-sign imbalance,
    arrival rates, realized volatility, Kyle's lambda), each from events up to its own."""
    books = _books(lob_book)
    parts = []
    for key, ev in _days(lob_events):
        part = features_frame(ev.drop(PARTITION), books[key].drop(PARTITION), config.params())
        parts.append(part.select(pl.lit(key).alias(PARTITION), pl.all()))
        context.log.info(f"{key}: {part.width - 2} features x {len(part):,} events")
    frame = pl.concat(parts, how="diagonal_relaxed")
    return Output(
        frame,
        metadata={**frame_metadata(frame), "features": table(describe(config.params()))},
    )


@asset(
    group_name=GROUP,
    partitions_def=LOB_PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="lake",
    kinds={"polars"},
)
def lob_clock_features(
    context: AssetExecutionContext,
    config: LobFeaturesConfig,
    lob_events: pl.DataFrame,
    lob_book: pl.DataFrame,
    lob_features: pl.DataFrame,
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """The day on each clock: every interval's flow (messages, signed volume, OFI per level)
    and mid return, and the event-time features as of its end. With the order-flow imbalance
    against the mid's move per 10 s (Cont, Kukanov & Stoikov's picture)."""
    books, feats = _books(lob_book), dict(_days(lob_features))
    parts, pictures = [], {}
    for key, ev in _days(lob_events):
        part = clock_features(
            ev.drop(PARTITION),
            books[key].drop(PARTITION),
            feats[key].drop(PARTITION),
            config.clocks_s,
            config.levels,
        )
        parts.append(part.select(pl.lit(key).alias(PARTITION), pl.all()))
        clock = f"{10 if 10 in config.clocks_s else config.clocks_s[-1]}s"
        png = png_bytes(
            ofi_vs_mid(
                part.filter(pl.col("clock") == clock), f"{key}: OFI against mid change, {clock}"
            )
        )
        reports.write(f"lob_ofi_{key}.png", png)
        pictures[f"ofi_vs_mid_{key}"] = image(png, f"OFI against mid change {key}")
    frame = pl.concat(parts, how="diagonal_relaxed")
    context.log.info(f"{len(frame):,} clock rows")
    return Output(frame, metadata={**frame_metadata(frame), **pictures})


@asset(
    group_name=GROUP,
    partitions_def=LOB_PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="lake",
    kinds={"polars"},
)
def lob_labels(
    config: LobLabelsConfig, lob_events: pl.DataFrame, lob_book: pl.DataFrame
) -> Output[pl.DataFrame]:
    """Per event and horizon: the smoothed (k events) or plain (T seconds) mid return ahead,
    the time of the last event it reads (purging), and the last ended label's return."""
    horizons = parse_horizons(config.horizons, {})
    books = _books(lob_book)
    parts = [
        labels_frame(ev.drop(PARTITION), books[key].drop(PARTITION), horizons).select(
            pl.lit(key).alias(PARTITION), pl.all()
        )
        for key, ev in _days(lob_events)
    ]
    frame = pl.concat(parts, how="diagonal_relaxed")
    spread = pl.DataFrame(
        [
            {
                "horizon": h.name,
                "labelled": int(frame[f"ret_{h.name}"].is_not_null().sum()),
                **{
                    f"abs_bp_q{int(q * 100)}": float(
                        (frame[f"ret_{h.name}"].abs() * 1e4).quantile(q) or np.nan
                    )
                    for q in (0.33, 0.5, 0.67)
                },
            }
            for h in horizons
        ]
    )
    return Output(frame, metadata={**frame_metadata(frame), "returns_bp": table(spread)})


def _training_ticker(
    config_ticker: str | None, lob_book: pl.DataFrame, lob_events: pl.DataFrame
) -> str:
    symbols = lob_events.group_by("symbol").agg(pl.len().alias("events"))
    if config_ticker:
        if config_ticker not in symbols["symbol"].to_list():
            raise Failure(
                f"microstructure.ticker {config_ticker!r} has no ingested days "
                f"(have {sorted(symbols['symbol'].to_list())})",
                allow_retries=False,
            )
        return config_ticker
    levels = sum(1 for c in lob_book.columns if c.startswith("ask_price_"))
    depth = (
        lob_book.select(
            PARTITION,
            pl.sum_horizontal(
                pl.col(f"ask_price_{k}").is_not_null() for k in range(1, levels + 1)
            ).alias("d"),
        )
        .group_by(PARTITION)
        .agg(pl.col("d").max())
    )
    per = (
        lob_events.select(PARTITION, "symbol").unique()
        .join(depth, on=PARTITION)
        .group_by("symbol")
        .agg(pl.col("d").max().alias("depth"))
        .join(symbols, on="symbol")
        .sort(["depth", "events", "symbol"], descending=[True, True, False])
    )  # fmt: skip
    return per["symbol"][0]


@asset(
    group_name=GROUP,
    io_manager_key="lake",
    kinds={"lightgbm", "pytorch", "sklearn", "mlflow"},
    ins={name: AssetIn(**ALL) for name in ("lob_events", "lob_book", "lob_features", "lob_labels")},
)
def lob_models(
    context: AssetExecutionContext,
    config: LobModelsConfig,
    lob_events: pl.DataFrame,
    lob_book: pl.DataFrame,
    lob_features: pl.DataFrame,
    lob_labels: pl.DataFrame,
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """Every model and baseline for every horizon, trained on the first ``train_fraction`` of
    the training ticker's trading time and scored on the rest, purged by each label's horizon:
    accuracy and macro-F1 out of sample. The best model the tick scorer can run, at
    ``serve_horizon``, is registered as ``alphaforge-lob`` (@challenger; @champion when it
    beats the champion on the same test rows, or the champion was tested on other data)."""
    from models.microstructure.models import REPLAYABLE, assemble, fit_models

    ticker = _training_ticker(config.ticker, lob_book, lob_events)
    keys = lob_events.filter(pl.col("symbol") == ticker)[PARTITION].unique().sort().to_list()
    mine = pl.col(PARTITION).is_in(keys)
    book = lob_book.filter(mine)
    depth = sum(
        1 for c in book.columns if c.startswith("ask_price_") and book[c].is_not_null().any()
    )
    levels = min(config.levels, depth)
    params = config.params().for_levels(levels)
    names = model_features(params)
    horizons = parse_horizons([h for h in config_horizons(lob_labels)], {})
    hnames = [h.name for h in horizons]
    if config.serve_horizon not in hnames:
        raise Failure(
            f"microstructure.serve_horizon {config.serve_horizon!r} is not among the labels' horizons {hnames}",
            allow_retries=False,
        )
    snapshots = book.select(PARTITION, "seq", *book_columns(levels))
    data = assemble(
        lob_features.filter(mine), lob_labels.filter(mine),
        snapshots if "deeplob" in config.models else None, names, hnames, levels,
    )  # fmt: skip
    context.log.info(
        f"training on {ticker} ({', '.join(keys)}): {len(data.ts_ns):,} events, {len(names)} features, {levels} levels"
    )
    results = fit_models(
        data,
        hnames,
        tuple(config.models),
        train_fraction=config.train_fraction,
        valid_fraction=config.valid_fraction,
        stationary_share=config.stationary_share,
        dead_zones_bp=config.dead_zones_bp,
        deeplob={
            "epochs": config.deeplob_epochs,
            "max_train_windows": config.deeplob_windows,
            "threads": config.deeplob_threads,
        },
        seed=config.seed,
        n_jobs=config.n_jobs,
        log=context.log.info,
    )
    scores = pl.DataFrame(results.table).with_columns(pl.lit(ticker).alias("symbol"))
    split = results.splits[config.serve_horizon]
    test_start = str(np.datetime64(split.boundary_ns, "ns"))
    serve = scores.filter(
        (pl.col("horizon") == config.serve_horizon) & pl.col("model").is_in(REPLAYABLE)
    )
    wide = scores.pivot(on="horizon", index="model", values="macro_f1", aggregate_function="first")
    reports.write("lob_models.json", scores.write_json())
    registered = {}
    with tracker.asset_run(context) as run:
        run.log_params(
            {"ticker": ticker, "partitions": ",".join(keys), "levels": levels, "test_start": test_start,
             **config.model_dump(exclude={"dead_zones_bp"}),
             **{f"dead_zone_bp_{h}": round(v, 4) for h, v in results.dead_zones.items()}}
        )  # fmt: skip
        for row in results.table:
            run.log_metrics(
                {
                    f"{row['model']}_{row['horizon']}_{m}": row[m]
                    for m in ("accuracy", "macro_f1")
                    if np.isfinite(row[m])
                }
            )
        for key in keys:
            for name in (f"lob_depth_heatmap_{key}.png", f"lob_ofi_{key}.png"):
                if png := reports.read(name):
                    run.log_png(png, name)
        if not serve.is_empty():
            best = serve.sort("macro_f1", descending=True).row(0, named=True)
            registered = _register(
                tracker.registry(),
                context,
                best,
                results,
                names,
                params,
                levels,
                ticker,
                keys,
                test_start,
                config,
            )
    return Output(
        scores,
        metadata={
            **frame_metadata(scores),
            "macro_f1": table(wide),
            "scores": table(
                scores.select(
                    "model",
                    "horizon",
                    "accuracy",
                    "macro_f1",
                    "n_train",
                    "n_test",
                    "dead_zone_bp",
                    "fit_seconds",
                )
            ),
            "ticker": ticker,
            "test_start": test_start,
            **{k: MetadataValue.text(str(v)) for k, v in registered.items()},
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


def config_horizons(lob_labels: pl.DataFrame) -> list[str]:
    """The horizons the labels carry (``ret_<h>`` columns), in order."""
    return [c[4:] for c in lob_labels.columns if c.startswith("ret_")]


def _register(
    registry: ModelRegistry,
    context,
    best,
    results,
    names,
    params,
    levels,
    ticker,
    keys,
    test_start,
    config,
) -> dict:
    """Log the serving model to the registry as @challenger, and move @champion to it when it
    beats the champion on the same test rows (or the champion was tested elsewhere)."""
    from dataclasses import asdict

    from models.microstructure.models import OFI_PREFIX, LobModel

    h, kind = config.serve_horizon, best["model"]
    columns = [n for n in names if n.startswith(OFI_PREFIX)] if kind == "cks_ofi" else list(names)
    model = LobModel(
        results.fitted[(kind, h)],
        columns,
        h,
        results.dead_zones[h],
        asdict(params),
        kind,
        ticker,
        levels,
    )
    example = pl.DataFrame(np.zeros((3, len(columns))), schema=columns, orient="row").to_pandas()
    version = registry.register(
        model,
        name=REGISTERED_MODEL,
        artifact="lob_model",
        example=example,
        output=model.predict_proba(example.to_numpy()),
        pip_requirements=["scikit-learn", "lightgbm", "numpy", "polars", "torch"],
    )
    data_id = f"{ticker}:{','.join(keys)}:{test_start}:{h}"
    tags = {"model": kind, "horizon": h, "ticker": ticker, "levels": str(levels), "data": data_id,
            "test_macro_f1": f"{best['macro_f1']:.6f}", "dagster_run_id": context.run_id}  # fmt: skip
    registry.tag_version(REGISTERED_MODEL, version, tags)
    champion = registry.version(REGISTERED_MODEL, "champion")
    if champion is None:
        decision = "promoted: no champion yet"
    elif champion.tags.get("data") != data_id:
        decision = f"promoted: the champion (v{champion.version}) was tested on other data"
    elif best["macro_f1"] >= float(champion.tags.get("test_macro_f1", "-1")):
        decision = f"promoted: macro-F1 {best['macro_f1']:.4f} >= champion v{champion.version}'s {champion.tags.get('test_macro_f1')}"
    else:
        decision = f"kept champion v{champion.version}: its macro-F1 {champion.tags.get('test_macro_f1')} > {best['macro_f1']:.4f} on the same test rows"
    if decision.startswith("promoted"):
        registry.set_alias(REGISTERED_MODEL, "champion", version)
    registry.tag_version(REGISTERED_MODEL, version, {"promotion": decision})
    context.log.info(
        f"registered {REGISTERED_MODEL} v{version} ({kind}, {h}) as @challenger; {decision}"
    )
    return {
        "registered_model": f"{REGISTERED_MODEL} v{version} ({kind}, {h})",
        "promotion": decision,
    }


@asset(
    group_name=GROUP,
    io_manager_key="lake",
    kinds={"polars", "sklearn", "mlflow"},
    ins={name: AssetIn(**ALL) for name in ("lob_events", "lob_book", "lob_clock_features")},
)
def lob_impact(
    context: AssetExecutionContext,
    config: LobImpactConfig,
    lob_events: pl.DataFrame,
    lob_book: pl.DataFrame,
    lob_clock_features: pl.DataFrame,
    lob_source: ResourceParam[LobSource],
    tracker: ResourceParam[Tracker],
    reports: ResourceParam[ReportStore],
) -> Output[pl.DataFrame]:
    """Per ticker, from its executions and books: quoted and effective half-spread (bp), the
    temporary impact of signed flow per interval fitted as Kyle's lambda and as the square-root
    law (each with its out-of-sample R^2), next to the Corwin-Schultz half-spread of the same
    name and day from daily bars (when ``microstructure.daily_bars`` is given)."""
    from datetime import timedelta

    clock = f"{config.interval_s}s"
    intervals = lob_clock_features.filter(pl.col("clock") == clock)
    if intervals.is_empty():
        raise Failure(
            f"lob_clock_features has no {clock} clock (microstructure.clocks_s)",
            allow_retries=False,
        )
    books = _books(lob_book)
    rows, curves = [], {}
    for (symbol,), ev in lob_events.partition_by(
        "symbol", as_dict=True, maintain_order=True
    ).items():
        keys = ev[PARTITION].unique().sort().to_list()
        days = [(k, part.drop(PARTITION), books[k].drop(PARTITION)) for k, part in _days(ev)]
        first, last = ev["ts"].min().date(), ev["ts"].max().date()
        bars = lob_source.load_daily_bars(symbol, first - timedelta(days=60), last)
        mine = intervals.filter(pl.col(PARTITION).is_in(keys)).sort("ts")
        row, curves[symbol] = impact_model.impact_summary(
            symbol,
            days,
            mine,
            bars,
            train_fraction=config.train_fraction,
            interval_s=config.interval_s,
        )
        rows.append(row)
        context.log.info(
            f"{symbol}: effective half-spread {row['effective_half_spread_bp']:.2f} bp, square-root Y {row['sqrt_coef']:.2f} (OOS R² {row['sqrt_r2_oos']:.2f})"
        )
    frame = pl.DataFrame(rows)
    png = png_bytes(impact_curve(curves))
    reports.write("lob_impact_curve.png", png)
    reports.write("lob_impact.json", frame.write_json())
    with tracker.asset_run(context) as run:
        run.log_png(png, "lob_impact_curve.png")
        for r in rows:
            run.log_metrics(
                {
                    f"{r['symbol']}_{k}": float(r[k])
                    for k in (
                        "quoted_half_spread_bp",
                        "effective_half_spread_bp",
                        "kyle_lambda_bp_per_musd",
                        "kyle_r2_oos",
                        "sqrt_coef",
                        "sqrt_r2_oos",
                    )
                    if r[k] is not None and np.isfinite(r[k])
                }
            )
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "impact": table(frame.select(impact_model.IMPACT_COLUMNS)),
            "impact_curve": image(png, "impact curve"),
            "mlflow_run": MetadataValue.url(tracker.run_url(run.run_id)),
        },
    )


@asset(group_name=GROUP, io_manager_key="lake", kinds={"polars"})
def lob_costs(lob_impact: pl.DataFrame) -> Output[pl.DataFrame]:
    """The calibrated trading costs per name, for the daily backtest (``portfolio.costs``):
    ``[symbol, half_spread_bp, impact_coef, source, ...]``: the effective half-spread to
    charge per unit traded and the square-root coefficient (the backtest's ``impact_coef``)."""
    rows = [
        impact_model.CostCalibration(
            symbol=r["symbol"],
            half_spread_bp=r["effective_half_spread_bp"],
            impact_coef=r["sqrt_coef"],
            source=f"LOBSTER {r['symbol']} {r['days']} ({r['levels']} levels): effective half-spread; "
            f"square-root law on {r['interval_s']} s intervals, sigma and V from {r['scale_source']}",
            quoted_half_spread_bp=r["quoted_half_spread_bp"],
            kyle_lambda_bp_per_musd=r["kyle_lambda_bp_per_musd"],
            first_day=r["days"].split(",")[0],
            last_day=r["days"].split(",")[-1],
        )
        for r in lob_impact.to_dicts()
    ]
    frame = impact_model.calibration_frame(rows)
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "costs": table(frame.select("symbol", "half_spread_bp", "impact_coef", "source")),
        },
    )
