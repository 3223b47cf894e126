"""Ingest group: daily prices (validated by a blocking contract, bad rows quarantined) and
alternative series."""

from datetime import date, timedelta

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    BackfillPolicy,
    Backoff,
    Config,
    Failure,
    MetadataValue,
    Output,
    ResourceParam,
    RetryPolicy,
    TimeWindowPartitionsDefinition,
    asset,
    multi_asset,
)
from pydantic import Field

from assets._meta import contract_check, frame_metadata, image, png_bytes, table
from assets.ports import AltDataSource, PriceSource, ReportStore
from data_contracts import ContractViolation, check_prices
from data_contracts.quality import QualityRules, quality_findings, summarize
from models.data.corporate_actions import reconcile
from models.data.panel import partition_keys
from models.data.sentiment import daily_sentiment
from models.data.universe import ScreenRules, excluded_symbols, screen
from models.reporting.plots import universe_counts

QUALITY = "check_market_prices_quality"


class PricesConfig(Config):
    start_date: str = Field(default="1990-01-01", description="First date kept (ISO).")
    end_date: str | None = Field(default=None, description="Last date kept (ISO); none = all.")
    symbols: list[str] | None = Field(
        default=None, description="Universe filter; none = every symbol in the source."
    )
    max_quarantine_share: float = Field(
        default=0.05,
        description="Stop the run when more than this share of rows would be quarantined.",
    )
    daily_from: str = Field(
        default="2022-12-01",
        description="First day ingested as a daily partition (ISO); price_history loads the "
        "days before it in one go.",
    )


class PanelConfig(Config):
    max_gap_days: int = Field(
        default=10, description="Warn when a symbol skips more business days than this."
    )
    stale_run: int = Field(default=5, description="Warn on this many identical closes in a row.")
    max_age_days: int | None = Field(
        default=None,
        description="Warn when the newest date is more business days than this before the run "
        "date (none: no freshness rule, e.g. for the static bundled data).",
    )


# Reading files or package data can fail for passing reasons (a file still being copied, a
# network mount): retry. A contract violation raises Failure(allow_retries=False): no retry.
INGEST_RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL)
# A weekday calendar: the nightly run ingests the day that just closed.
DAILY_CRON = "0 0 * * 1-5"
QUARANTINE_DOC = (
    "Rows and files set aside by the contract, each with the rule that caught it: "
    "[source_file, source_row, symbol, date, rule, values]."
)


def _contract_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        contract_check(asset),
        asset=asset,
        blocking=True,
        description="Great Expectations suite data_contracts/suites/market_prices.json plus "
        "type parsing. Row rules quarantine; a missing column, mixed timezones or too many "
        "quarantined rows stop the run before anything is written.",
    )


