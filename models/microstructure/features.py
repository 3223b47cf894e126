"""Order-book features at event time and on a clock, registered with their formulas.

Every feature of event ``n`` reads events ``<= n`` only (the message on line ``n`` and the book
after it); windows never reach before the day's first event (a window the day has not filled
yet is null). Counts, sizes and prices (in LOBSTER's integer units, dollars x 10,000) are summed
as integers, so the incremental scorer (``replay.py``) gets the same sums exactly and every
feature to floating-point rounding; ``tests/unit/microstructure/test_lob_features.py`` checks both against a
plain event loop, and that perturbing the future changes nothing before it.

Families (``k`` a book level, ``w`` a window in events, ``T`` in seconds):

- ``mid``, ``microprice`` (Stoikov's size-weighted mid), ``microprice_gap_bp``, ``spread_ticks``,
  ``spread_bp``: the best quotes;
- ``ask_depth_k``, ``bid_depth_k``: resting shares on the first k levels of a side;
  ``depth_imbalance_k`` = (bid depth - ask depth) / (bid depth + ask depth) through level k;
- ``ofi_k_w``: order-flow imbalance at level k summed over the last w events, Cont, Kukanov &
  Stoikov (2014) per level (the multi-level form of Xu, Kolm & ... 2019): for each event
  e = q_b(n) 1[p_b(n) >= p_b(n-1)] - q_b(n-1) 1[p_b(n) <= p_b(n-1)]
      - q_a(n) 1[p_a(n) <= p_a(n-1)] + q_a(n-1) 1[p_a(n) >= p_a(n-1)]
  (an empty level is the dummy price, +/-9999999999 with size 0, which makes the indicators
  right at the edges of the book);
- ``trade_sign_imbalance_w`` (mean sign of the executions among the last w events) and
  ``trade_volume_imbalance_w`` (signed over total executed shares);
- ``rate_<event>_T``: messages of each type per second over the last T seconds;
- ``realized_vol_T``: sqrt of the summed squared mid changes over the last T seconds, in bp of
  the current mid;
- ``kyle_lambda``: the slope of the mid change across an execution on its signed size, over the
  last ``kyle_trades`` executions (cents of mid per 100 shares);
- ``session_minutes``: minutes since 09:30.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from models.features.registry import describe_rows
from models.microstructure.reader import DUMMY, PRICE_SCALE, TICK, book_ticks, levels_of

OPEN_NS = 34_200 * 1_000_000_000  # 09:30 in nanoseconds after midnight
RATE_TYPES = {1: "new", 2: "cancel", 3: "delete", 4: "exec", 5: "hidden"}
NS = 1_000_000_000


@dataclass(frozen=True)
class FeatureParams:
    """The windows of the event-time features (shared by the batch and incremental code)."""

    levels: int = 10
    ofi_windows: tuple[int, ...] = (10, 100)
    trade_windows: tuple[int, ...] = (100, 1000)
    rate_windows_s: tuple[int, ...] = (1, 10)
    vol_windows_s: tuple[int, ...] = (10, 60)
    kyle_trades: int = 100
    tick: int = TICK

    def for_levels(self, available: int) -> "FeatureParams":
        from dataclasses import replace

        return replace(self, levels=min(self.levels, available))


@dataclass(frozen=True)
class LobFeature:
    name: str
    description: str
    inputs: tuple[str, ...]
    window: str
    family: str


def feature_specs(params: FeatureParams) -> list[LobFeature]:
    """Every event-time feature for ``params``, in column order, with its formula."""
    L = params.levels
    specs = [
        LobFeature("mid", "(best ask + best bid) / 2, dollars", ("book",), "row", "quotes"),
        LobFeature(
            "microprice",
            "(ask_1 * bid_size_1 + bid_1 * ask_size_1) / (ask_size_1 + bid_size_1), dollars",
            ("book",),
            "row",
            "quotes",
        ),
        LobFeature("microprice_gap_bp", "(microprice - mid) / mid, bp", ("book",), "row", "quotes"),
        LobFeature("spread_ticks", "(ask_1 - bid_1) / tick", ("book",), "row", "quotes"),
        LobFeature("spread_bp", "(ask_1 - bid_1) / mid, bp", ("book",), "row", "quotes"),
    ]
    for k in range(1, L + 1):
        specs += [
            LobFeature(
                f"ask_depth_{k}", f"shares resting on ask levels 1..{k}", ("book",), "row", "depth"
            ),
            LobFeature(
                f"bid_depth_{k}", f"shares resting on bid levels 1..{k}", ("book",), "row", "depth"
            ),
        ]
    for k in range(1, L + 1):
        specs.append(
            LobFeature(
                f"depth_imbalance_{k}",
                f"(bid_depth_{k} - ask_depth_{k}) / (bid_depth_{k} + ask_depth_{k})",
                ("book",),
                "row",
                "depth",
            )
        )
    for w in params.ofi_windows:
        for k in range(1, L + 1):
            specs.append(
                LobFeature(
                    f"ofi_{k}_{w}",
                    f"order-flow imbalance at level {k} (Cont-Kukanov-Stoikov) summed over the "
                    f"last {w} events, shares",
                    ("book",),
                    f"{w} events",
                    "ofi",
                )
            )
    for w in params.trade_windows:
        specs += [
            LobFeature(
                f"trade_sign_imbalance_{w}",
                f"mean trade sign (+1 buyer-initiated) of the executions among the last {w} events",
                ("message",),
                f"{w} events",
                "trades",
            ),
            LobFeature(
                f"trade_volume_imbalance_{w}",
                f"signed / total executed shares over the last {w} events",
                ("message",),
                f"{w} events",
                "trades",
            ),
        ]
    for T in params.rate_windows_s:
        for code, label in RATE_TYPES.items():
            specs.append(
                LobFeature(
                    f"rate_{label}_{T}s",
                    f"type-{code} messages per second over the last {T} s",
                    ("message",),
                    f"{T} s",
                    "arrivals",
                )
            )
    for T in params.vol_windows_s:
        specs.append(
            LobFeature(
                f"realized_vol_{T}s",
                f"sqrt(sum of squared mid changes over the last {T} s) / mid, bp",
                ("book",),
                f"{T} s",
                "volatility",
            )
        )
    specs += [
        LobFeature(
            "kyle_lambda",
            f"OLS slope of the mid change across an execution on its signed size, last "
            f"{params.kyle_trades} executions, cents per 100 shares",
            ("message", "book"),
            f"{params.kyle_trades} executions",
            "impact",
        ),
        LobFeature(
            "session_minutes", "minutes since 09:30 exchange time", ("message",), "row", "clock"
        ),
    ]
    return specs


def feature_names(params: FeatureParams) -> list[str]:
    return [s.name for s in feature_specs(params)]


# Features that are price levels, not stationary signals: kept in the table, not fed to models.
LEVEL_FEATURES = ("mid", "microprice")


def model_features(params: FeatureParams) -> list[str]:
    return [n for n in feature_names(params) if n not in LEVEL_FEATURES]


def describe(params: FeatureParams = FeatureParams()) -> pl.DataFrame:
    """The registry table (feature, family, window, inputs, description)."""
    return describe_rows(
        (s.name, s.family, 0, ", ".join(s.inputs), f"{s.description} [{s.window}]")
        for s in feature_specs(params)
    )


@dataclass
class BookArrays:
    """One day's events and book as integer numpy arrays (LOBSTER units)."""

    t_ns: np.ndarray  # int64, nanoseconds after midnight
    kind: np.ndarray  # int8 message type
    size: np.ndarray  # int64
    sign: np.ndarray  # int8 trade sign (+1 buyer-initiated execution)
    ask_p: np.ndarray  # (n, L) int64, empty = +DUMMY
    ask_s: np.ndarray
    bid_p: np.ndarray  # empty = -DUMMY
    bid_s: np.ndarray

    @classmethod
    def from_frames(cls, events: pl.DataFrame, book: pl.DataFrame, levels: int | None = None):
        """From the typed ``lob_events`` and ``lob_book`` frames of one day (same order)."""
        L = levels_of(book) if levels is None else levels
        ticks = book_ticks(book, L)

        def side(name: str) -> np.ndarray:
            return np.column_stack([ticks[f"{name}_{k}"].to_numpy() for k in range(1, L + 1)])

        return cls(
            events["t_ns"].to_numpy(),
            events["type"].to_numpy(),
            events["size"].to_numpy(),
            events["trade_sign"].to_numpy(),
            side("ask_price"),
            side("ask_size"),
            side("bid_price"),
            side("bid_size"),
        )

    def __len__(self) -> int:
        return len(self.t_ns)


