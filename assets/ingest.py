"""Ingest group: daily prices (validated by a blocking contract) and alternative series."""

from datetime import date

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Backoff,
    Config,
    Failure,
    MetadataValue,
    Output,
    ResourceParam,
    RetryPolicy,
    asset,
)
from pydantic import Field

from assets._meta import frame_metadata, table
from assets.ports import AltDataSource, PriceSource
from data_contracts import ContractViolation, parse_prices, validate
from data_contracts.prices import CONTRACT

CHECK = "check_market_prices_contract"


class PricesConfig(Config):
    start_date: str = Field(default="1990-01-01", description="First date kept (ISO).")
    end_date: str | None = Field(default=None, description="Last date kept (ISO); none = all.")
    symbols: list[str] | None = Field(
        default=None, description="Universe filter; none = every symbol in the source."
    )


# Reading files or package data can fail for passing reasons (a file still being copied, a
# network mount): retry. A contract violation raises Failure(allow_retries=False): no retry.
INGEST_RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL)


@asset(
    group_name="ingest",
    kinds={"polars", "great_expectations"},
    io_manager_key="lake",
    retry_policy=INGEST_RETRY,
    check_specs=[
        AssetCheckSpec(
            CHECK,
            asset="market_prices",
            blocking=True,
            description="Great Expectations suite data_contracts/suites/market_prices.json "
            "plus type parsing: names the file, column and first bad row of every violation.",
        )
    ],
)
def market_prices(
    context: AssetExecutionContext, config: PricesConfig, price_source: ResourceParam[PriceSource]
):
    """Daily prices as a long panel ``[symbol, date, close, ...]``, sorted by symbol and date.

    The contract runs *before* the output is written: when it fails, the check is recorded as
    failed, the step fails, downstream assets do not run and the last good file is untouched.
    """
    source = price_source.describe()
    try:
        parsed = parse_prices(price_source.load_prices())
        violations = validate(parsed, CONTRACT)
        if violations:
            raise ContractViolation(CONTRACT, violations)
    except ContractViolation as err:
        yield AssetCheckResult(
            check_name=CHECK,
            passed=False,
            description=str(err),
            metadata={
                "source": source,
                "violations": MetadataValue.json(
                    [vars(v) | {"value": str(v.value)} for v in err.violations]
                ),
            },
        )
        raise Failure(
            description=str(err), metadata={"source": source}, allow_retries=False
        ) from err

    yield AssetCheckResult(
        check_name=CHECK, passed=True, metadata={"source": source, "rows_checked": len(parsed)}
    )
    end = date.fromisoformat(config.end_date) if config.end_date else date.max
    panel = (
        parsed.drop("source_file", "source_row")
        .filter(pl.col("date").is_between(date.fromisoformat(config.start_date), end))
        .filter(pl.col("symbol").is_in(config.symbols) if config.symbols else pl.lit(True))
        .sort("symbol", "date")
    )
    context.log.info(f"{panel['symbol'].n_unique()} symbols, {len(panel)} rows from {source}")
    yield Output(
        panel,
        metadata={
            **frame_metadata(panel),
            "source": source,
            "symbols": panel["symbol"].n_unique(),
            "first_date": str(panel["date"].min()),
            "last_date": str(panel["date"].max()),
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
