"""Schema of the daily price panel, the parser that types raw user rows against it, and the
whole price contract: file-level skips, row-level quarantine and blocking rules."""

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from data_contracts.bounds import implausible
from data_contracts.suite import ContractViolation, Report, Violation, run_suite

CONTRACT = "market_prices"
PRICE_COLUMNS: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    # the vendor's adjusted close beside its traded one (Yahoo's "Adj Close"), or a CRSP-style
    # cumulative factor (adjusted = raw / price_factor): market_prices puts open, high, low and
    # volume on the adjusted close's basis (models/data/corporate_actions.py::reconcile)
    "adj_close": pl.Float64(),
    "price_factor": pl.Float64(),
    "volume": pl.Float64(),
    "dividend": pl.Float64(),
    "split": pl.Float64(),
}
REQUIRED = ("symbol", "date", "close")
QUARANTINE_SCHEMA = {
    "source_file": pl.String,
    "source_row": pl.Int64,
    "symbol": pl.String,
    "date": pl.String,
    "rule": pl.String,
    "values": pl.String,
}
# A source losing more than this share of its rows to quarantine is broken, not noisy: stop
# rather than train on what is left (alphalens once dropped 45 % of rows without failing).
MAX_QUARANTINE_SHARE = 0.05
_OFFSET = r"(Z|[+-]\d{2}:?\d{2})$"


@dataclass
class RawPrices:
    """What a source read: rows (strings from CSV, typed from Parquet) with ``source_file`` and
    ``source_row``, and the files it had to skip, each with the reason."""

    frame: pl.DataFrame
    skipped: list[Violation] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)  # our column -> the file's, as used
    notes: list[str] = field(default_factory=list)  # why a column was or was not taken


@dataclass
class CheckedPrices:
    clean: pl.DataFrame
    quarantine: pl.DataFrame
    report: Report
    rows_in: int
    skipped: list[Violation]

    @property
    def violations(self) -> list[Violation]:
        return self.skipped + self.report.violations


def check_prices(
    raw: RawPrices,
    run_date: date,
    max_quarantine_share: float = MAX_QUARANTINE_SHARE,
    allow_empty: bool = False,
) -> CheckedPrices:
    """Type, validate and split ``raw`` into clean rows and quarantined rows.

    Raises :class:`ContractViolation` for what no quarantine can fix: no readable rows, a
    required column missing, mixed timezone offsets in a file, a blocking suite rule, or more
    than ``max_quarantine_share`` of the rows quarantined. Otherwise every input row ends up in
    exactly one of ``clean`` and ``quarantine``. With ``allow_empty`` (one daily partition: a
    holiday has no rows) a source that read nothing and skipped nothing is an empty result.
    """
    frame = raw.frame
    if frame.is_empty() and allow_empty and not raw.skipped:
        empty = pl.DataFrame(
            schema={**PRICE_COLUMNS, "source_file": pl.String, "source_row": pl.Int64}
        )
        return CheckedPrices(
            empty.select("symbol", "date", "close", "source_file", "source_row"),
            pl.DataFrame(schema=QUARANTINE_SCHEMA),
            Report([], pl.DataFrame()),
            0,
            [],
        )
    if frame.is_empty():
        raise ContractViolation(
            CONTRACT, [*raw.skipped, Violation("no readable price rows", None, None, None, None, 0)]
        )
    typed, unparsed = parse_prices(frame)
    derived = typed.join(unparsed.select(*_KEY), on=_KEY, how="anti").with_columns(
        days_after_run_date=(pl.col("date") - pl.lit(run_date)).dt.total_days(),
        # rows arrive in file order, so the first of a (symbol, date) pair is the one kept
        repeats_of_symbol_date=(~pl.struct("symbol", "date").is_first_distinct()).cast(pl.Int8),
    )
    report = run_suite(derived, CONTRACT)
    bounds, out_of_bounds = implausible(derived)
    report.violations[:0] = _parse_violations(typed, unparsed)
    report.violations += out_of_bounds
    flagged = pl.concat([unparsed.select(*_KEY, "rule"), report.flagged, bounds])
    rules = _rules_per_row(flagged)
    value_cols = [c for c in frame.columns if c not in _KEY]
    quarantine = (
        frame.join(rules, on=_KEY)
        .select(
            *_KEY,
            pl.col("symbol").cast(pl.String) if "symbol" in frame.columns else pl.lit(None),
            pl.col("date").cast(pl.String) if "date" in frame.columns else pl.lit(None),
            "rule",
            pl.concat_str(
                [pl.lit(f"{c}=") + pl.col(c).cast(pl.String).fill_null("") for c in value_cols],
                separator=", ",
            ).alias("values"),
        )
        .cast(QUARANTINE_SCHEMA)
    )
    files = [
        {
            "source_file": v.file,
            "source_row": None,
            "symbol": v.symbol,
            "date": None,
            "rule": v.rule,
            "values": None,
        }
        for v in raw.skipped
    ]
    quarantine = pl.concat([pl.DataFrame(files, schema=QUARANTINE_SCHEMA), quarantine]).sort(
        "source_file", "source_row", nulls_last=False
    )
    clean = typed.join(rules.select(_KEY), on=_KEY, how="anti")
    extra = []
    share = (len(frame) - len(clean)) / len(frame)
    if share > max_quarantine_share:
        extra.append(
            Violation(
                f"{share:.1%} of rows would be quarantined (limit {max_quarantine_share:.0%}; "
                f"data.max_quarantine_share); {dominant_rule(flagged, typed)}",
                None,
                None,
                None,
                None,
                len(frame) - len(clean),
            )
        )
    if report.blocking or extra or clean.is_empty():
        raise ContractViolation(CONTRACT, [*raw.skipped, *report.violations, *extra])
    return CheckedPrices(clean.sort("symbol", "date"), quarantine, report, len(frame), raw.skipped)


