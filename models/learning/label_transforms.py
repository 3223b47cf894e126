"""Cross-sectional label transforms: what the models are trained to rank, per date.

A raw forward return mixes the market's move (shared by every name on a date), the sector's and
the name's own; a cross-sectional forecaster is scored on the last part only. Each transform is
a per-date (or per date and sector) polars expression, so a row's transformed label depends only
on labels of the same date: transforming never moves information across dates.

- ``none``: the label as it is;
- ``rank``: the per-date percentile rank, centred on zero and scaled to unit variance (Qlib's
  ``CSRankNorm``: on its benchmark settings, L1 205 and L2 581, a target of spread 0.29 grows no
  tree on a few hundred thousand rows);
- ``zscore``: per-date z-score;
- ``market_neutral``: minus the per-date equal-weighted mean (the market's move);
- ``sector_neutral``: minus the per-date mean of the row's sector (names without a sector form
  one group of their own);
- ``sector_rank``: the same rank within the date's sector.
"""

import polars as pl

from models.types import DATE, SYMBOL

LABEL_TRANSFORMS = (
    "none",
    "rank",
    "zscore",
    "market_neutral",
    "sector_neutral",
    "sector_rank",
)
SECTOR = "sector"
NO_SECTOR = "(none)"


UNIFORM_STD = 12**-0.5  # the standard deviation of a uniform percentile rank


def _rank(col: pl.Expr) -> pl.Expr:
    return (col.rank() / col.count() - 0.5) / UNIFORM_STD


def transform_expr(how: str, column: str = "label") -> pl.Expr:
    """The expression of one transform over ``column`` (needs a ``sector`` column for the
    sector transforms)."""
    x = pl.col(column)
    by = [DATE, SECTOR] if how.startswith("sector") else [DATE]
    if how == "none":
        return x
    if how == "rank":
        return _rank(x).over(by)
    if how == "zscore":
        return ((x - x.mean()) / x.std()).over(by)
    if how == "market_neutral":
        return (x - x.mean()).over(by)
    if how == "sector_neutral":
        return (x - x.mean()).over(by)
    if how == "sector_rank":
        return _rank(x).over(by)
    raise ValueError(f"unknown label transform {how!r}; known: {LABEL_TRANSFORMS}")


def transform_labels(
    labels: pl.LazyFrame,
    how: str,
    sectors: pl.LazyFrame | None = None,
    column: str = "label",
) -> pl.LazyFrame:
    """``labels`` with ``column`` transformed per date (see the module docstring); other columns
    kept. ``sectors`` is ``[symbol, sector]``, required by the sector transforms."""
    if how not in LABEL_TRANSFORMS:
        raise ValueError(f"unknown label transform {how!r}; known: {LABEL_TRANSFORMS}")
    if how == "none":
        return labels
    names = labels.collect_schema().names()
    frame = labels
    if how.startswith("sector"):
        if sectors is None:
            raise ValueError(
                f"label transform {how!r} needs a sector map (data.sectors, or the bundled one)"
            )
        frame = frame.join(
            sectors.select(SYMBOL, pl.col(SECTOR).cast(pl.String)),
            on=SYMBOL,
            how="left",
            maintain_order="left",
        ).with_columns(pl.col(SECTOR).fill_null(NO_SECTOR))
    # a date (or sector) with a single name has no spread: its z-score is NaN, dropped later
    return frame.with_columns(transform_expr(how, column).alias(column)).select(names)