def _ingest(
    context: AssetExecutionContext,
    asset: str,
    config: PricesConfig,
    price_source: PriceSource,
    reports: ReportStore,
    start: date,
    end: date | None,
):
    """Load ``[start, end]`` from the source and run the contract *before* anything is
    written: on failure the check is recorded as failed, the step fails, downstream assets do
    not run and the last good files stay untouched. Yields the check result, then returns the
    clean rows and the quarantine."""
    source = price_source.describe()
    raw = price_source.load_prices(start, end)
    columns = {
        "column_mapping": MetadataValue.json(raw.mapping),
        "column_notes": MetadataValue.json(raw.notes),
    }
    if raw.mapping:
        used = ", ".join(f"{ours} <- '{theirs}'" for ours, theirs in raw.mapping.items())
        context.log.info(f"{asset}: columns used: {used}")
    for note in raw.notes:
        context.log.info(f"{asset}: {note}")
    try:
        checked = check_prices(
            raw, date.today(), config.max_quarantine_share, allow_empty=asset == "daily_prices"
        )
    except ContractViolation as err:
        yield AssetCheckResult(
            check_name=contract_check(asset),
            asset_key=asset,
            passed=False,
            description=str(err),
            metadata={
                "source": source,
                "violations": MetadataValue.json([v.as_dict() for v in err.violations]),
                **columns,
            },
        )
        raise Failure(
            description=str(err), metadata={"source": source}, allow_retries=False
        ) from err
    docs = reports.write(f"validation_{asset}.html", checked.report.html)
    rows_quarantined = int(checked.quarantine["source_row"].is_not_null().sum())
    yield AssetCheckResult(
        check_name=contract_check(asset),
        asset_key=asset,
        passed=True,
        description="\n".join(str(v) for v in checked.violations) or "every row passed",
        metadata={
            "source": source,
            "rows_read": checked.rows_in,
            "rows_clean": len(checked.clean),
            "rows_quarantined": rows_quarantined,
            "files_skipped": len(checked.skipped),
            "validation_report": MetadataValue.path(str(docs)),
            "quarantined": MetadataValue.json([v.as_dict() for v in checked.violations]),
            **columns,
        },
    )
    clean = (
        checked.clean.drop("source_file", "source_row")
        .filter(pl.col("symbol").is_in(config.symbols) if config.symbols else pl.lit(True))
        .sort("symbol", "date")
    )
    context.log.info(
        f"{asset}: {checked.rows_in} rows read from {source} for {start}..{end or 'latest'}; "
        f"{len(clean)} clean, {rows_quarantined} quarantined, {len(checked.skipped)} files skipped"
    )
    return clean, checked


def _quarantine_output(name: str, quarantine: pl.DataFrame) -> Output:
    by_rule = quarantine.group_by("rule").len().sort("len", descending=True).head(20)
    return Output(
        quarantine,
        output_name=name,
        metadata={**frame_metadata(quarantine), "by_rule": table(by_rule)},
    )


def _ingest_outs(prices: str, quarantine: str, description: str) -> dict[str, AssetOut]:
    return {
        prices: AssetOut(
            io_manager_key="lake", kinds={"polars", "great_expectations"}, description=description
        ),
        quarantine: AssetOut(io_manager_key="lake", kinds={"polars"}, description=QUARANTINE_DOC),
    }


@multi_asset(
    group_name="ingest",
    outs=_ingest_outs(
        "price_history",
        "price_quarantine",
        "Validated raw prices before data.daily_from, loaded in one go.",
    ),
    retry_policy=INGEST_RETRY,
    check_specs=[_contract_spec("price_history")],
)
def price_history(
    context: AssetExecutionContext,
    config: PricesConfig,
    price_source: ResourceParam[PriceSource],
    reports: ResourceParam[ReportStore],
):
    """Everything the source holds before the daily partitions start, validated."""
    start = date.fromisoformat(config.start_date)
    end = date.fromisoformat(config.daily_from) - timedelta(days=1)
    if config.end_date:
        end = min(end, date.fromisoformat(config.end_date))
    clean, checked = yield from _ingest(
        context, "price_history", config, price_source, reports, start, end
    )
    yield Output(
        clean,
        output_name="price_history",
        metadata={**frame_metadata(clean), **_span(clean), "rows_read": checked.rows_in},
    )
    yield _quarantine_output("price_quarantine", checked.quarantine)