_KEY = ["source_file", "source_row"]


def _rules_per_row(flagged: pl.DataFrame) -> pl.DataFrame:
    """``[source_file, source_row, rule]``, one row per flagged row, its rules joined by "; "
    in name order. The rules become bits of one integer summed per row, and only the few
    distinct sums are spelled out: a per-row list of strings to sort and join took most of the
    contract's time on a frame with 200 k bad rows."""
    names = sorted(set(flagged["rule"]))
    if len(names) > 62:  # more rules than bits: the plain aggregation
        return flagged.group_by(_KEY).agg(pl.col("rule").unique().sort().str.join("; "))
    bit = pl.col("rule").replace_strict(names, [1 << i for i in range(len(names))], default=0)
    sums = flagged.unique().group_by(_KEY).agg(bits=bit.sum())
    distinct = sums["bits"].unique().to_list()  # a handful of rule sets, not rows
    spelled = pl.DataFrame(
        {
            "bits": distinct,
            "rule": ["; ".join(n for i, n in enumerate(names) if b >> i & 1) for b in distinct],
        },
        schema={"bits": sums.schema["bits"], "rule": pl.String},
    )
    return sums.join(spelled, on="bits").drop("bits")


def dominant_rule(flagged: pl.DataFrame, typed: pl.DataFrame) -> str:
    """Which rule sets most rows aside, and the likely cause when the pattern is a known one
    (a blocked run's message: "75 % quarantined" alone does not say what to change)."""
    counts = flagged.group_by("rule").len().sort("len", "rule", descending=[True, False])
    if counts.is_empty():
        return "no row rule dominates"
    rule, n = counts.row(0)
    rows = flagged.select(_KEY).unique().height
    text = f"rule '{rule}' dominates ({n:,} rows, {n / max(rows, 1):.0%} of those set aside)"
    cause = _likely_cause(rule, typed.join(flagged.filter(pl.col("rule") == rule), on=_KEY))
    return text + (f"; likely cause: {cause}" if cause else "")


def _likely_cause(rule: str, bad: pl.DataFrame) -> str | None:
    pair = rule.rsplit(": ", 1)[-1]
    if pair in ("close must be >= low", "high must be >= close") and {"high", "low"} <= set(
        bad.columns
    ):
        # where close sits against the day's range: an adjusted close (dividends, splits)
        # beside raw high/low lies below it, by the same factor for a whole stretch
        where = bad.select(
            (pl.col("close") / ((pl.col("high") + pl.col("low")) / 2)).median()
        ).item()
        if where is not None and abs(where - 1) > 0.02:
            return (
                f"close looks adjusted while high/low are not (the median bad close is "
                f"{where:.0%} of the day's mid-range): map the adjusted column as adj_close and "
                "the traded one as close, e.g. columns: {close: Close, adj_close: Adj Close}; "
                "open, high and low are then put on the adjusted basis"
            )
        return "the open/high/low columns may be mapped to the wrong fields: check the mapping"
    if rule.startswith("date: must parse"):
        return "the dates are not ISO (YYYY-MM-DD) nor YYYYMMDD: reformat them, or map another column as date"
    if rule.startswith("date: must not be after"):
        return "dates read day-first or in the future: check the file's date format"
    if rule.endswith("must parse as Float64"):
        return "a number column holds text (thousand separators, currency signs, 'n/a'): clean it or map another column"
    if rule.startswith("symbol,date: must be unique"):
        return "files overlap, or per-ticker files lack a symbol: set symbol_from_filename or map a ticker column"
    if rule.startswith("symbol:"):
        return "the symbol column holds names or lower-case tickers: map a ticker column, or set symbol_from_filename"
    return None


