"""Qlib's Alpha158, re-expressed in polars: 9 candle-shape (KBAR) features, 4 price ratios and
29 rolling operators over windows {5, 10, 20, 30, 60}, with Qlib's formulas and constants
(``qlib/contrib/data/loader.py``, ``Alpha158DL.get_feature_config``).

Differences, on purpose: ``VWAP0`` needs a ``vwap`` column and is left out when the data has none
(the shared S&P 500 set and the bundled data have none: 157 features there). Where Qlib computes
``IdxMax``/``IdxMin`` with a per-window Python call, we use one ``rolling_max`` over a rank key.
"""

import polars as pl

from models.features.registry import EPS, register

ALPHA158_WINDOWS = (5, 10, 20, 30, 60)
O, H, L, C, V = (pl.col(c) for c in ("open", "high", "low", "close", "volume"))  # noqa: E741
T = pl.col("_pos").cast(pl.Float64)  # row position within its symbol: the regression's x
OHLC = ("open", "high", "low", "close")


def _kbar() -> None:
    rng = H - L + EPS
    top, bottom = pl.max_horizontal(O, C), pl.min_horizontal(O, C)
    items = {
        "KMID": ((C - O) / O, "(close - open) / open"),
        "KLEN": ((H - L) / O, "(high - low) / open"),
        "KMID2": ((C - O) / rng, "(close - open) / (high - low)"),
        "KUP": ((H - top) / O, "upper shadow: (high - max(open, close)) / open"),
        "KUP2": ((H - top) / rng, "upper shadow / (high - low)"),
        "KLOW": ((bottom - L) / O, "lower shadow: (min(open, close) - low) / open"),
        "KLOW2": ((bottom - L) / rng, "lower shadow / (high - low)"),
        "KSFT": ((2 * C - H - L) / O, "(2 close - high - low) / open"),
        "KSFT2": ((2 * C - H - L) / rng, "(2 close - high - low) / (high - low)"),
    }
    for name, (expr, text) in items.items():
        register(name, f"candle shape: {text}", OHLC, lambda e=expr: e, family="alpha158.kbar")


def _price() -> None:
    for name, col in (("OPEN0", "open"), ("HIGH0", "high"), ("LOW0", "low"), ("VWAP0", "vwap")):
        register(
            name,
            f"{col} / close, same day",
            (col, "close"),
            lambda c=col: pl.col(c) / C,
            family="alpha158.price",
        )


def _key(col: str, largest: bool) -> pl.Expr:
    """``rank * n - row`` over the whole panel: the largest key in a window is its largest value
    (smallest, for ``largest=False``) at its earliest row."""
    x = pl.col(col)
    rank = (x if largest else -x).rank("dense").cast(pl.Int64)
    return rank * pl.len().cast(pl.Int64) - pl.col("_row")


IDX_HELPERS = (
    ("_row", lambda: pl.int_range(pl.len(), dtype=pl.Int64)),
    ("_hkey", lambda: _key("high", True)),
    ("_lkey", lambda: _key("low", False)),
    ("_n", lambda: pl.len().cast(pl.Int64)),
)


def _idx(key: str, d: int) -> pl.Expr:
    """Qlib's ``IdxMax`` / ``IdxMin``: 1-based position of the window's first max (min), counted
    from the window's first row.

    Vectorised without a per-window call: one ``rolling_max`` of the rank key (``_key``, computed
    once for the whole panel) finds the window's extreme and integer arithmetic its row.
    """
    n = pl.col("_n")
    best = pl.col(key).rolling_max(d)
    first = (best + n - 1) // n * n - best
    return (first - pl.col("_row") + d).cast(pl.Float64)