def ofi_events(a: BookArrays) -> np.ndarray:
    """``e_k(n)`` per event and level, ``(n, L)`` int64; the first event's is 0 (no book
    before it)."""
    e = np.zeros(a.ask_p.shape, dtype=np.int64)
    bp, bq, ap, aq = a.bid_p, a.bid_s, a.ask_p, a.ask_s
    e[1:] = (
        bq[1:] * (bp[1:] >= bp[:-1])
        - bq[:-1] * (bp[1:] <= bp[:-1])
        - aq[1:] * (ap[1:] <= ap[:-1])
        + aq[:-1] * (ap[1:] >= ap[:-1])
    )
    return e


def best_sum(a: BookArrays) -> np.ndarray:
    """ask_1 + bid_1 (twice the mid, integer), with 0 where either side is empty."""
    both = (a.ask_p[:, 0] != DUMMY) & (a.bid_p[:, 0] != -DUMMY)
    return np.where(both, a.ask_p[:, 0] + a.bid_p[:, 0], 0)


def mid_steps(a: BookArrays) -> np.ndarray:
    """Change of ask_1 + bid_1 at each event (0 when either row lacks a side, and for the
    first event)."""
    s = best_sum(a)
    d = np.zeros(len(s), dtype=np.int64)
    ok = (s[1:] != 0) & (s[:-1] != 0)
    d[1:] = np.where(ok, s[1:] - s[:-1], 0)
    return d


