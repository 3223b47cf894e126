"""Qlib's Alpha158, re-expressed in polars: 9 candle-shape (KBAR) features, 4 price ratios and
29 rolling operators over windows {5, 10, 20, 30, 60}, with Qlib's formulas and constants
(``qlib/contrib/data/loader.py``, ``Alpha158DL.get_feature_config``).

Differences, on purpose: ``VWAP0`` needs a ``vwap`` column and is left out when the data has none
(the shared S&P 500 set and the bundled data have none: 157 features there). Where Qlib computes
``IdxMax``/``IdxMin`` with a per-window Python call, we use one ``rolling_max`` over a rank key.
"""

from collections.abc import Callable

import polars as pl

from models.features.registry import EPS, Part, register

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
        register(
            name,
            f"candle shape: {text}",
            OHLC,
            lambda e=expr: e,
            family="alpha158.kbar",
            on_panel=True,
        )


def _price() -> None:
    for name, col in (("OPEN0", "open"), ("HIGH0", "high"), ("LOW0", "low"), ("VWAP0", "vwap")):
        register(
            name,
            f"{col} / close, same day",
            (col, "close"),
            lambda c=col: pl.col(c) / C,
            family="alpha158.price",
            on_panel=True,
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


def _lagged(expr: pl.Expr) -> pl.Expr:
    """``expr`` (using one earlier row) on the whole panel, null on a symbol's first row."""
    return pl.when(pl.col("_pos") > 0).then(expr)


# Day-on-day changes, computed once for the panel instead of once per window; null on each
# symbol's first row, so a per-symbol rolling sum never sees the previous symbol's last price.
CHANGES = {
    "_chg": lambda: _lagged(C - C.shift(1)),
    "_vchg": lambda: _lagged(V - V.shift(1)),
    "_cret": lambda: _lagged(C / C.shift(1)),
    "_lvret": lambda: _lagged((V / V.shift(1) + 1).log()),
    "_lv": lambda: (V + 1).log(),
    "_wv": lambda: (pl.col("_cret") - 1).abs() * V,
}


def _helpers(*names: str) -> tuple[tuple[str, Callable[[], pl.Expr]], ...]:
    return tuple((n, CHANGES[n]) for n in names)


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


def _rank(d: int) -> pl.Expr:
    """Qlib's ``Rank``: the percentile of today's close among the last ``d``, ties averaged.

    The average rank of today's value in its window is ``1 + #smaller + #equal / 2`` (others
    only), that is ``1 + (d - 1) / 2 + sum_k sign(C - C[-k]) / 2``: ``d - 1`` exact differences
    instead of ``rolling_rank``, which costs 60 ms per 243 k rows and window (measured, 5x a
    rolling quantile)."""
    signs = pl.sum_horizontal(C.diff(k).sign() for k in range(1, d))
    return (1 + (d - 1) / 2 + signs / 2) / d


def _up_down_shares(
    prefix: str, column: str, up: Part, down: Part, words: tuple[str, str], total: str, d: int
) -> list[tuple]:
    """``<prefix>P``, ``N`` and ``D``: the window's rises, falls and their difference as shares
    of all its moves (|change| = rise + fall)."""
    rises, falls = pl.col(up.name), pl.col(down.name)
    moves = rises + falls + EPS
    return [
        (
            f"{prefix}P",
            (column,),
            lambda: rises / moves,
            f"{words[0]} / total {total} over {d} days",
            d,
            (up, down),
        ),
        (
            f"{prefix}N",
            (column,),
            lambda: falls / moves,
            f"{words[1]} / total {total} over {d} days",
            d,
            (up, down),
        ),
        (
            f"{prefix}D",
            (column,),
            lambda: (rises - falls) / moves,
            f"{prefix}P{d} - {prefix}N{d}",
            d,
            (up, down),
        ),
    ]


def _rolling(d: int) -> None:
    """Every operator over ``d`` days. Shared intermediates are :class:`Part` s (by window);
    sums, means, variances and correlations run per symbol, everything exact on the panel."""
    chg, vchg, cret = pl.col("_chg"), pl.col("_vchg"), pl.col("_cret")
    lvret, lv, wv = pl.col("_lvret"), pl.col("_lv"), pl.col("_wv")
    var_t = d * (d + 1) / 12  # the variance (ddof 1) of d consecutive row positions

    def part(name: str, build, per_symbol: bool = True) -> Part:
        return Part(f"_{name}{d}", build, per_symbol)

    mean_c = part("cmean", lambda: C.rolling_mean(d))
    var_c = part("cvar", lambda: C.rolling_var(d))
    cov_tc = part("tccov", lambda: pl.rolling_cov(T, C, window_size=d))
    up = part("up", lambda: chg.clip(lower_bound=0).rolling_sum(d))
    down = part("down", lambda: (-chg).clip(lower_bound=0).rolling_sum(d))
    vup = part("vup", lambda: vchg.clip(lower_bound=0).rolling_sum(d))
    vdown = part("vdown", lambda: (-vchg).clip(lower_bound=0).rolling_sum(d))
    hmax = part("hmax", lambda: H.rolling_max(d), per_symbol=False)
    lmin = part("lmin", lambda: L.rolling_min(d), per_symbol=False)
    imax = part("imax", lambda: _idx("_hkey", d), per_symbol=False)
    imin = part("imin", lambda: _idx("_lkey", d), per_symbol=False)
    # counts of 0/1 values: exact sums, so on the panel
    n_up = part("nup", lambda: (chg > 0).cast(pl.Float64).rolling_mean(d), per_symbol=False)
    n_down = part("ndown", lambda: (chg < 0).cast(pl.Float64).rolling_mean(d), per_symbol=False)

    def col(p: Part) -> pl.Expr:
        return pl.col(p.name)

    slope = col(cov_tc) / var_t
    # (name, inputs, build, description, lookback, parts); parts means built on the panel
    specs = [
        ("ROC", ("close",), lambda: C.shift(d) / C, f"close {d} days ago / close", d, ()),
        ("MA", ("close",), lambda: col(mean_c) / C, f"{d}-day mean close / close", None, (mean_c,)),
        (
            "STD",
            ("close",),
            lambda: col(var_c).sqrt() / C,
            f"{d}-day std of close / close",
            None,
            (var_c,),
        ),
        (
            "BETA",
            ("close",),
            lambda: slope / C,
            f"slope of close on time over {d} days / close",
            None,
            (cov_tc,),
        ),
        (
            "RSQR",
            ("close",),
            lambda: col(cov_tc) ** 2 / (var_t * col(var_c)),
            f"R-squared of close on time over {d} days",
            None,
            (cov_tc, var_c),
        ),
        (
            "RESI",
            ("close",),
            lambda: (C - col(mean_c) - slope * (d - 1) / 2) / C,
            f"last residual of close on time over {d} days / close",
            None,
            (mean_c, cov_tc),
        ),
        (
            "MAX",
            ("high", "close"),
            lambda: col(hmax) / C,
            f"{d}-day max high / close",
            None,
            (hmax,),
        ),
        ("MIN", ("low", "close"), lambda: col(lmin) / C, f"{d}-day min low / close", None, (lmin,)),
        (
            "QTLU",
            ("close",),
            lambda: C.rolling_quantile(0.8, "linear", d) / C,
            f"{d}-day 80% quantile of close / close",
            None,
            (),
        ),
        (
            "QTLD",
            ("close",),
            lambda: C.rolling_quantile(0.2, "linear", d) / C,
            f"{d}-day 20% quantile of close / close",
            None,
            (),
        ),
        (
            "RANK",
            ("close",),
            lambda: _rank(d),
            f"percentile of today's close among the last {d}",
            None,
            (),
        ),
        (
            "RSV",
            ("high", "low", "close"),
            lambda: (C - col(lmin)) / (col(hmax) - col(lmin) + EPS),
            f"close within the {d}-day low-high range",
            None,
            (hmax, lmin),
        ),
        (
            "IMAX",
            ("high",),
            lambda: col(imax) / d,
            f"position of the {d}-day high in its window / {d}",
            None,
            (imax,),
        ),
        (
            "IMIN",
            ("low",),
            lambda: col(imin) / d,
            f"position of the {d}-day low in its window / {d}",
            None,
            (imin,),
        ),
        (
            "IMXD",
            ("high", "low"),
            lambda: (col(imax) - col(imin)) / d,
            f"IMAX{d} - IMIN{d}",
            None,
            (imax, imin),
        ),
        (
            "CNTP",
            ("close",),
            lambda: col(n_up),
            f"share of up days in {d}",
            d,
            (n_up,),
        ),
        (
            "CNTN",
            ("close",),
            lambda: col(n_down),
            f"share of down days in {d}",
            d,
            (n_down,),
        ),
        (
            "CNTD",
            ("close",),
            lambda: col(n_up) - col(n_down),
            f"CNTP{d} - CNTN{d}",
            d,
            (n_up, n_down),
        ),
    ]
    specs += _up_down_shares("SUM", "close", up, down, ("gains", "losses"), "moves", d)
    specs += _up_down_shares(
        "VSUM", "volume", vup, vdown, ("volume increases", "volume decreases"), "volume changes", d
    )
    # per symbol, on their own: one rolling operator each, nothing to share
    per_symbol = [
        (
            "CORR",
            ("close", "volume"),
            lambda: pl.rolling_corr(C, lv, window_size=d),
            f"{d}-day correlation of close and log volume",
            None,
        ),
        (
            "CORD",
            ("close", "volume"),
            lambda: pl.rolling_corr(cret, lvret, window_size=d),
            f"{d}-day correlation of price change and log volume change",
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
    ]
    # per-symbol features have no parts (None): they run in the group-by, the rest on the panel
    for op, inputs, build, text, lookback, parts in [*specs, *((*f, None) for f in per_symbol)]:
        register(
            f"{op}{d}",
            text,
            inputs,
            build,
            family=f"alpha158.{op.lower()}",
            window=d,
            lookback=lookback,
            helpers=HELPERS.get(op, ()),
            parts=parts or (),
            on_panel=parts is not None,
        )


HELPERS = {
    **dict.fromkeys(("SUMP", "SUMN", "SUMD", "CNTP", "CNTN", "CNTD"), _helpers("_chg")),
    **dict.fromkeys(("VSUMP", "VSUMN", "VSUMD"), _helpers("_vchg")),
    "CORR": _helpers("_lv"),
    "CORD": _helpers("_cret", "_lvret"),
    "WVMA": _helpers("_cret", "_wv"),
    **dict.fromkeys(("IMAX", "IMIN", "IMXD"), IDX_HELPERS),
}


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
