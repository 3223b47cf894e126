"""The feature library on real OHLCV data (arch's S&P 500 and NASDAQ index files, offline):
golden values against independent pandas references, no window across symbols, no look-ahead."""

from datetime import date

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from benchmarks.reference import alpha158_pandas
from models.features import REGISTRY, build_feature_matrix, compute, feature_names, plan, spec
from models.features.alpha158 import ALPHA158
from models.features.registry import register
from models.learning.labels import excess_returns, forward_returns, triple_barrier

CUTS = (date(2003, 3, 14), date(2008, 10, 1), date(2015, 6, 30))


@pytest.fixture(scope="module")
def ohlcv(index_ohlcv) -> pl.DataFrame:
    return index_ohlcv.filter(pl.col("date") >= date(2000, 1, 1))


@pytest.fixture(scope="module")
def market(ohlcv) -> pl.DataFrame:
    """An S&P 500 series for the market-relative features, in the alternative-data layout."""
    spx = ohlcv.filter(pl.col("symbol") == "SPX")
    return spx.select(
        series=pl.lit("SP500"),
        kind=pl.lit("price"),
        date="date",
        available_date="date",
        value="close",
    )


def _compare(ours: pl.DataFrame, ref: pl.DataFrame, names, rtol=1e-6):
    bad = {}
    for n in names:
        a = ours[n].cast(pl.Float64).fill_nan(None).to_numpy()
        b = ref[n].cast(pl.Float64).fill_nan(None).to_numpy()
        a, b = np.where(np.isfinite(a), a, np.nan), np.where(np.isfinite(b), b, np.nan)
        both = ~np.isnan(a) & ~np.isnan(b)
        err = (
            float(np.max(np.abs(a[both] - b[both]) / (np.abs(b[both]) + 1e-8)))
            if both.any()
            else 0.0
        )
        if (np.isnan(a) != np.isnan(b)).any() or err > rtol:
            bad[n] = (int((np.isnan(a) != np.isnan(b)).sum()), err)
    assert not bad, bad


def test_alpha158_matches_the_pandas_reference(ohlcv):
    names = [n for n in ALPHA158 if spec(n).available(ohlcv.columns)]
    assert len(names) == 157  # no vwap column: VWAP0 is left out, and said so by plan()
    ours = compute(ohlcv.lazy(), [spec(n) for n in names]).collect().sort("symbol", "date")
    ref = pl.from_pandas(alpha158_pandas(ohlcv.to_pandas())).sort("symbol", "date")
    _compare(ours, ref, names)


def _technical_reference(df: pd.DataFrame, w: int) -> pd.DataFrame:
    """Straightforward pandas for the technical families, one symbol at a time."""
    out = {}
    for sym, g in df.sort_values(["symbol", "date"]).groupby("symbol", sort=False):
        c, h, l, v, m = g["close"], g["high"], g["low"], g["volume"], g["mkt"]  # noqa: E741
        r = np.log(c).diff()
        mr = np.log(m).diff()
        tr = pd.concat([h - l, (h - c.shift()).abs(), (l - c.shift()).abs()], axis=1).max(
            axis=1, skipna=False
        )
        gain, loss = (
            c.diff().clip(lower=0).rolling(14).mean(),
            (-c.diff()).clip(lower=0).rolling(14).mean(),
        )
        ema = lambda s, n: s.ewm(span=n, adjust=False).mean()  # noqa: E731
        macd = ema(c, 12) - ema(c, 26)
        out[sym] = pd.DataFrame(
            {
                "symbol": sym,
                "date": g["date"],
                f"ret_{w}": c / c.shift(w) - 1,
                f"vol_{w}": r.rolling(w).std(),
                f"ma_gap_{w}": c / c.rolling(w).mean() - 1,
                f"drawdown_{w}": c / c.rolling(w).max() - 1,
                f"range_pos_{w}": (c - c.rolling(w).min())
                / (c.rolling(w).max() - c.rolling(w).min()),
                f"skew_{w}": r.rolling(w).skew(),
                f"kurt_{w}": r.rolling(w).kurt(),
                "rsi_14": 100 - 100 / (1 + gain / loss),
                f"boll_{w}": (c - c.rolling(w).mean()) / (2 * c.rolling(w).std()),
                f"atr_{w}": tr.rolling(w).mean() / c,
                f"volz_{w}": (v - v.rolling(w).mean()) / v.rolling(w).std(),
                f"dollar_vol_{w}": np.log((c * v).rolling(w).mean()),
                f"beta_{w}": r.rolling(w).cov(mr) / mr.rolling(w).var(),
                f"corr_{w}": r.rolling(w).corr(mr),
                f"resid_vol_{w}": np.sqrt(r.rolling(w).var() * (1 - r.rolling(w).corr(mr) ** 2)),
                # the EMAs need a warm-up: undefined before their longest span, as in ours
                "macd": (macd / c).where(np.arange(len(g)) >= 25),
                "macd_signal": ((macd - ema(macd, 9)) / c).where(np.arange(len(g)) >= 33),
            }
        )
    return pd.concat(out.values()).replace([np.inf, -np.inf], np.nan)