def _rolling(d: int) -> None:
    ref1 = C.shift(1)
    up, down = (C - ref1).clip(lower_bound=0), (ref1 - C).clip(lower_bound=0)
    vup, vdown = (V - V.shift(1)).clip(lower_bound=0), (V.shift(1) - V).clip(lower_bound=0)
    slope = pl.rolling_cov(T, C, window_size=d) / T.rolling_var(d)
    wv = (C / ref1 - 1).abs() * V
    f = f"{d}"
    specs = [
        ("ROC", ("close",), lambda: C.shift(d) / C, f"close {d} days ago / close", d),
        ("MA", ("close",), lambda: C.rolling_mean(d) / C, f"{d}-day mean close / close", None),
        ("STD", ("close",), lambda: C.rolling_std(d) / C, f"{d}-day std of close / close", None),
        (
            "BETA",
            ("close",),
            lambda: slope / C,
            f"slope of close on time over {d} days / close",
            None,
        ),
        (
            "RSQR",
            ("close",),
            lambda: pl.rolling_corr(T, C, window_size=d) ** 2,
            f"R-squared of close on time over {d} days",
            None,
        ),
        (
            "RESI",
            ("close",),
            lambda: (C - C.rolling_mean(d) - slope * (d - 1) / 2) / C,
            f"last residual of close on time over {d} days / close",
            None,
        ),
        ("MAX", ("high", "close"), lambda: H.rolling_max(d) / C, f"{d}-day max high / close", None),
        ("MIN", ("low", "close"), lambda: L.rolling_min(d) / C, f"{d}-day min low / close", None),
        (
            "QTLU",
            ("close",),
            lambda: C.rolling_quantile(0.8, "linear", d) / C,
            f"{d}-day 80% quantile of close / close",
            None,
        ),
        (
            "QTLD",
            ("close",),
            lambda: C.rolling_quantile(0.2, "linear", d) / C,
            f"{d}-day 20% quantile of close / close",
            None,
        ),
        (
            "RANK",
            ("close",),
            lambda: C.rolling_rank(d) / d,
            f"percentile of today's close among the last {d}",
            None,
        ),
        (
            "RSV",
            ("high", "low", "close"),
            lambda: (C - L.rolling_min(d)) / (H.rolling_max(d) - L.rolling_min(d) + EPS),
            f"close within the {d}-day low-high range",
            None,
        ),
        (
            "IMAX",
            ("high",),
            lambda: _idx("_hkey", d) / d,
            f"position of the {d}-day high in its window / {d}",
            None,
        ),
        (
            "IMIN",
            ("low",),
            lambda: _idx("_lkey", d) / d,
            f"position of the {d}-day low in its window / {d}",
            None,
        ),
        (
            "IMXD",
            ("high", "low"),
            lambda: (_idx("_hkey", d) - _idx("_lkey", d)) / d,
            f"IMAX{d} - IMIN{d}",
            None,
        ),
        (
            "CORR",
            ("close", "volume"),
            lambda: pl.rolling_corr(C, (V + 1).log(), window_size=d),
            f"{d}-day correlation of close and log volume",
            None,
        ),
        (
            "CORD",
            ("close", "volume"),
            lambda: pl.rolling_corr(C / ref1, (V / V.shift(1) + 1).log(), window_size=d),
            f"{d}-day correlation of price change and log volume change",
            d,
        ),
        (
            "CNTP",
            ("close",),
            lambda: (C > ref1).cast(pl.Float64).rolling_mean(d),
            f"share of up days in {d}",
            d,
        ),
        (
            "CNTN",
            ("close",),
            lambda: (C < ref1).cast(pl.Float64).rolling_mean(d),
            f"share of down days in {d}",
            d,
        ),
        (
            "CNTD",
            ("close",),
            lambda: (
                (C > ref1).cast(pl.Float64).rolling_mean(d)
                - (C < ref1).cast(pl.Float64).rolling_mean(d)
            ),
            f"CNTP{d} - CNTN{d}",
            d,
        ),
        (
            "SUMP",
            ("close",),
            lambda: up.rolling_sum(d) / ((C - ref1).abs().rolling_sum(d) + EPS),
            f"gains / total moves over {d} days (RSI-like)",
            d,
        ),
        (
            "SUMN",
            ("close",),
            lambda: down.rolling_sum(d) / ((C - ref1).abs().rolling_sum(d) + EPS),
            f"losses / total moves over {d} days",
            d,
        ),
        (
            "SUMD",
            ("close",),
            lambda: (
                (up.rolling_sum(d) - down.rolling_sum(d)) / ((C - ref1).abs().rolling_sum(d) + EPS)
            ),
            f"SUMP{d} - SUMN{d}",
            d,
        ),
        (
            "VMA",
            ("volume",),
            lambda: V.rolling_mean(d) / (V + EPS),
            f"{d}-day mean volume / volume",
            None,
        ),
        (
            "VSTD",
            ("volume",),
            lambda: V.rolling_std(d) / (V + EPS),
            f"{d}-day std of volume / volume",
            None,
        ),
        (
            "WVMA",
            ("close", "volume"),
            lambda: wv.rolling_std(d) / (wv.rolling_mean(d) + EPS),
            f"volatility of volume-weighted |returns| over {d} days",
            d,
        ),
        (
            "VSUMP",
            ("volume",),
            lambda: vup.rolling_sum(d) / ((V - V.shift(1)).abs().rolling_sum(d) + EPS),
            f"volume increases / total volume changes over {d} days",
            d,
        ),
        (
            "VSUMN",
            ("volume",),
            lambda: vdown.rolling_sum(d) / ((V - V.shift(1)).abs().rolling_sum(d) + EPS),
            f"volume decreases / total volume changes over {d} days",
            d,
        ),
        (
            "VSUMD",
            ("volume",),
            lambda: (
                (vup.rolling_sum(d) - vdown.rolling_sum(d))
                / ((V - V.shift(1)).abs().rolling_sum(d) + EPS)
            ),
            f"VSUMP{d} - VSUMN{d}",
            d,
        ),
    ]
    for op, inputs, build, text, lookback in specs:
        register(
            f"{op}{f}",
            text,
            inputs,
            build,
            family=f"alpha158.{op.lower()}",
            window=d,
            lookback=lookback,
            helpers=IDX_HELPERS if op in ("IMAX", "IMIN", "IMXD") else (),
        )


_kbar()
_price()
for _d in ALPHA158_WINDOWS:
    _rolling(_d)

ALPHA158 = [
    *("KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2"),
    *("OPEN0", "HIGH0", "LOW0", "VWAP0"),
    *(
        f"{op}{d}"
        for op in (
            "ROC",
            "MA",
            "STD",
            "BETA",
            "RSQR",
            "RESI",
            "MAX",
            "MIN",
            "QTLU",
            "QTLD",
            "RANK",
            "RSV",
            "IMAX",
            "IMIN",
            "IMXD",
            "CORR",
            "CORD",
            "CNTP",
            "CNTN",
            "CNTD",
            "SUMP",
            "SUMN",
            "SUMD",
            "VMA",
            "VSTD",
            "WVMA",
            "VSUMP",
            "VSUMN",
            "VSUMD",
        )
        for d in ALPHA158_WINDOWS
    ),
]
assert len(ALPHA158) == 158