def per_partition(clean: pl.DataFrame, quarantine: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``[partition, rows_read, rows_clean, rows_quarantined]``: where the lake puts each row
    (:func:`models.data.panel.partition_keys`, as the IO manager does); files skipped whole count in
    no partition's rows."""
    rows = quarantine.filter(pl.col("source_row").is_not_null())
    counts = [
        pl.DataFrame({"partition": partition_keys(f, keys)}).group_by("partition").len(name)
        for f, name in ((clean, "rows_clean"), (rows, "rows_quarantined"))
    ]
    return (
        pl.DataFrame({"partition": sorted(keys)})
        .join(counts[0], on="partition", how="left")
        .join(counts[1], on="partition", how="left")
        .fill_null(0)
        .select(
            "partition",
            rows_read=pl.col("rows_clean") + pl.col("rows_quarantined"),
            rows_clean="rows_clean",
            rows_quarantined="rows_quarantined",
        )
    )


def daily_prices_asset(daily_from: date):
    """The daily ingest, one weekday partition per trading day from ``daily_from``: the
    nightly run reads and writes only the new day; a backfill of a range runs as one run."""
    partitions = TimeWindowPartitionsDefinition(
        cron_schedule=DAILY_CRON,
        start=daily_from.isoformat(),
        fmt="%Y-%m-%d",
        end_offset=1,  # today's partition exists from midnight, for the run after the close
    )

    @multi_asset(
        name="daily_prices",
        group_name="ingest",
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        outs=_ingest_outs(
            "daily_prices",
            "daily_quarantine",
            "Validated raw prices, one partition per weekday.",
        ),
        retry_policy=INGEST_RETRY,
        check_specs=[_contract_spec("daily_prices")],
    )
    def daily_prices(
        context: AssetExecutionContext,
        config: PricesConfig,
        price_source: ResourceParam[PriceSource],
        reports: ResourceParam[ReportStore],
    ):
        window = context.partition_time_window
        start = window.start.date()
        end = window.end.date() - timedelta(days=1)
        clean, checked = yield from _ingest(
            context, "daily_prices", config, price_source, reports, start, end
        )
        quarantine = checked.quarantine.with_columns(
            partition_date=pl.col("date").str.slice(0, 10).str.to_date(strict=False)
        )
        keys = context.partition_keys
        yield Output(
            clean,
            output_name="daily_prices",
            metadata={
                **frame_metadata(clean),
                "rows_read": checked.rows_in,
                "rows_written": len(clean),
                "partitions": len(keys),
                "per_partition": table(per_partition(clean, quarantine, keys)),
            },
        )
        yield _quarantine_output("daily_quarantine", quarantine)

    return daily_prices


@multi_asset(
    group_name="ingest",
    outs={
        "market_prices": AssetOut(
            io_manager_key="lake",
            kinds={"polars"},
            is_required=False,
            description="The panel every model reads, every price on one adjusted basis.",
        ),
        "quality_findings": AssetOut(
            io_manager_key="lake",
            kinds={"polars"},
            is_required=False,
            description="Every quality finding of the panel, not the first 20: [rule, symbol, "
            "date, detail]; the universe screen reads the blocking ones.",
        ),
    },
    ins={"daily_prices": AssetIn(partition_mapping=AllPartitionMapping())},
    can_subset=True,  # jobs and tests that select market_prices alone still run
    check_specs=[
        AssetCheckSpec(
            QUALITY,
            asset="market_prices",
            description="Warnings that set no row aside: calendar gaps, stale series, return "
            "outliers, unadjusted splits, coverage, freshness (all of them in "
            "quality_findings; the universe screen excludes what they make uninvestable).",
        )
    ],
)
def market_prices(
    context: AssetExecutionContext,
    config: PanelConfig,
    price_history: pl.DataFrame,
    daily_prices: pl.DataFrame,
    price_source: ResourceParam[PriceSource],
):
    """The panel every model reads: history plus every daily partition, ``[symbol, date,
    close, ..., raw_close]`` sorted by symbol and date, every price on one adjusted basis:
    split- and dividend-adjusted when the source gives those columns (the adjustment of all
    history changes when a new split arrives, so it is applied here, on the whole panel, not
    per day), else by the vendor's ``adj_close / close`` (``models.data.corporate_actions.
    reconcile``); ``raw_close`` is the close as traded."""
    daily = daily_prices if daily_prices.width else price_history.clear()
    panel = pl.concat([price_history, daily], how="diagonal_relaxed").sort("symbol", "date")
    panel, basis = reconcile(panel)
    adjusted_for = basis["adjusted_for"]
    rules = QualityRules(
        max_gap_days=config.max_gap_days,
        stale_run=config.stale_run,
        max_age_days=config.max_age_days,
    )
    # a source of adjusted closes only (the bundled set) has no split left to find: a jump by a
    # split ratio there is a real move (AMD, 2016-04-22: +52 % on its earnings)
    adjusted_only = bool(getattr(price_source, "adjusted_only", False))
    findings = quality_findings(
        panel, date.today(), rules, check_splits=not adjusted_for and not adjusted_only
    )
    warnings = summarize(findings)
    selected = context.op_execution_context.selected_output_names
    if "market_prices" not in selected:  # quality_findings alone (a subset run)
        yield Output(findings, output_name="quality_findings", metadata=frame_metadata(findings))
        return
    yield AssetCheckResult(
        check_name=QUALITY,
        asset_key="market_prices",
        passed=not warnings,
        severity=AssetCheckSeverity.WARN,
        description="\n".join(str(w) for w in warnings) or "no findings",
        metadata={
            "findings": table(findings.group_by("rule").len().sort("rule")),
            "first_findings": table(findings.head(20)),
        },
    )
    context.log.info(
        f"{panel['symbol'].n_unique()} symbols, {len(panel)} rows "
        f"({len(daily)} from daily partitions); {len(findings)} quality findings"
    )
    yield Output(
        panel,
        output_name="market_prices",
        metadata={
            **frame_metadata(panel),
            **_span(panel),
            "rows_from_history": len(price_history),
            "rows_from_daily": len(daily),
            "adjusted_for": MetadataValue.json(adjusted_for),
            "price_basis": MetadataValue.json(basis),
        },
    )
    if "quality_findings" not in selected:
        return
    yield Output(
        findings,
        output_name="quality_findings",
        metadata={
            **frame_metadata(findings),
            "findings_per_rule": table(findings.group_by("rule").len().sort("rule")),
            "symbols_with_findings": findings["symbol"].drop_nulls().n_unique(),
        },
    )


class UniverseConfig(Config):
    min_price: float = Field(
        default=1.0, description="Exclude a day whose traded close is below this (currency)."
    )
    min_dollar_volume: float = Field(
        default=1e6,
        description="Exclude a day whose median traded dollar volume over volume_window days "
        "is below this (not judged when the prices carry no volume).",
    )
    volume_window: int = Field(default=20, description="Days of the median dollar volume.")
    min_history: int = Field(
        default=60, description="Exclude a symbol's first days, up to this many rows."
    )
    stale_run: int = Field(
        default=5, description="Exclude a day whose close has been unchanged this many days."
    )
    finding_days: int = Field(
        default=21,
        description="Exclude a symbol for this many days from a blocking quality finding (a "
        "return outlier, an unadjusted split, a calendar gap).",
    )
    stale_day_share: float = Field(
        default=0.5,
        description="A date where more than this share of closes is unchanged is a market-wide "
        "stale day (a closed day filled with the previous closes): every row excluded, and the "
        "date dropped from what models and books read.",
    )


@asset(group_name="ingest", kinds={"polars"}, io_manager_key="lake")
def universe(
    context: AssetExecutionContext,
    config: UniverseConfig,
    market_prices: pl.DataFrame,
    quality_findings: pl.DataFrame,
    price_source: ResourceParam[PriceSource],
) -> Output[pl.DataFrame]:
    """The investable universe, point in time: ``[symbol, date, eligible, rule, reason]`` for
    every row of the panel (``models/data/universe.py``: minimum price, median dollar volume,
    history, stale runs, open blocking findings, market-wide stale days). Models train, and
    books trade, only on eligible rows; the count per date is plotted."""
    adjusted_only = bool(getattr(price_source, "adjusted_only", False))
    rules = ScreenRules(**(config.model_dump() | ({"min_price": None} if adjusted_only else {})))
    frame = screen(market_prices, quality_findings, rules)
    counts = frame.group_by("date").agg(eligible=pl.col("eligible").sum(), listed=pl.len())
    excluded = excluded_symbols(frame)
    judged_volume = "volume" in market_prices.columns and bool(
        market_prices["volume"].is_not_null().any()
    )
    stale = frame.filter(pl.col("rule").str.contains("market-wide stale day"))["date"].unique()
    context.log.info(
        f"universe: {frame['eligible'].sum():,} of {len(frame):,} rows eligible; "
        f"{len(excluded)} symbols excluded beyond their first {rules.min_history} days; "
        f"{len(stale)} market-wide stale days"
        + ("" if judged_volume else "; dollar volume: cannot judge without volume")
        + ("; minimum price: cannot judge on adjusted closes" if adjusted_only else "")
    )
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "eligible_per_date": image(
                png_bytes(universe_counts(counts.sort("date"))), "eligible symbols per date"
            ),
            "excluded_symbols": table(excluded.head(100)),
            "symbols_excluded": len(excluded),
            "rows_excluded_by_rule": table(
                frame.drop_nulls("rule")
                .with_columns(pl.col("rule").str.split("; "))
                .explode("rule")
                .group_by("rule")
                .len()
                .sort("len", descending=True)
            ),
            "market_stale_days": MetadataValue.json([str(d) for d in stale.sort()]),
            "dollar_volume": "judged"
            if judged_volume
            else "cannot judge without volume: no symbol excluded for liquidity",
            "minimum_price": "cannot judge on adjusted closes (no traded price): not applied"
            if adjusted_only
            else f"traded close >= {rules.min_price}",
            "eligible_last_date": int(counts.sort("date")["eligible"][-1]),
        },
    )