def parse_prices(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Type the price columns of ``raw``; return ``(typed, unparsed)``.

    ``typed`` has every row (a value that does not parse becomes null); ``unparsed`` lists the
    rows with such a value as ``[source_file, source_row, column, value, rule]``. Unknown
    columns are dropped; NaN becomes null. A missing required column, or a file whose dates
    mix timezone offsets, raises :class:`ContractViolation`.
    """
    files = raw["source_file"].unique().sort().to_list()
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise ContractViolation(
            CONTRACT,
            [
                Violation(
                    f"is required but missing (columns found: {raw.columns})",
                    c,
                    ", ".join(files) or None,
                    None,
                    None,
                    len(raw),
                )
                for c in missing
            ],
        )
    _check_offsets(raw)
    present = [c for c in PRICE_COLUMNS if c in raw.columns]
    typed = raw.with_columns(_parse(c, raw.schema[c]).alias(f"_{c}") for c in present)
    unparsed = pl.concat(
        [
            typed.filter(pl.col(f"_{c}").is_null() & ~_missing(c, raw.schema[c])).select(
                *_KEY,
                column=pl.lit(c),
                value=pl.col(c).cast(pl.String),
                rule=pl.lit(f"{c}: must parse as {PRICE_COLUMNS[c]}"),
            )
            for c in present
        ]
    )
    typed = typed.select(*(pl.col(f"_{c}").alias(c) for c in present), *_KEY)
    return typed, unparsed


def _missing(column: str, dtype: pl.DataType) -> pl.Expr:
    """Null, empty or NaN: a missing value (the suite names it), not an unparseable one."""
    col = pl.col(column)
    if dtype == pl.String:
        return col.is_null() | col.str.strip_chars().str.to_lowercase().is_in(["", "nan", "null"])
    return col.is_null() | (col.is_nan() if dtype.is_float() else pl.lit(False))


def _parse_violations(typed: pl.DataFrame, unparsed: pl.DataFrame) -> list[Violation]:
    out = []
    for (column,), bad in unparsed.sort(_KEY).group_by("column", maintain_order=True):
        first = bad.row(0, named=True)
        symbol = typed.filter(
            (pl.col("source_file") == first["source_file"])
            & (pl.col("source_row") == first["source_row"])
        )["symbol"]
        out.append(
            Violation(
                f"must parse as {PRICE_COLUMNS[column]}",
                column,
                first["source_file"],
                first["source_row"],
                first["value"],
                len(bad),
                symbol=symbol[0] if len(symbol) else None,
                severity="quarantine",
            )
        )
    return out


def _check_offsets(raw: pl.DataFrame) -> None:
    """Timestamps with different UTC offsets in one file cannot be put on one calendar."""
    if raw.schema["date"] != pl.String:
        return
    offsets = raw.select(
        *_KEY, offset=pl.col("date").str.strip_chars().str.extract(_OFFSET).fill_null("none")
    )
    mixed = offsets.filter(pl.col("offset").n_unique().over("source_file") > 1).filter(
        pl.col("offset") != pl.col("offset").first().over("source_file", order_by="source_row")
    )
    if len(mixed):
        first = mixed.sort(_KEY).row(0, named=True)
        seen = offsets.filter(pl.col("source_file") == first["source_file"])["offset"].unique()
        raise ContractViolation(
            CONTRACT,
            [
                Violation(
                    f"mixes timezone offsets {sorted(seen)}; give every date in one zone",
                    "date",
                    first["source_file"],
                    first["source_row"],
                    first["offset"],
                    len(mixed),
                )
            ],
        )


def _parse(column: str, dtype: pl.DataType) -> pl.Expr:
    target = PRICE_COLUMNS[column]
    col = pl.col(column)
    if column == "symbol":
        return col.cast(pl.String).str.strip_chars()
    if dtype == pl.String and target == pl.Date:
        # the exchange-local calendar date: drop a time of day and its offset; ISO, or
        # YYYYMMDD as Stooq and CRSP extracts write it
        day = col.str.strip_chars().str.replace(r"[T ].*$", "")
        return pl.coalesce(day.str.to_date(strict=False), day.str.to_date("%Y%m%d", strict=False))
    if dtype == pl.String and target == pl.Float64:
        return col.str.strip_chars().cast(pl.Float64, strict=False).fill_nan(None)
    if target == pl.Float64:
        return col.cast(target, strict=False).fill_nan(None)
    return col.cast(target, strict=False)