@pytest.mark.parametrize("w", [10, 30])
def test_technical_families_match_pandas(ohlcv, w):
    mkt = ohlcv.filter(pl.col("symbol") == "SPX").select("date", mkt="close")
    panel = ohlcv.join(mkt, on="date")
    ref = pl.from_pandas(_technical_reference(panel.to_pandas(), w)).sort("symbol", "date")
    price_names = [
        f"ret_{w}",
        f"vol_{w}",
        f"ma_gap_{w}",
        f"drawdown_{w}",
        f"range_pos_{w}",
        f"skew_{w}",
        "rsi_14",
        f"boll_{w}",
        f"atr_{w}",
        f"volz_{w}",
        f"dollar_vol_{w}",
        "macd",
        "macd_signal",
    ]
    market_names = [f"beta_{w}", f"corr_{w}", f"resid_vol_{w}"]
    ours = compute(
        panel.with_columns(SP500_ret_1=pl.col("mkt").log().diff().over("symbol")).lazy(),
        [spec("ret_1"), *(spec(n) for n in price_names)],
    ).collect()
    ours = compute(ours.lazy(), [spec(n) for n in market_names]).collect().sort("symbol", "date")
    # polars' rolling kurtosis is the population estimate, pandas' the unbiased one: compare skew only
    _compare(ours, ref, price_names, rtol=1e-5)
    # against the market itself the residual is ~0 and its sign noise: compare the other index
    ndx = pl.col("symbol") == "NDX"
    _compare(ours.filter(ndx), ref.filter(ndx), market_names, rtol=1e-5)
    k_ours = (
        compute(panel.lazy(), [spec(f"kurt_{w}")])
        .collect()
        .sort("symbol", "date")[f"kurt_{w}"]
        .drop_nulls()
    )
    assert k_ours.len() > 0 and k_ours.is_finite().all()


ALL_TS = [n for n in feature_names("all", (5, 20, 60))]


def test_no_feature_window_crosses_into_another_symbol(ohlcv, market):
    p = plan(ALL_TS, ohlcv.columns, True)
    specs = p.on_prices
    together = compute(ohlcv.lazy(), specs).collect()
    alone = pl.concat(
        compute(part.lazy(), specs).collect()
        for _, part in ohlcv.group_by("symbol", maintain_order=True)
    )
    assert_frame_equal(together.sort("symbol", "date"), alone.sort("symbol", "date"))
    assert len(specs) > 170


