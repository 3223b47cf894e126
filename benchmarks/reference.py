"""An independent, straightforward pandas implementation of Alpha158 (groupby-rolling, as Qlib's
own operators and most user notebooks write it). It is the golden reference for
``tests/unit/test_alpha158.py`` and the speed reference for ``make bench``.
"""

import numpy as np
import pandas as pd

EPS = 1e-12
WINDOWS = (5, 10, 20, 30, 60)


def alpha158_pandas(df: pd.DataFrame, windows=WINDOWS) -> pd.DataFrame:
    """``df``: columns symbol, date, open, high, low, close, volume; returns one column per feature."""
    df = df.sort_values(["symbol", "date"]).reset_index(drop=True)
    o, h, l, c, v = (df[k] for k in ("open", "high", "low", "close", "volume"))  # noqa: E741
    g = df.groupby("symbol", sort=False)
    out: dict[str, pd.Series] = {"symbol": df["symbol"], "date": df["date"]}
    out["KMID"] = (c - o) / o
    out["KLEN"] = (h - l) / o
    out["KMID2"] = (c - o) / (h - l + EPS)
    out["KUP"] = (h - np.maximum(o, c)) / o
    out["KUP2"] = (h - np.maximum(o, c)) / (h - l + EPS)
    out["KLOW"] = (np.minimum(o, c) - l) / o
    out["KLOW2"] = (np.minimum(o, c) - l) / (h - l + EPS)
    out["KSFT"] = (2 * c - h - l) / o
    out["KSFT2"] = (2 * c - h - l) / (h - l + EPS)
    out["OPEN0"], out["HIGH0"], out["LOW0"] = o / c, h / c, l / c

    def by(series: pd.Series):
        return series.groupby(df["symbol"], sort=False)

    ref1 = g["close"].shift(1)
    vref1 = g["volume"].shift(1)
    t = g.cumcount().astype(float)
    for d in windows:
        out |= _window(df, d, c, h, l, v, ref1, vref1, t, by)
    return pd.DataFrame(out).replace([np.inf, -np.inf], np.nan)


def _window(df, d, c, h, l, v, ref1, vref1, t, by) -> dict[str, pd.Series]:  # noqa: E741
    """Every rolling operator for one window length ``d``."""
    out: dict[str, pd.Series] = {}
    g = df.groupby("symbol", sort=False)

    def r(series: pd.Series, fn: str, *args, **kwargs) -> pd.Series:
        return getattr(by(series).rolling(d), fn)(*args, **kwargs).reset_index(level=0, drop=True)

    out[f"ROC{d}"] = g["close"].shift(d) / c
    out[f"MA{d}"] = r(c, "mean") / c
    out[f"STD{d}"] = r(c, "std") / c
    cov = pd.concat([df[["symbol"]], pd.DataFrame({"t": t, "c": c})], axis=1)
    slope = (
        cov.groupby("symbol", sort=False)
        .apply(
            lambda x: x["t"].rolling(d).cov(x["c"]) / x["t"].rolling(d).var(),
            include_groups=False,
        )
        .reset_index(level=0, drop=True)
    )
    corr_tc = (
        cov.groupby("symbol", sort=False)
        .apply(lambda x: x["t"].rolling(d).corr(x["c"]), include_groups=False)
        .reset_index(level=0, drop=True)
    )
    out[f"BETA{d}"] = slope / c
    out[f"RSQR{d}"] = corr_tc**2
    out[f"RESI{d}"] = (c - r(c, "mean") - slope * (d - 1) / 2) / c
    out[f"MAX{d}"] = r(h, "max") / c
    out[f"MIN{d}"] = r(l, "min") / c
    out[f"QTLU{d}"] = r(c, "quantile", 0.8) / c
    out[f"QTLD{d}"] = r(c, "quantile", 0.2) / c
    out[f"RANK{d}"] = r(c, "rank", pct=True)
    out[f"RSV{d}"] = (c - r(l, "min")) / (r(h, "max") - r(l, "min") + EPS)
    imax = r(h, "apply", lambda x: x.argmax() + 1, raw=True)
    imin = r(l, "apply", lambda x: x.argmin() + 1, raw=True)
    out[f"IMAX{d}"] = imax / d
    out[f"IMIN{d}"] = imin / d
    out[f"IMXD{d}"] = (imax - imin) / d
    pair = pd.DataFrame(
        {
            "symbol": df["symbol"],
            "a": c,
            "b": np.log(v + 1),
            "a2": c / ref1,
            "b2": np.log(v / vref1 + 1),
        }
    )
    pg = pair.groupby("symbol", sort=False)
    out[f"CORR{d}"] = pg.apply(
        lambda x: x["a"].rolling(d).corr(x["b"]), include_groups=False
    ).reset_index(level=0, drop=True)
    out[f"CORD{d}"] = pg.apply(
        lambda x: x["a2"].rolling(d).corr(x["b2"]), include_groups=False
    ).reset_index(level=0, drop=True)
    up, down = (
        (c > ref1).astype(float).where(ref1.notna()),
        (c < ref1).astype(float).where(ref1.notna()),
    )
    out[f"CNTP{d}"] = r(up, "mean")
    out[f"CNTN{d}"] = r(down, "mean")
    out[f"CNTD{d}"] = out[f"CNTP{d}"] - out[f"CNTN{d}"]
    gain, loss, move = (c - ref1).clip(lower=0), (ref1 - c).clip(lower=0), (c - ref1).abs()
    out[f"SUMP{d}"] = r(gain, "sum") / (r(move, "sum") + EPS)
    out[f"SUMN{d}"] = r(loss, "sum") / (r(move, "sum") + EPS)
    out[f"SUMD{d}"] = (r(gain, "sum") - r(loss, "sum")) / (r(move, "sum") + EPS)
    out[f"VMA{d}"] = r(v, "mean") / (v + EPS)
    out[f"VSTD{d}"] = r(v, "std") / (v + EPS)
    wv = (c / ref1 - 1).abs() * v
    out[f"WVMA{d}"] = r(wv, "std") / (r(wv, "mean") + EPS)
    vgain, vloss, vmove = (
        (v - vref1).clip(lower=0),
        (vref1 - v).clip(lower=0),
        (v - vref1).abs(),
    )
    out[f"VSUMP{d}"] = r(vgain, "sum") / (r(vmove, "sum") + EPS)
    out[f"VSUMN{d}"] = r(vloss, "sum") / (r(vmove, "sum") + EPS)
    out[f"VSUMD{d}"] = (r(vgain, "sum") - r(vloss, "sum")) / (r(vmove, "sum") + EPS)
    return out
