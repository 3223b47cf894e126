"""Panel-level data-quality rules that set no row aside but must be seen: calendar gaps, stale
series, return outliers, splits a source forgot to adjust, thin coverage and old data.

Each rule returns findings ``[rule, symbol, date, detail]``; :func:`summarize` turns them into
one :class:`Violation` per rule (first finding and count) for the non-blocking asset check.
All vectorised polars over a ``[symbol, date, close, (volume)]`` panel sorted by symbol, date.
"""

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from data_contracts.suite import Violation

# Split ratios seen in practice (new shares per old share); reverse splits are their inverses.
SPLIT_RATIOS = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0, 15.0, 20.0)
FINDINGS = {"rule": pl.String, "symbol": pl.String, "date": pl.Date, "detail": pl.String}


@dataclass(frozen=True)
class QualityRules:
    max_gap_days: int = 10  # business days between two rows of one symbol
    stale_run: int = 5  # identical closes in a row
    max_abs_return: float = 0.5  # one-day |simple return| not explained by a split
    # ... that the close gives back (half of it or more) within this many days: a bad print
    # reverses, a real move (AMD +52 % on its 2016-04-22 earnings) stays
    reversal_days: int = 5
    split_tolerance: float = 0.04
    split_volume_spike: float = 2.0
    min_coverage: float = 0.8  # share of the listed universe present on a day
    max_age_days: int | None = None  # business days between the newest date and the run date


def find_unadjusted_splits(
    panel: pl.DataFrame, tolerance: float = 0.04, volume_spike: float = 2.0
) -> pl.DataFrame:
    """Days where the close jumps by a split ratio (within ``tolerance``) with no volume shock
    beyond what a split explains (a crash that size trades many times its usual volume; a split
    scales volume by about its ratio). ``[symbol, date, ratio, prev_close, close]``; ratio 2.0
    is a 2-for-1 split, 0.1 a 1-for-10 reverse split.

    On the shared S&P 500 set (raw ``close``) this finds 352 of the 421 splits of ratio >= 1.5
    and flags 24 days of 2.4 M on adjusted closes (mostly -33 % crash days): hence a warning.
    """
    prev = pl.col("close").shift(1).over("symbol")
    jump = prev / pl.col("close")
    nearest = pl.lit(None, dtype=pl.Float64)
    for r in [*SPLIT_RATIOS, *(1 / r for r in SPLIT_RATIOS)]:
        nearest = pl.when((jump / r - 1).abs() < tolerance).then(pl.lit(r)).otherwise(nearest)
    calm = pl.lit(True)
    if "volume" in panel.columns:
        usual = pl.col("volume").shift(1).rolling_median(20, min_samples=5).over("symbol")
        limit = volume_spike * pl.max_horizontal(pl.col("ratio"), 1.0)
        calm = ((pl.col("volume") / usual) <= limit).fill_null(True)
    return (
        panel.with_columns(prev_close=prev, ratio=nearest)
        .filter(pl.col("ratio").is_not_null() & calm)
        .select("symbol", "date", "ratio", "prev_close", "close")
    )


