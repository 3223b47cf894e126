"""Ingest group: daily prices (validated by a blocking contract, bad rows quarantined) and
alternative series."""

from datetime import date

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    Backoff,
    Config,
    Failure,
    MetadataValue,
    Output,
    ResourceParam,
    RetryPolicy,
    asset,
    multi_asset,
)
from pydantic import Field

from assets._meta import frame_metadata, table
from assets.ports import AltDataSource, PriceSource, ReportStore
from data_contracts import ContractViolation, check_prices
from data_contracts.quality import QualityRules, quality_findings, summarize
from models.corporate_actions import adjust

CHECK = "check_market_prices_contract"
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


@multi_asset(
    group_name="ingest",
    outs={
        "market_prices": AssetOut(
            io_manager_key="lake",
            kinds={"polars", "great_expectations"},
            description="Daily prices as a long panel [symbol, date, close, ...], sorted by "
            "symbol and date, split- and dividend-adjusted when the source gives those columns.",
        ),
        "price_quarantine": AssetOut(
            io_manager_key="lake",
            kinds={"polars"},
            description="Rows and files set aside by the contract, each with the rule that "
            "caught it: [source_file, source_row, symbol, date, rule, values].",
        ),
    },
    retry_policy=INGEST_RETRY,
    check_specs=[
        AssetCheckSpec(
            CHECK,
            asset="market_prices",
            blocking=True,
            description="Great Expectations suite data_contracts/suites/market_prices.json plus "
            "type parsing. Row rules quarantine; a missing column, mixed timezones or too many "
            "quarantined rows stop the run before anything is written.",
        ),
        AssetCheckSpec(
            QUALITY,
            asset="market_prices",
            description="Warnings that set no row aside: calendar gaps, stale series, return "
            "outliers, unadjusted splits, coverage, freshness.",
        ),
    ],
)
def market_prices(
    context: AssetExecutionContext,
    config: PricesConfig,
    price_source: ResourceParam[PriceSource],
    reports: ResourceParam[ReportStore],
):
    """Read, type and validate the prices; the contract runs *before* anything is written, so
    a failed run leaves the last good files untouched and downstream assets do not run."""
    source = price_source.describe()
    start = date.fromisoformat(config.start_date)
    end = date.fromisoformat(config.end_date) if config.end_date else None
    run_date = date.today()
    try:
        raw = price_source.load_prices(start, end)
        checked = check_prices(raw, run_date, config.max_quarantine_share)
    except ContractViolation as err:
        yield AssetCheckResult(
            check_name=CHECK,
            asset_key="market_prices",
            passed=False,
            description=str(err),
            metadata={
                "source": source,
                "violations": MetadataValue.json([v.as_dict() for v in err.violations]),
            },
        )
        raise Failure(
            description=str(err), metadata={"source": source}, allow_retries=False
        ) from err
    docs = reports.write("validation_market_prices.html", checked.report.html)
    yield AssetCheckResult(
        check_name=CHECK,
        asset_key="market_prices",
        passed=True,
        description="\n".join(str(v) for v in checked.violations) or "every row passed",
        metadata={
            "source": source,
            "rows_in": checked.rows_in,
            "rows_clean": len(checked.clean),
            "rows_quarantined": checked.quarantine["source_row"].is_not_null().sum(),
            "files_skipped": len(checked.skipped),
            "validation_report": MetadataValue.path(str(docs)),
            "quarantined": MetadataValue.json([v.as_dict() for v in checked.violations]),
        },
    )
    has_splits = {"split", "dividend"} & set(checked.clean.columns)
    panel = (
        checked.clean.drop("source_file", "source_row")
        .filter(pl.col("symbol").is_in(config.symbols) if config.symbols else pl.lit(True))
        .sort("symbol", "date")
    )
    panel = adjust(panel) if has_splits else panel
    rules = QualityRules(
        max_gap_days=config.max_gap_days,
        stale_run=config.stale_run,
        max_age_days=config.max_age_days,
    )
    findings = quality_findings(panel, run_date, rules, check_splits=not has_splits)
    warnings = summarize(findings)
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
        f"{panel['symbol'].n_unique()} symbols, {len(panel)} rows from {source}; "
        f"{len(checked.quarantine)} quarantined, {len(findings)} quality findings"
    )
    yield Output(
        panel,
        output_name="market_prices",
        metadata={
            **frame_metadata(panel),
            "source": source,
            "symbols": panel["symbol"].n_unique(),
            "first_date": str(panel["date"].min()),
            "last_date": str(panel["date"].max()),
            "adjusted_for": MetadataValue.json(sorted(has_splits)),
        },
    )
    yield Output(
        checked.quarantine,
        output_name="price_quarantine",
        metadata={
            **frame_metadata(checked.quarantine),
            "by_rule": table(checked.quarantine.group_by("rule").len().sort("len", descending=True).head(20)),
        },
    )


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
