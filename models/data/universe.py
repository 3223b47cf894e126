"""The investable universe: a point-in-time screen of the price panel, one row per symbol and
date with the reason for every exclusion.

Qlib's instrument filters (``NameDFilter``, ``ExpressionDFilter`` on price and volume) and
zipline's pipeline screens (``AverageDollarVolume().top(...)``, ``close > 5``) decide per date
which instruments a strategy may hold; this screen does the same on our panel, with rules that
catch what real vendor downloads carry (half-cent zero-volume tails after a delisting, series
traded a few shares a day, a +250 % print that reverses the next day, a holiday filled with
the previous closes). Every rule reads only rows up to the date it judges:

- ``history``: fewer than ``min_history`` rows of the symbol so far;
- ``price``: the traded close (``raw_close`` when the panel has it) below ``min_price``;
- ``dollar volume``: the median traded dollar volume of the last ``volume_window`` rows below
  ``min_dollar_volume`` (not judged without volume);
- ``stale``: the close unchanged for ``stale_run`` rows in a row or more;
- ``open finding``: a blocking quality finding of the symbol (a return outlier, an unadjusted
  split, a calendar gap) within the last ``finding_days`` rows;
- ``market-wide stale day``: on a date where more than ``stale_day_share`` of the symbols
  close unchanged, every row (a vendor filling a closed day with the previous closes); such
  dates are also dropped from the panel the models and books read.

No library screens a polars panel this way (Qlib's filters run on its own data server,
zipline's on its bundles), so it is written here, vectorised, per symbol with ``.over``.
"""

from dataclasses import dataclass

import polars as pl

from models.types import DATE, SYMBOL

BLOCKING_FINDINGS = ("return outlier", "unadjusted split", "calendar gap")
SCREEN_SCHEMA = {
    SYMBOL: pl.String,
    DATE: pl.Date,
    "eligible": pl.Boolean,
    "rule": pl.String,
    "reason": pl.String,
}


@dataclass(frozen=True)
class ScreenRules:
    min_price: float | None = 1.0  # None: not judged (no traded price, e.g. adjusted closes)
    min_dollar_volume: float = 1e6
    volume_window: int = 20
    min_history: int = 60
    stale_run: int = 5
    finding_days: int = 21
    stale_day_share: float = 0.5
    blocking_findings: tuple[str, ...] = BLOCKING_FINDINGS


def market_stale_days(panel: pl.DataFrame, share: float = 0.5) -> pl.DataFrame:
    """``[date, unchanged, compared]``: dates where more than ``share`` of the symbols that
    also traded the row before close exactly unchanged (and at least three do)."""
    same = (pl.col("close") == pl.col("close").shift(1).over(SYMBOL, order_by=DATE)).alias("same")
    return (
        panel.select(SYMBOL, DATE, same)
        .drop_nulls("same")
        .group_by(DATE)
        .agg(unchanged=pl.col("same").sum(), compared=pl.len())
        .filter((pl.col("unchanged") >= 3) & (pl.col("unchanged") > share * pl.col("compared")))
        .sort(DATE)
    )


