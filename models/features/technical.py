"""Per-asset technical features (parametric families ``<family>_<window>``) and the engine that
computes any list of registered features on the panel."""

import re
from collections.abc import Collection, Sequence

import polars as pl

from models.features.registry import EPS, REGISTRY, FeatureSpec, register
from models.types import DATE, KEYS, SYMBOL

C, H, L, V = (pl.col(c) for c in ("close", "high", "low", "volume"))
POS = pl.col("_pos")
LOG_RET = C.log().diff()
MARKET_RET = "SP500_ret_1"


def _family(name: str, w: int) -> tuple[str, tuple[str, ...], pl.Expr, int]:
    """(description, inputs, expression, lookback) of ``<name>_<w>``."""
    low, high = C.rolling_min(w), C.rolling_max(w)
    mkt = pl.col(MARKET_RET)
    r = pl.col("ret_1")
    families = {
        "ret": (f"simple return over {w} days", ("close",), C / C.shift(w) - 1, w),
        "vol": (
            f"std of daily log returns over {w} days",
            ("close",),
            LOG_RET.rolling_std(w),
            w,
        ),
        "ma_gap": (
            f"close / {w}-day mean close - 1",
            ("close",),
            C / C.rolling_mean(w) - 1,
            w - 1,
        ),
        "drawdown": (f"close / {w}-day max close - 1", ("close",), C / high - 1, w - 1),
        "range_pos": (
            f"close within its {w}-day min-max range",
            ("close",),
            (C - low) / (high - low),
            w - 1,
        ),
        "skew": (
            f"skewness of daily log returns over {w} days",
            ("close",),
            LOG_RET.rolling_skew(w, bias=False),
            w,
        ),
        "kurt": (
            f"excess kurtosis of daily log returns over {w} days",
            ("close",),
            LOG_RET.rolling_kurtosis(w, bias=False),
            w,
        ),
        "rsi": (f"relative strength index over {w} days", ("close",), _rsi(w), w),
        "boll": (
            f"(close - {w}-day mean) / (2 x {w}-day std): Bollinger position",
            ("close",),
            (C - C.rolling_mean(w)) / (2 * C.rolling_std(w)),
            w - 1,
        ),
        "atr": (
            f"{w}-day average true range / close",
            ("high", "low", "close"),
            _true_range().rolling_mean(w) / C,
            w,
        ),
        "volz": (
            f"volume z-score against the last {w} days",
            ("volume",),
            (V - V.rolling_mean(w)) / V.rolling_std(w),
            w - 1,
        ),
        "dollar_vol": (
            f"log of mean dollar volume over {w} days",
            ("close", "volume"),
            (C * V).rolling_mean(w).log(),
            w - 1,
        ),
        "beta": (
            f"beta of daily returns to the S&P 500 over {w} days",
            ("ret_1", MARKET_RET),
            pl.rolling_cov(r, mkt, window_size=w) / mkt.rolling_var(w),
            w,
        ),
        "corr": (
            f"correlation of daily returns with the S&P 500 over {w} days",
            ("ret_1", MARKET_RET),
            pl.rolling_corr(r, mkt, window_size=w),
            w,
        ),
        "resid_vol": (
            f"residual volatility after the S&P 500 beta over {w} days",
            ("ret_1", MARKET_RET),
            (r.rolling_var(w) * (1 - pl.rolling_corr(r, mkt, window_size=w) ** 2)).sqrt(),
            w,
        ),
    }
    if name not in families:
        raise KeyError(name)
    return families[name]


FAMILY = re.compile(
    r"^(ret|vol|ma_gap|drawdown|range_pos|skew|kurt|rsi|boll|atr|volz|dollar_vol|beta|corr|resid_vol)_(\d+)$"
)


def _rsi(window: int) -> pl.Expr:
    change = C.diff()
    gain = change.clip(lower_bound=0).rolling_mean(window)
    loss = (-change).clip(lower_bound=0).rolling_mean(window)
    return 100 - 100 / (1 + gain / loss)


def _macd() -> pl.Expr:
    return C.ewm_mean(span=12, adjust=False) - C.ewm_mean(span=26, adjust=False)


def _true_range() -> pl.Expr:
    prev = C.shift(1)
    return pl.max_horizontal(H - L, (H - prev).abs(), (L - prev).abs())


register(
    "ret_1", "daily log return", ("close",), lambda: LOG_RET, family="returns", window=1, lookback=1
)
register(
    "macd",
    "MACD: (12-day EMA - 26-day EMA) of close / close",
    ("close",),
    lambda: _macd() / C,
    family="trend",
    window=26,
    lookback=25,
)
register(
    "macd_signal",
    "MACD minus its 9-day EMA (the histogram) / close",
    ("close",),
    lambda: (_macd() - _macd().ewm_mean(span=9, adjust=False)) / C,
    family="trend",
    window=34,
    lookback=33,
)


def spec(name: str) -> FeatureSpec:
    """A registered feature, or a parametric family member such as ``vol_45`` created on demand."""
    if name in REGISTRY:
        return REGISTRY[name]
    match = FAMILY.match(name)
    if not match:
        raise KeyError(name)
    family, w = match.group(1), int(match.group(2))
    if w < 2:
        raise KeyError(name)
    text, inputs, expr, lookback = _family(family, w)
    register(name, text, inputs, lambda e=expr: e, family=family, window=w, lookback=lookback)
    return REGISTRY[name]


# Collect feature plans with this engine: one group-by per window joined side by side runs 1.4x
# faster on polars' in-memory engine than on the streaming engine, polars 2's default (Alpha158
# on the shared S&P 500 set, 2 cores: 6.0 s at 5.0 GB peak against 8.4 s at 4.1 GB).
ENGINE = "in-memory"


