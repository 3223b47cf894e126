"""Feature sets and the feature matrix: time-series features, alternative data joined
point-in-time, market-relative features, then cross-sectional transforms."""

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import polars.selectors as cs

import models.features.alpha158  # noqa: F401  (registers the Alpha158 features)
from models.features.alpha158 import ALPHA158
from models.features.alternative import join_alt_features
from models.features.registry import FeatureSpec
from models.features.technical import (
    MARKET_RET,
    compute,
    cross_sectional_ranks,
    cross_sectional_zscores,
    default_technical,
    spec,
)
from models.features.technical import sector_neutral as sector_neutral_features
from models.types import KEYS

FEATURE_SETS = ("minimal", "default", "alpha158", "all", "custom")
RANKED = ("ret_5", "ret_20", "ret_60", "vol_20")
EXTENDED = ("macd", "macd_signal", "boll_20", "atr_14", "volz_20", "dollar_vol_20")


def feature_names(
    feature_set: str, windows: Sequence[int] = (5, 20, 60), names: Sequence[str] = ()
) -> list[str]:
    """The time-series feature names of a set (before checking which inputs the data has)."""
    longest = max(windows)
    if feature_set == "minimal":
        return ["ret_1", *(f"{f}_{w}" for w in windows for f in ("ret", "vol"))]
    if feature_set == "default":
        return [*default_technical(windows), f"beta_{longest}", f"corr_{longest}"]
    if feature_set == "alpha158":
        return list(ALPHA158)
    if feature_set == "all":
        base = feature_names("default", windows)
        extra = [*ALPHA158, *EXTENDED, f"kurt_{longest}", f"resid_vol_{longest}"]
        return base + [n for n in extra if n not in base]
    if feature_set == "custom":
        if not names:
            raise ValueError("the custom feature set needs a list of feature names")
        return list(dict.fromkeys(names))
    raise ValueError(f"unknown feature set {feature_set!r}; known: {FEATURE_SETS}")


@dataclass(frozen=True)
class FeaturePlan:
    """Which requested features run on prices, which after the market join, which cannot run."""

    on_prices: list[FeatureSpec]
    on_market: list[FeatureSpec]
    skipped: dict[str, tuple[str, ...]]  # name -> missing inputs


def plan(requested: Sequence[str], price_columns: Sequence[str], has_market: bool) -> FeaturePlan:
    """Split features by the inputs they need; a feature whose inputs the data lacks is skipped
    (e.g. Alpha158's candle features on close-only data), and said so."""
    prices = set(price_columns)
    after = prices | {"ret_1"} | ({MARKET_RET} if has_market else set())
    on_prices, on_market, skipped = [], [], {}
    for name in requested:
        s = spec(name)
        if s.available(prices):
            on_prices.append(s)
        elif s.available(after):
            on_market.append(s)
        else:
            skipped[name] = tuple(sorted(set(s.inputs) - after))
    if on_market and not any(s.name == "ret_1" for s in on_prices):
        on_prices.insert(0, spec("ret_1"))
    return FeaturePlan(on_prices, on_market, skipped)


def build_feature_matrix(
    prices: pl.LazyFrame,
    alt: pl.LazyFrame,
    windows: Sequence[int] = (5, 20, 60),
    *,
    feature_set: str = "default",
    names: Sequence[str] = (),
    cs_rank: Sequence[str] = RANKED,
    cs_zscore: Sequence[str] = (),
    winsorize: float | None = None,
    sectors: pl.LazyFrame | None = None,
    sector_neutral: Sequence[str] = (),
    dtype: str = "float64",
) -> pl.LazyFrame:
    """Feature matrix ``[symbol, date, <features>]`` from prices and alternative data.

    Non-finite values (a zero range, a zero loss in RSI) become null so that every model sees
    one missing-value convention. ``dtype="float32"`` casts the float features in the same
    pass, before the final sort, so the float64 matrix is never sorted or held twice; a finite
    value beyond float32's range then reads inf (find such columns with ``is_infinite`` and
    build them again in float64: ``assets/features.py`` does).
    """
    columns = prices.collect_schema().names()
    panel = prices.select(
        *KEYS, *[c for c in ("open", "high", "low", "close", "volume", "vwap") if c in columns]
    )
    alt_panel = join_alt_features(panel.select(KEYS), alt)
    has_market = MARKET_RET in alt_panel.collect_schema().names()
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    p = plan(feature_names(feature_set, windows, names), columns, has_market)
    # float32: each batch narrows its outputs as it finishes, but for the columns later stages
    # read (the market-relative features' inputs, the cross-sectional transforms' sources),
    # which stay float64 until the final pass so every value is the float64 one rounded
    later = {i for s in p.on_market for i in s.inputs} | {*cs_rank, *cs_zscore, *sector_neutral}
    narrow = {s.name for s in [*p.on_prices, *p.on_market]} - later if dtype == "float32" else ()
    out = compute(panel, p.on_prices, narrow).join(alt_panel, on=KEYS, how="left")
    if p.on_market:
        out = compute(out, p.on_market, narrow)
    raw = [c for c in panel.collect_schema().names() if c not in KEYS]
    out = out.drop(raw)
    present = set(out.collect_schema().names())
    out = cross_sectional_ranks(out, [c for c in cs_rank if c in present])
    out = cross_sectional_zscores(out, [c for c in cs_zscore if c in present], winsorize)
    if sectors is not None and sector_neutral:
        out = sector_neutral_features(out, sectors, [c for c in sector_neutral if c in present])
    # the float64 columns left: non-finite values null, then the dtype (the narrowed ones had
    # both in their batch)
    wide = cs.by_dtype(pl.Float64)
    finite = pl.when(wide.is_finite()).then(wide).otherwise(None)
    cast = pl.Float32 if dtype == "float32" else pl.Float64
    return out.with_columns(finite.cast(cast).name.keep()).sort(KEYS)


def feature_columns(frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """Names of the feature columns (everything but the keys)."""
    return [c for c in frame.collect_schema().names() if c not in KEYS]