def _window_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum over the last ``w`` rows (this one included) along axis 0, float with NaN for rows
    with fewer than ``w`` before them; integer-exact before the cast."""
    c = np.concatenate([np.zeros((1, *x.shape[1:]), dtype=x.dtype), np.cumsum(x, axis=0)])
    out = np.full(x.shape, np.nan)
    if len(x) >= w:
        out[w - 1 :] = c[w:] - c[:-w]
    return out


def _time_left(t_ns: np.ndarray, T_s: int) -> tuple[np.ndarray, np.ndarray]:
    """For each event, the first event inside (t - T, t], and whether the day had started T
    seconds before it (else the window is not full)."""
    left = np.searchsorted(t_ns, t_ns - T_s * NS, side="right")
    return left, t_ns - T_s * NS >= t_ns[0]


def event_features(a: BookArrays, params: FeatureParams) -> dict[str, np.ndarray]:
    """Every feature of :func:`feature_specs` for every event, as float arrays (NaN = null)."""
    L = params.levels
    n = len(a)
    out: dict[str, np.ndarray] = {}
    ask1, bid1 = a.ask_p[:, 0], a.bid_p[:, 0]
    both = (ask1 != DUMMY) & (bid1 != -DUMMY)
    s = np.where(both, ask1 + bid1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mid_units = np.where(both, s / 2, np.nan)
        out["mid"] = mid_units / PRICE_SCALE
        qa, qb = a.ask_s[:, 0], a.bid_s[:, 0]
        num = ask1 * qb + bid1 * qa
        micro = np.where(both & (qa + qb > 0), num / (qa + qb), np.nan)
        out["microprice"] = micro / PRICE_SCALE
        out["microprice_gap_bp"] = (micro - mid_units) / mid_units * 1e4
        gap = np.where(both, ask1 - bid1, np.nan)
        out["spread_ticks"] = gap / params.tick
        out["spread_bp"] = gap / mid_units * 1e4
        ask_cum = np.cumsum(a.ask_s[:, :L], axis=1)
        bid_cum = np.cumsum(a.bid_s[:, :L], axis=1)
        for k in range(L):
            out[f"ask_depth_{k + 1}"] = ask_cum[:, k].astype(float)
            out[f"bid_depth_{k + 1}"] = bid_cum[:, k].astype(float)
        for k in range(L):
            tot = ask_cum[:, k] + bid_cum[:, k]
            out[f"depth_imbalance_{k + 1}"] = np.where(
                tot > 0, (bid_cum[:, k] - ask_cum[:, k]) / tot, np.nan
            )
        e = ofi_events(
            BookArrays(
                a.t_ns, a.kind, a.size, a.sign,
                a.ask_p[:, :L], a.ask_s[:, :L], a.bid_p[:, :L], a.bid_s[:, :L],
            )
        )  # fmt: skip
        for w in params.ofi_windows:
            sums = _window_sum(e, w)
            for k in range(L):
                out[f"ofi_{k + 1}_{w}"] = sums[:, k]
        traded = np.isin(a.kind, (4, 5)).astype(np.int64)
        signed = a.sign.astype(np.int64)
        volume = a.size * traded
        for w in params.trade_windows:
            count, signs = _window_sum(traded, w), _window_sum(signed, w)
            vol, svol = _window_sum(volume, w), _window_sum(signed * a.size, w)
            out[f"trade_sign_imbalance_{w}"] = np.where(count > 0, signs / count, np.nan)
            out[f"trade_volume_imbalance_{w}"] = np.where(vol > 0, svol / vol, np.nan)
        prefix = {code: np.concatenate([[0], np.cumsum(a.kind == code)]) for code in RATE_TYPES}
        idx = np.arange(n)
        for T in params.rate_windows_s:
            left, full = _time_left(a.t_ns, T)
            for code, label in RATE_TYPES.items():
                c = prefix[code][idx + 1] - prefix[code][left]
                out[f"rate_{label}_{T}s"] = np.where(full, c / T, np.nan)
        d2 = np.concatenate([[0], np.cumsum(mid_steps(a) ** 2)])
        for T in params.vol_windows_s:
            left, full = _time_left(a.t_ns, T)
            total = d2[idx + 1] - d2[left]
            out[f"realized_vol_{T}s"] = np.where(full & both, np.sqrt(total) / s * 1e4, np.nan)
        out["kyle_lambda"] = kyle_lambda(a, params.kyle_trades)
        out["session_minutes"] = (a.t_ns - OPEN_NS) / (60 * NS)
    return out


def kyle_lambda(a: BookArrays, trades: int) -> np.ndarray:
    """At each event, the OLS slope of (ask_1 + bid_1)/2 change across an execution on its
    signed size over the last ``trades`` executions (null before that many). Integer sums
    (y in halves of LOBSTER units, so 2 * slope / 2 = cents per 100 shares)."""
    n = len(a)
    where = np.flatnonzero(np.isin(a.kind, (4, 5)))
    out = np.full(n, np.nan)
    if len(where) < trades:
        return out
    x = a.sign[where].astype(np.int64) * a.size[where]
    y = mid_steps(a)[where]  # twice the mid change, LOBSTER units

    def win(v):
        c = np.concatenate([[0], np.cumsum(v)])
        return c[trades:] - c[:-trades]

    sx, sy, sxx, sxy = win(x), win(y), win(x * x), win(x * y)
    den = trades * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(den > 0, (trades * sxy - sx * sy) / den, np.nan) / 2
    lam = np.full(len(where), np.nan)
    lam[trades - 1 :] = slope
    # each event carries the value as of the latest execution at or before it
    last = np.searchsorted(where, np.arange(n), side="right") - 1
    ok = last >= 0
    out[ok] = lam[last[ok]]
    return out


def features_frame(
    events: pl.DataFrame, book: pl.DataFrame, params: FeatureParams = FeatureParams()
) -> pl.DataFrame:
    """``[seq, ts, <features>]`` for one day (``lob_events`` and ``lob_book`` of one ticker-day,
    in line order); ``params.levels`` is capped at the book's depth."""
    params = params.for_levels(levels_of(book))
    arrays = BookArrays.from_frames(events, book, params.levels)
    values = event_features(arrays, params)
    frame = pl.DataFrame({name: values[name] for name in feature_names(params)})
    return pl.concat([events.select("seq", "ts"), frame.fill_nan(None)], how="horizontal")