def screen(
    panel: pl.DataFrame, findings: pl.DataFrame, rules: ScreenRules = ScreenRules()
) -> pl.DataFrame:
    """One row per row of ``panel`` (``[symbol, date, close, (raw_close), (volume),
    (dollar_volume)]``): ``[symbol, date, eligible, rule, reason]``, ``rule`` the names of
    the rules that exclude the row and ``reason`` their details, both null when eligible.
    ``findings`` are :func:`data_contracts.quality.quality_findings` rows (``[rule, symbol,
    date, detail]``)."""
    price = "raw_close" if "raw_close" in panel.columns else "close"
    by = {"partition_by": SYMBOL, "order_by": DATE}
    frame = panel.sort(SYMBOL, DATE).with_row_index("_i")
    n = pl.int_range(1, pl.len() + 1).over(SYMBOL, order_by=DATE)
    same = pl.col("close") == pl.col("close").shift(1).over(**by)
    run_id = (~same).fill_null(True).cum_sum().over(**by)
    checks: list[tuple[str, pl.Expr, pl.Expr]] = [
        (
            "history",
            pl.col("_n") <= rules.min_history,
            pl.format("history: {} of {} days", "_n", pl.lit(rules.min_history)),
        ),
        (
            "price",
            pl.col(price) < (rules.min_price if rules.min_price is not None else -1.0),
            pl.format("price: {} below {}", pl.col(price).round(4), pl.lit(rules.min_price)),
        ),
        (
            "stale",
            pl.col("_run") >= rules.stale_run,
            pl.format("stale: close {} unchanged for {} days", "close", "_run"),
        ),
    ]
    columns = {"_n": n, "_run": pl.int_range(1, pl.len() + 1).over(SYMBOL, run_id)}
    dollar = _dollar_volume(panel)
    if dollar is not None:
        columns["_dv"] = dollar.rolling_median(
            rules.volume_window, min_samples=max(1, rules.volume_window // 2)
        ).over(**by)
        checks.append(
            (
                "dollar volume",
                pl.col("_dv") < rules.min_dollar_volume,
                pl.format(
                    "dollar volume: median {} over {} days below {}",
                    pl.col("_dv").round(0),
                    pl.lit(rules.volume_window),
                    pl.lit(rules.min_dollar_volume),
                ),
            )
        )
    frame = frame.with_columns(**columns)
    frame = _open_findings(frame, findings, rules)
    checks.append(("open finding", pl.col("_finding").is_not_null(), pl.col("_finding")))
    stale_days = market_stale_days(panel, rules.stale_day_share)
    frame = frame.join(stale_days, on=DATE, how="left")
    checks.append(
        (
            "market-wide stale day",
            pl.col("unchanged").is_not_null(),
            pl.format("market-wide stale day: {} of {} closes unchanged", "unchanged", "compared"),
        )
    )
    failed = [pl.when(test.fill_null(False)).then(pl.lit(name)) for name, test, _ in checks]
    details = [pl.when(test.fill_null(False)).then(text) for _, test, text in checks]
    return (
        frame.with_columns(
            rule=pl.concat_str(failed, separator="; ", ignore_nulls=True),
            reason=pl.concat_str(details, separator="; ", ignore_nulls=True),
        )
        .with_columns(pl.col("rule", "reason").replace("", None))
        .sort("_i")
        .select(SYMBOL, DATE, eligible=pl.col("rule").is_null(), rule="rule", reason="reason")
        .cast(SCREEN_SCHEMA)
    )


def _dollar_volume(panel: pl.DataFrame) -> pl.Expr | None:
    """Traded dollar volume: the panel's own (``dollar_volume``: raw close x raw volume), else
    close x volume (the same on any consistent basis); None without volume."""
    if "dollar_volume" in panel.columns and panel["dollar_volume"].is_not_null().any():
        return pl.col("dollar_volume")
    if "volume" in panel.columns and panel["volume"].is_not_null().any():
        return pl.col("close") * pl.col("volume")
    return None


def _open_findings(frame: pl.DataFrame, findings: pl.DataFrame, rules: ScreenRules):
    """``_finding``: the last blocking finding of the symbol within ``finding_days`` rows up to
    each row (its rule, date and detail), else null."""
    blocking = (
        findings.filter(pl.col("rule").is_in(list(rules.blocking_findings)))
        .drop_nulls(SYMBOL)
        .group_by(SYMBOL, DATE)
        .agg(
            pl.format("open finding: {} on {} ({})", "rule", DATE, "detail")
            .sort()
            .str.join("; ")
            .alias("_text")
        )
    )
    by = {"partition_by": SYMBOL, "order_by": DATE}
    return (
        frame.join(blocking, on=[SYMBOL, DATE], how="left")
        .with_columns(
            _at=pl.when(pl.col("_text").is_not_null()).then(pl.col("_n")),
        )
        .with_columns(
            _last=pl.col("_at").forward_fill().over(**by),
            _what=pl.col("_text").forward_fill().over(**by),
        )
        .with_columns(
            _finding=pl.when(pl.col("_n") - pl.col("_last") < rules.finding_days).then("_what")
        )
        .drop("_text", "_at", "_last", "_what")
    )


def investable(panel: pl.DataFrame, universe: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``panel`` the screen lets in (rows the screen has not judged are kept)."""
    out = universe.filter(~pl.col("eligible")).select(SYMBOL, DATE)
    return panel.join(out, on=[SYMBOL, DATE], how="anti")


def without_stale_days(panel: pl.DataFrame, universe: pl.DataFrame) -> pl.DataFrame:
    """``panel`` without the market-wide stale days the screen found (every symbol's row)."""
    days = universe.filter(pl.col("rule").str.contains("market-wide stale day")).select(DATE)
    return panel.join(days.unique(), on=DATE, how="anti")


def screen_weights(weights: pl.DataFrame, universe: pl.DataFrame) -> pl.DataFrame:
    """Target weights ``[date, symbol, weight, ...]`` with the names the screen excludes on
    each target date dropped, and the rest of each side scaled back to the side's gross (a
    long book stays fully invested, a long-short book keeps its long and short exposure).
    Targets on dates the screen has not judged are kept as they are."""
    excluded = universe.filter(~pl.col("eligible")).select(SYMBOL, DATE, _out=pl.lit(True))
    side = pl.col("weight").sign()
    keys = [c for c in weights.columns if c not in (SYMBOL, "weight")]
    marked = weights.join(excluded, on=[SYMBOL, DATE], how="left").with_columns(
        _side=side, _out=pl.col("_out").fill_null(False)
    )
    gross = pl.col("weight").abs().sum().over(*keys, "_side")
    kept = pl.col("weight").abs().filter(~pl.col("_out")).sum().over(*keys, "_side")
    return (
        marked.with_columns(_scale=gross / kept)
        .filter(~pl.col("_out"))
        .with_columns(pl.col("weight") * pl.col("_scale").fill_nan(1.0))
        .select(weights.columns)
    )


def excluded_symbols(universe: pl.DataFrame) -> pl.DataFrame:
    """One row per symbol the screen ever excludes beyond its first ``history`` days, most
    excluded first: ``[symbol, excluded_days, share, rules, first_excluded, last_excluded,
    example]`` (``rules`` the rules and their day counts, ``example`` the first reason)."""
    out = universe.filter(~pl.col("eligible") & (pl.col("rule") != "history"))
    days = universe.group_by(SYMBOL).agg(total=pl.len())
    per_rule = (
        out.with_columns(pl.col("rule").str.split("; "))
        .explode("rule")
        .filter(pl.col("rule") != "history")
        .group_by(SYMBOL, "rule")
        .len()
        .sort("len", descending=True)
        .group_by(SYMBOL, maintain_order=True)
        .agg(rules=pl.format("{} ({} days)", "rule", "len").str.join(", "))
    )
    return (
        out.sort(DATE)
        .group_by(SYMBOL)
        .agg(
            excluded_days=pl.len(),
            first_excluded=pl.col(DATE).first(),
            last_excluded=pl.col(DATE).last(),
            example=pl.col("reason").first(),
        )
        .join(days, on=SYMBOL)
        .join(per_rule, on=SYMBOL, how="left")
        .select(
            SYMBOL,
            "excluded_days",
            share=(pl.col("excluded_days") / pl.col("total")).round(4),
            rules="rules",
            first_excluded="first_excluded",
            last_excluded="last_excluded",
            example="example",
        )
        .sort("excluded_days", SYMBOL, descending=[True, False])
    )