def compute(
    panel: pl.LazyFrame, specs: Sequence[FeatureSpec], narrow: Collection[str] = ()
) -> pl.LazyFrame:
    """Add every feature in ``specs`` to the panel; those named in ``narrow`` leave their batch
    as float32 (non-finite values null first, so an inf there is a finite value beyond
    float32's range), which frees each batch's float64 columns as soon as it is done.

    Features run in batches, one per window length: a batch's per-symbol work (features and
    shared parts with floating-point running state) is one group-by pass in which each symbol's
    history is computed on its own, so no rolling state, not even rounding, carries from one
    symbol into the next; its ``on_panel`` features then run on the whole sorted panel (see
    ``models/features/registry.py``). A row with fewer than ``lookback`` earlier rows of its
    symbol is null. The batches are lazy plans joined side by side: polars runs them in
    parallel, and a batch's parts are freed with it (Alpha158 on 2.4 M rows: 4.9 GiB peak, the
    157 output columns alone 3 GiB).
    """
    helpers = {name: build for s in specs for name, build in s.helpers}
    base = panel.sort(KEYS).with_columns(pl.int_range(pl.len()).over(SYMBOL).alias("_pos"))
    for name, build in helpers.items():  # in order: a helper may use an earlier one
        base = base.with_columns(build().alias(name))
    windows: dict[int, list[FeatureSpec]] = {}
    for s in specs:
        windows.setdefault(s.window, []).append(s)
    batches = [_batch(base, windows[w], narrow) for w in sorted(windows)]
    columns = [c for c in panel.collect_schema().names() if c not in {s.name for s in specs}]
    return pl.concat([base.drop("_pos", *helpers), *batches], how="horizontal").select(
        *columns, *(s.name for s in specs)
    )


def _masked(s: FeatureSpec) -> pl.Expr:
    return pl.when(POS >= s.lookback).then(s.build()).alias(s.name)


def _batch(
    base: pl.LazyFrame, specs: list[FeatureSpec], narrow: Collection[str] = ()
) -> pl.LazyFrame:
    """The columns of ``specs`` (one window's features), in the panel's row order."""
    parts = {p.name: p for s in specs for p in s.parts}
    grouped = [p.build().alias(p.name) for p in parts.values() if p.per_symbol]
    grouped += [_masked(s) for s in specs if not s.on_panel]
    frame = base
    if grouped:
        per_symbol = (
            base.group_by(SYMBOL, maintain_order=True)  # sorted input: groups come out in row order
            .agg(grouped)
            .explode(pl.exclude(SYMBOL))
            .drop(SYMBOL)
        )
        frame = pl.concat([base, per_symbol], how="horizontal")
    on_panel = [p.build().alias(p.name) for p in parts.values() if not p.per_symbol]
    if on_panel:
        frame = frame.with_columns(on_panel)
    return frame.with_columns(_masked(s) for s in specs if s.on_panel).select(
        _narrowed(s.name) if s.name in narrow else pl.col(s.name) for s in specs
    )


def _narrowed(name: str) -> pl.Expr:
    column = pl.col(name)
    return pl.when(column.is_finite()).then(column).otherwise(None).cast(pl.Float32)


def price_features(prices: pl.LazyFrame, windows: Sequence[int] = (5, 20, 60)) -> pl.LazyFrame:
    """The default technical set on ``[symbol, date, close, ...]``."""
    return compute(prices, [spec(n) for n in default_technical(windows)])


def default_technical(windows: Sequence[int]) -> list[str]:
    names = ["ret_1", "rsi_14"]
    for w in windows:
        names += [f"ret_{w}", f"vol_{w}", f"ma_gap_{w}", f"drawdown_{w}", f"range_pos_{w}"]
    return [*names, f"skew_{max(windows)}"]


def cross_sectional_ranks(panel: pl.LazyFrame, columns: Sequence[str]) -> pl.LazyFrame:
    """Add ``<col>_csrank``: each column's rank across symbols on the same date, scaled to (0, 1]."""
    return panel.with_columns(
        (pl.col(c).rank() / pl.col(c).count()).over(DATE).alias(f"{c}_csrank") for c in columns
    )


def cross_sectional_zscores(
    panel: pl.LazyFrame, columns: Sequence[str], winsorize: float | None = None
) -> pl.LazyFrame:
    """Add ``<col>_cszscore``: the column standardised across symbols per date, optionally
    clipped first at the per-date ``winsorize`` and ``1 - winsorize`` quantiles."""
    exprs = []
    for c in columns:
        x = pl.col(c)
        if winsorize:
            x = x.clip(x.quantile(winsorize).over(DATE), x.quantile(1 - winsorize).over(DATE))
        exprs.append(
            ((x - x.mean().over(DATE)) / (x.std().over(DATE) + EPS)).alias(f"{c}_cszscore")
        )
    return panel.with_columns(exprs)


def sector_neutral(
    panel: pl.LazyFrame, sectors: pl.LazyFrame, columns: Sequence[str]
) -> pl.LazyFrame:
    """Add ``<col>_secneutral``: the column minus its sector's mean on the same date.

    ``sectors`` is ``[symbol, sector]``; symbols without a sector form their own group.
    """
    joined = panel.join(sectors.select(SYMBOL, "sector"), on=SYMBOL, how="left").with_columns(
        pl.col("sector").fill_null("(none)")
    )
    return joined.with_columns(
        (pl.col(c) - pl.col(c).mean().over(DATE, "sector")).alias(f"{c}_secneutral")
        for c in columns
    ).drop("sector")