def clock_features(
    events: pl.DataFrame,
    book: pl.DataFrame,
    features: pl.DataFrame,
    every_s: Iterable[int] = (1, 10),
    levels: int = 10,
) -> pl.DataFrame:
    """The day on a clock: for each ``every`` seconds and each tick ``tau`` (09:30 + every,
    + 2 every, ... to the last event), the interval ``(tau - every, tau]``'s totals (messages,
    executed and signed shares, OFI per level, the mid at both ends and its log return in bp)
    and the event-time features as of the last event at or before ``tau``:
    ``[clock, tau_ns, ts, n_events, volume, signed_volume, ofi_1.., mid_open, mid_close,
    return_bp, asof_seq, <event features>]``."""
    L = min(levels, levels_of(book))
    a = BookArrays.from_frames(events, book, L)
    e = ofi_events(a)
    traded = np.isin(a.kind, (4, 5))
    s = best_sum(a)
    midnight = int(events["ts"].dt.epoch("ns")[0]) - int(a.t_ns[0])
    tz = events.schema["ts"].time_zone
    frames = []
    for every in every_s:
        step = every * NS
        start = OPEN_NS if a.t_ns[0] >= OPEN_NS else int(a.t_ns[0]) // step * step
        taus = np.arange(start + step, int(a.t_ns[-1]) + step, step, dtype=np.int64)
        last = np.searchsorted(a.t_ns, taus, side="right") - 1  # as-of index per tick
        first = np.searchsorted(a.t_ns, start, side="right") - 1
        prev = np.concatenate([[first], last[:-1]])

        def interval(v, last=last, prev=prev):
            c = np.concatenate([np.zeros((1, *v.shape[1:]), dtype=v.dtype), np.cumsum(v, axis=0)])
            return c[last + 1] - c[prev + 1]

        ok = last >= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            close = np.where(ok & (s[last] != 0), s[last] / 2 / PRICE_SCALE, np.nan)
            open_ = np.where((prev >= 0) & (s[prev] != 0), s[prev] / 2 / PRICE_SCALE, np.nan)
            ret = np.log(close / open_) * 1e4
        ofi = interval(e)
        frames.append(
            pl.DataFrame(
                {
                    "clock": np.full(len(taus), f"{every}s"),
                    "tau_ns": taus,
                    "n_events": interval(np.ones(len(a), dtype=np.int64)),
                    "volume": interval(np.where(traded, a.size, 0)),
                    "signed_volume": interval(a.sign.astype(np.int64) * a.size),
                    **{f"ofi_{k + 1}": ofi[:, k] for k in range(L)},
                    "mid_open": open_,
                    "mid_close": close,
                    "return_bp": ret,
                    "asof_seq": np.where(ok, last + 1, 0),
                }
            )
        )
    grid = pl.concat(frames).with_columns(
        (pl.col("tau_ns") + midnight)
        .cast(pl.Datetime("ns", "UTC"))
        .dt.convert_time_zone(tz or "UTC")
        .alias("ts")
    )
    out = grid.join(features.drop("ts"), left_on="asof_seq", right_on="seq", how="left")
    return out.with_columns(pl.col(pl.Float64).fill_nan(None))
