"""Finiteness and a plausible ceiling for the price panel: a rule of its own beside the Great
Expectations suite. GX's ``expect_column_values_to_be_between`` lets ``inf`` through a lower
bound, and a ceiling is one vectorized expression over every price column at once, so these
run on the typed polars frame (no second GX pass over millions of rows)."""

import polars as pl

from data_contracts.suite import Violation

# The dearest listed share trades near $0.75 M (BRK.A); ten million in any currency unit is a
# corrupt value (an overflow, a unit error), not a price.
MAX_PRICE = 1e7
PRICES = ("open", "high", "low", "close", "adj_close")
AMOUNTS = ("volume", "dividend", "split")
_KEY = ["source_file", "source_row"]


def implausible(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[Violation]]:
    """Rows with a price that is infinite or above :data:`MAX_PRICE`, or another amount that is
    infinite: ``[source_file, source_row, rule]`` (to quarantine) and one violation per rule,
    naming its first row."""
    rules = {c: f"must be finite and at most {MAX_PRICE:g}" for c in PRICES} | {
        c: "must be finite" for c in AMOUNTS
    }
    present = [c for c in rules if c in frame.columns]
    flagged, violations = [], []
    for column in present:
        col = pl.col(column)
        bad = col.is_infinite() | (col > MAX_PRICE) if column in PRICES else col.is_infinite()
        hits = frame.filter(bad).sort(_KEY)
        if hits.is_empty():
            continue
        first = hits.row(0, named=True)
        rule = rules[column]
        flagged.append(hits.select(*_KEY, rule=pl.lit(f"{column}: {rule}")))
        violations.append(
            Violation(
                rule,
                column,
                first["source_file"],
                first["source_row"],
                first[column],
                len(hits),
                symbol=first.get("symbol"),
                severity="quarantine",
            )
        )
    empty = pl.DataFrame(
        schema={"source_file": pl.String, "source_row": pl.Int64, "rule": pl.String}
    )
    return pl.concat([empty, *flagged]), violations
