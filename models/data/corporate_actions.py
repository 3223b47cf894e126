"""Corporate actions: back-adjust raw OHLCV for splits and dividends, or put it on the basis of a
vendor's adjusted close.

No library we use does this on a polars panel (yfinance and pandas-datareader take adjusted
prices from the vendor); the formula is the standard CRSP-style one and is checked against
AlphaVantage's own ``adjusted_close`` on real data in the tests. Finding splits a source forgot
to adjust is a data-quality rule: ``data_contracts.quality``.
"""

import polars as pl

PRICE_FIELDS = ("open", "high", "low", "close")


def adjust(panel: pl.DataFrame) -> pl.DataFrame:
    """Back-adjust prices and volume of a ``[symbol, date, close, ..., split, dividend]`` panel
    (sorted by symbol and date). On an event day ``t`` with split ``s`` (new shares per old,
    1 = none) and cash dividend ``d``, every earlier price is multiplied by
    ``(1 - d / close[t-1]) / s`` and every earlier volume by ``s``; the newest prices are left
    as traded. ``split`` and ``dividend`` are dropped."""
    split = pl.col("split").fill_null(1.0) if "split" in panel.columns else pl.lit(1.0)
    dividend = pl.col("dividend").fill_null(0.0) if "dividend" in panel.columns else pl.lit(0.0)
    previous = pl.col("close").shift(1).over("symbol")
    # a dividend as large as the previous close (a junk print, a misplaced decimal) would turn
    # every earlier price negative: such a day adjusts for its split only
    cash = pl.when(dividend < previous).then(1 - dividend / previous).otherwise(1.0)
    event = cash.fill_null(1.0) / split
    later = event.shift(-1).over("symbol").fill_null(1.0)
    factor = later.cum_prod(reverse=True).over("symbol")
    share_factor = (
        split.shift(-1).over("symbol").fill_null(1.0).cum_prod(reverse=True).over("symbol")
    )
    prices = [pl.col(c) * pl.col("adj_factor") for c in PRICE_FIELDS if c in panel.columns]
    volume = [pl.col("volume") * share_factor] if "volume" in panel.columns else []
    return (
        panel.with_columns(adj_factor=factor)
        .with_columns(*prices, *volume)
        .drop("adj_factor", *[c for c in ("split", "dividend") if c in panel.columns])
    )


def reconcile(panel: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """Put every price of a ``[symbol, date, close, ...]`` panel on one adjusted basis; return
    it with ``raw_close`` (the close as the source gives it: as traded, where it gives an
    adjustment) and ``dollar_volume`` (raw close x raw volume, where volume exists), and a
    description of what was done.

    - ``split`` / ``dividend`` columns: :func:`adjust` (our own back-adjustment, which a new
      split in a daily delivery re-applies to all history); a vendor ``adj_close`` beside them
      only measures how far ours is from the vendor's (``vendor_gap_median``).
    - else ``adj_close`` (or a CRSP-style ``price_factor``, adjusted = raw / factor): the
      vendor's factor ``adj_close / close`` multiplies open, high and low, divides volume, and
      ``close`` becomes ``adj_close`` (Yahoo's Close is split-adjusted, its Adj Close adds
      dividends; Qlib's collectors apply the same factor). A row without an adjusted close
      takes its symbol's nearest factor (forward, then backward).
    - else the prices are taken as they are (``raw_close`` equals ``close``, e.g. the bundled
      closes, adjusted at the source).

    Dollar volume (``close * volume``) is the same on either basis."""
    cols = set(panel.columns)
    if "price_factor" in cols and "adj_close" not in cols:
        panel = panel.with_columns(adj_close=pl.col("close") / pl.col("price_factor"))
        cols.add("adj_close")
    info: dict = {"basis": "as given", "adjusted_for": []}
    raw = panel.with_columns(raw_close=pl.col("close"))
    if "volume" in cols:  # as traded: a split or a dividend changes neither
        raw = raw.with_columns(dollar_volume=pl.col("close") * pl.col("volume"))
    if {"split", "dividend"} & cols:
        adjusted_for = sorted({"split", "dividend"} & cols)
        out = adjust(raw)
        info = {"basis": "back-adjusted here (CRSP-style)", "adjusted_for": adjusted_for}
        if "adj_close" in cols:
            gap = ((out["close"] / out["adj_close"]) - 1).abs()
            info["vendor_gap_median"] = float(gap.median() or 0.0)
            info["vendor_gap_p99"] = float(gap.quantile(0.99) or 0.0)
        return out.drop([c for c in ("adj_close", "price_factor") if c in out.columns]), info
    if "adj_close" in cols:
        factor = (
            (pl.col("adj_close") / pl.col("close"))
            .fill_nan(None)
            .forward_fill()
            .backward_fill()
            .over("symbol", order_by="date")
            .fill_null(1.0)
        )
        prices = [pl.col(c) * pl.col("_factor") for c in ("open", "high", "low") if c in cols]
        volume = [pl.col("volume") / pl.col("_factor")] if "volume" in cols else []
        out = (
            raw.with_columns(_factor=factor)
            .with_columns(*prices, *volume, close=pl.col("close") * pl.col("_factor"))
            .drop("_factor", *[c for c in ("adj_close", "price_factor") if c in cols])
        )
        return out, {
            "basis": "vendor adj_close: open/high/low x adj_close/close",
            "adjusted_for": ["adj_close"],
        }
    return raw, info
