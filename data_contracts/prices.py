"""Schema of the daily price panel and the parser that types a raw user file against it."""

import polars as pl

from data_contracts.suite import ContractViolation, Violation

CONTRACT = "market_prices"
PRICE_COLUMNS: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}
REQUIRED = ("symbol", "date", "close")


def parse_prices(raw: pl.DataFrame) -> pl.DataFrame:
    """Type the price columns of ``raw`` (strings from a CSV, or typed from Parquet).

    ``raw`` carries ``source_file`` and ``source_row``. Unknown columns are dropped. A missing
    required column, or a value that does not parse as its column's type, raises
    :class:`ContractViolation` naming the file, the column and the first bad row.
    """
    files = raw["source_file"].unique().sort().to_list() if "source_file" in raw.columns else []
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
    present = [c for c in PRICE_COLUMNS if c in raw.columns]
    typed = raw.with_columns(_parse(c, raw.schema[c]).alias(f"_{c}") for c in present)
    violations = []
    for c in present:
        bad = typed.filter(pl.col(f"_{c}").is_null() & pl.col(c).is_not_null())
        if len(bad):
            first = bad.sort("source_file", "source_row").row(0, named=True)
            rule = f"must parse as {PRICE_COLUMNS[c]}"
            violations.append(
                Violation(rule, c, first["source_file"], first["source_row"], first[c], len(bad))
            )
    if violations:
        raise ContractViolation(CONTRACT, violations)
    return typed.select(*(pl.col(f"_{c}").alias(c) for c in present), "source_file", "source_row")


def _parse(column: str, dtype: pl.DataType) -> pl.Expr:
    target = PRICE_COLUMNS[column]
    col = pl.col(column)
    if dtype == pl.String and target == pl.Date:
        return col.str.strip_chars().str.to_date(strict=False)
    if dtype == pl.String and target == pl.Float64:
        return col.str.strip_chars().cast(pl.Float64, strict=False)
    return col.cast(target, strict=False)