def _span(frame: pl.DataFrame) -> dict:
    return {
        "symbols": frame["symbol"].n_unique(),
        "first_date": str(frame["date"].min()),
        "last_date": str(frame["date"].max()),
    }


@asset(group_name="ingest", kinds={"polars"}, io_manager_key="lake", retry_policy=INGEST_RETRY)
def alt_data(alt_source: ResourceParam[AltDataSource]) -> Output[pl.DataFrame]:
    """Alternative and market series, long: ``[series, kind, date, available_date, value]``.

    ``available_date`` is when the value could first be known (monthly factors are lagged), and
    every feature joins on it.
    """
    frame = alt_source.load_alt_data().sort("series", "date")
    coverage = (
        frame.group_by("series", "kind")
        .agg(
            pl.col("date").min().alias("first"),
            pl.col("date").max().alias("last"),
            pl.len().alias("rows"),
        )
        .sort("series")
    )
    return Output(frame, metadata={**frame_metadata(frame), "coverage": table(coverage)})


@asset(group_name="ingest", kinds={"polars"}, io_manager_key="lake", retry_policy=INGEST_RETRY)
def news_sentiment(alt_source: ResourceParam[AltDataSource]) -> Output[pl.DataFrame]:
    """Daily Loughran-McDonald sentiment per symbol (``_MARKET`` for market-wide text) from the
    user's dated text file (``data.texts``); empty when there is none: no package ships
    ticker-tagged news. Each day's score is usable from the next business day."""
    frame = daily_sentiment(alt_source.load_texts())
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "symbols": frame["symbol"].n_unique(),
            "texts": int(frame["n_texts"].sum() or 0),
            "mean_polarity": float(frame["lm_polarity"].mean() or 0.0),
        },
    )


@asset(group_name="ingest", kinds={"polars"}, io_manager_key="lake")
def sector_map(
    market_prices: pl.DataFrame, price_source: ResourceParam[PriceSource]
) -> Output[pl.DataFrame]:
    """``[symbol, sector]`` for the validated universe (empty when the source has no sector
    map), used by sector-neutral features. Symbols without a sector are listed in metadata."""
    universe = market_prices["symbol"].unique().sort()
    frame = (
        price_source.load_sectors()
        .filter(pl.col("symbol").is_in(universe.implode()))
        .sort("symbol")
    )
    counts = frame.group_by("sector").len().sort("sector")
    unmapped = sorted(set(universe) - set(frame["symbol"]))
    return Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "symbols_per_sector": table(counts),
            "without_sector": MetadataValue.json(unmapped),
        },
    )