def _perturb_after(frame: pl.DataFrame, cut: date, key: str, columns, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    noise = pl.Series(rng.uniform(0.5, 1.5, len(frame)))
    late = pl.col(key) > cut
    return frame.with_columns(
        pl.when(late).then(pl.col(c) * noise).otherwise(pl.col(c)).alias(c) for c in columns
    )


def leaks(build, prices: pl.DataFrame, alt: pl.DataFrame, cuts=CUTS) -> set[str]:
    """Columns whose values dated on or before a cut change when everything after it changes."""
    base = build(prices, alt)
    bad = set()
    for i, cut in enumerate(cuts):
        p = _perturb_after(prices, cut, "date", ["open", "high", "low", "close", "volume"], i)
        a = _perturb_after(alt, cut, "available_date", ["value"], 100 + i)
        changed = build(p, a)
        left = base.filter(pl.col("date") <= cut).sort("symbol", "date")
        right = changed.filter(pl.col("date") <= cut).sort("symbol", "date")
        for c in left.columns[2:]:
            if not left[c].equals(right[c], check_names=False):
                bad.add(c)
    return bad


def _matrix(prices, alt):
    return build_feature_matrix(
        prices.lazy(),
        alt.lazy(),
        (5, 20, 60),
        feature_set="all",
        cs_zscore=["ret_5", "KMID"],
        winsorize=0.05,
    ).collect()


def test_no_feature_sees_the_future(ohlcv, market):
    from pipelines.sources import BundledAltSource

    alt = pl.concat(
        [market, BundledAltSource().load_alt_data().filter(pl.col("series") != "SP500")]
    )
    assert leaks(_matrix, ohlcv, alt) == set()
    assert _matrix(ohlcv, alt).width >= 220


def test_a_leaky_feature_is_caught(ohlcv, market):
    register(
        "LEAK",
        "tomorrow's close / close (deliberately leaky)",
        ("close",),
        lambda: pl.col("close").shift(-1) / pl.col("close"),
        family="test",
    )
    try:

        def build(p, a):
            return build_feature_matrix(
                p.lazy(), a.lazy(), feature_set="custom", names=["ret_5", "LEAK"]
            ).collect()  # noqa: E731

        assert leaks(build, ohlcv, market) == {"LEAK"}
    finally:
        del REGISTRY["LEAK"]


@pytest.mark.parametrize("kind", ["forward", "excess", "triple_barrier"])
def test_labels_change_only_within_their_horizon(ohlcv, market, kind):
    bench = market.select("date", close="value")

    def build(p):
        if kind == "forward":
            return forward_returns(p.lazy(), 5).collect()
        if kind == "excess":
            return excess_returns(p.lazy(), bench.lazy(), 5).collect()
        return triple_barrier(p.lazy(), 5, 1.0, 20).collect()

    base = build(ohlcv)
    for i, cut in enumerate(CUTS):
        changed = build(_perturb_after(ohlcv, cut, "date", ["close"], i)).sort("symbol", "date")
        settled = base.filter(pl.col("label_end") <= cut).sort("symbol", "date")
        # every label whose horizon ended by the cut is unchanged, exactly
        assert_frame_equal(
            settled,
            changed.join(settled.select("symbol", "date"), on=["symbol", "date"]).sort(
                "symbol", "date"
            ),
            check_exact=True,
        )
        open_rows = base.filter((pl.col("date") <= cut) & (pl.col("label_end") > cut))
        assert open_rows.height > 0  # those may change: their horizon reaches past the cut
        days = (base["label_end"] - base["date"]).dt.total_days()
        assert ((days > 0) & (days <= 14)).all()


def test_triple_barrier_by_hand():
    closes = [100, 100, 100, 100, 100, 100, 104, 90, 100, 100, 95, 100, 100, 100]
    dates = pl.date_range(date(2020, 1, 1), date(2020, 1, len(closes)), eager=True)
    prices = pl.DataFrame({"symbol": "A", "date": dates, "close": [float(c) for c in closes]})
    out = triple_barrier(prices.lazy(), horizon=3, barrier_k=1.0, vol_window=3).collect()
    row = out.filter(pl.col("date") == date(2020, 1, 6)).row(0, named=True)
    # from 100 on day 6: vol of the 3 returns before is 0 -> barriers at 0, first move up (104) wins
    assert row["label"] == 1.0 and row["label_end"] == date(2020, 1, 7)


def test_alpha158_on_close_only_data_skips_and_names_what_it_cannot_compute():
    p = plan(ALPHA158, ["symbol", "date", "close"], has_market=False)
    assert "KMID" in p.skipped and p.skipped["KMID"] == ("high", "low", "open")
    assert {s.name for s in p.on_prices} >= {"ROC5", "MA60", "RANK20", "SUMD30", "BETA10"}
    assert not any(s.name.startswith(("VMA", "CORR", "IMAX")) for s in p.on_prices)


def test_cross_sectional_transforms(ohlcv, market):
    frame = (
        build_feature_matrix(
            ohlcv.lazy(),
            market.lazy(),
            feature_set="minimal",
            cs_rank=[],
            cs_zscore=["ret_5"],
            winsorize=0.25,
            sectors=pl.LazyFrame({"symbol": ["SPX", "NDX"], "sector": ["broad", "broad"]}),
            sector_neutral=["ret_20"],
        )
        .collect()
        .drop_nulls(["ret_5", "ret_20"])
    )
    day = frame.filter(pl.col("date") == date(2010, 6, 1))
    # two names in one sector: demeaned values are opposite, z-scores are -/+ 1/sqrt(2) * sqrt(2)
    assert day["ret_20_secneutral"].sum() == pytest.approx(0.0, abs=1e-12)
    assert day["ret_20_secneutral"][0] == pytest.approx(day["ret_20"][0] - day["ret_20"].mean())
    np.testing.assert_allclose(
        np.sort(day["ret_5_cszscore"].to_numpy()), [-1 / np.sqrt(2), 1 / np.sqrt(2)], rtol=1e-6
    )


def test_sector_neutral_keeps_sectors_apart():
    from models.features import sector_neutral

    panel = pl.LazyFrame(
        {
            "symbol": ["A", "B", "C", "D"],
            "date": [date(2020, 1, 2)] * 4,
            "x": [1.0, 3.0, 10.0, 20.0],
        }
    )
    sectors = pl.LazyFrame({"symbol": ["A", "B", "C"], "sector": ["tech", "tech", "energy"]})
    out = sector_neutral(panel, sectors, ["x"]).collect().sort("symbol")
    assert out["x_secneutral"].to_list() == [-1.0, 1.0, 0.0, 0.0]  # D has no sector: its own group


def test_feature_code_has_no_row_or_symbol_loops():
    """Acceptance: the polars feature code runs as expressions on the whole panel, never a
    Python call per row or per symbol. ``statistical.py`` is the one exception on purpose: it
    fits an ARMA/GARCH model per symbol (no library fits many series in one call)."""
    import ast
    from pathlib import Path

    import models.features as package

    banned = {"map_elements", "map_batches", "map_rows", "iter_rows", "rows", "partition_by"}
    banned |= {"apply", "to_numpy", "to_list", "rolling_map"}
    found = []
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        if path.name == "statistical.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in banned:
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not found, found