def quality_findings(
    panel: pl.DataFrame, run_date: date, rules: QualityRules, check_splits: bool = True
) -> pl.DataFrame:
    """Every finding of every rule, ``[rule, symbol, date, detail]``."""
    days = pl.col("date").cast(pl.Date)
    gap = pl.business_day_count(days.shift(1).over("symbol"), days)
    prev = pl.col("close").shift(1).over("symbol")
    ret = (pl.col("close") / prev - 1).alias("ret")
    same = pl.col("close") == prev
    run_id = (~same).fill_null(True).cum_sum().over("symbol")
    big = pl.col("ret").abs() > rules.max_abs_return
    # the move given back: some close of the next reversal_days within half the jump of the
    # close before it (a last row, with no day after it to judge by, counts as reversed)
    back = [
        (pl.col("close").shift(-k).over("symbol") / prev - 1).abs() < pl.col("ret").abs() / 2
        for k in range(1, rules.reversal_days + 1)
    ]
    last = pl.col("close").shift(-1).over("symbol").is_null()
    frame = (
        panel.with_columns(gap=gap, ret=ret, run=run_id)
        .with_columns(run_len=pl.len().over("symbol", "run"))
        .with_columns(reversed=pl.any_horizontal(*back).fill_null(False) | last)
        .with_columns(spike=big & pl.col("reversed"))
        # the day that undoes a spike is part of the bad print too
        .with_columns(
            outlier=pl.col("spike") | big & pl.col("spike").shift(1).over("symbol").fill_null(False)
        )
    )
    splits = (
        find_unadjusted_splits(panel, rules.split_tolerance, rules.split_volume_spike)
        if check_splits
        else pl.DataFrame(schema={"symbol": pl.String, "date": pl.Date, "ratio": pl.Float64})
    )
    found = [
        frame.filter(pl.col("gap") > rules.max_gap_days).select(
            rule=pl.lit("calendar gap"),
            symbol="symbol",
            date="date",
            detail=pl.format("{} business days since the previous row", "gap"),
        ),
        frame.filter(
            (pl.col("run_len") >= rules.stale_run)
            & pl.col("run").is_first_distinct().over("symbol", "run")
        ).select(
            rule=pl.lit("stale series"),
            symbol="symbol",
            date="date",
            detail=pl.format("{} identical closes in a row from here ({})", "run_len", "close"),
        ),
        frame.join(splits.select("symbol", "date"), on=["symbol", "date"], how="anti")
        .filter(pl.col("outlier"))
        .select(
            rule=pl.lit("return outlier"),
            symbol="symbol",
            date="date",
            detail=pl.format(
                "one-day return {}, a spike given back within {} days",
                pl.col("ret").round(4),
                pl.lit(rules.reversal_days),
            ),
        ),
        splits.select(
            rule=pl.lit("unadjusted split"),
            symbol="symbol",
            date="date",
            detail=pl.format(
                "close jumps by a split ratio {} with no volume shock; map the vendor's split "
                "column, or give adjusted prices",
                pl.col("ratio").round(4),
            ),
        ),
        _coverage(panel, rules.min_coverage),
    ]
    newest = panel["date"].max()
    if rules.max_age_days is not None and newest is not None:
        age = int(np.busday_count(newest, run_date))
        if age > rules.max_age_days:
            found.append(
                pl.DataFrame(
                    {
                        "rule": ["stale data"],
                        "symbol": [None],
                        "date": [newest],
                        "detail": [f"newest date is {age} business days before {run_date}"],
                    },
                    schema=FINDINGS,
                )
            )
    return pl.concat([f.cast(FINDINGS) for f in found]).sort("rule", "date", "symbol")


def _coverage(panel: pl.DataFrame, minimum: float) -> pl.DataFrame:
    """Days where fewer than ``minimum`` of the symbols listed that day (between their first
    and last row) have a row."""
    span = panel.group_by("symbol").agg(first=pl.col("date").min(), last=pl.col("date").max())
    per_day = panel.group_by("date").agg(present=pl.len()).sort("date")
    starts = span.group_by("first").len().rename({"first": "date", "len": "starts"})
    ends = span.group_by("last").len().rename({"last": "date", "len": "ends"})
    listed = (
        per_day.join(starts, on="date", how="left")
        .join(ends, on="date", how="left")
        .sort("date")
        .with_columns(
            listed=pl.col("starts").fill_null(0).cum_sum()
            - pl.col("ends").fill_null(0).cum_sum().shift(1).fill_null(0)
        )
    )
    return listed.filter(pl.col("present") < minimum * pl.col("listed")).select(
        rule=pl.lit("coverage"),
        symbol=pl.lit(None, dtype=pl.String),
        date="date",
        detail=pl.format("{} of {} listed symbols present", "present", "listed"),
    )


def summarize(findings: pl.DataFrame) -> list[Violation]:
    """One warning per rule: its first finding and how many there are."""
    out = []
    for (rule,), rows in findings.sort("date").group_by("rule", maintain_order=True):
        first = rows.row(0, named=True)
        where = f" (symbol {first['symbol']})" if first["symbol"] else ""
        out.append(
            Violation(
                f"{rule}: first on {first['date']}{where}: {first['detail']}",
                None,
                None,
                None,
                None,
                len(rows),
                symbol=first["symbol"],
                severity="warn",
            )
        )
    return out
