"""Tick-by-tick: the event-time features updated one event at a time, and a scorer per event.

:class:`IncrementalFeatures` keeps exactly the state the batch features
(``features.event_features``) need: the previous book, ring buffers of the last ``w`` events'
order-flow and trade terms, the events inside each time window, the last executions for Kyle's
lambda. Sums are Python integers, as the batch's are int64, and every division is done in the
same order on the same values, so the two agree to floating-point rounding (tested to 1e-9).

:class:`TreeScorer` scores one row with LightGBM's single-row C API
(``LGBM_BoosterPredictForMatSingleRowFast``, set up once): about 7 us a call, against ~80 us
for ``Booster.predict`` on one row, whose per-call validation and conversion dominate there.
"""

import ctypes
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from models.microstructure.features import (
    NS,
    OPEN_NS,
    RATE_TYPES,
    BookArrays,
    FeatureParams,
    feature_names,
)
from models.microstructure.reader import DUMMY, PRICE_SCALE

NAN = float("nan")


class IncrementalFeatures:
    """``update(...)`` with one event and the book after it returns that event's features,
    in :func:`features.feature_names` order (NaN = null)."""

    def __init__(self, params: FeatureParams):
        self.params = params
        self.names = feature_names(params)
        L = params.levels
        self.L = L
        self.n = 0
        self.t0 = None
        self.prev_ask_p = self.prev_ask_s = self.prev_bid_p = self.prev_bid_s = None
        self.prev_s = 0
        # order-flow imbalance per level over the last w events
        self.ofi_windows = params.ofi_windows
        self.ofi_ring = [[0] * L for _ in range(max(params.ofi_windows))]
        self.ofi_sums = {w: [0] * L for w in params.ofi_windows}
        # executions over the last w events: count, sign sum, shares, signed shares
        self.trade_windows = params.trade_windows
        self.trade_ring = [(0, 0, 0, 0)] * max(params.trade_windows)
        self.trade_sums = {w: [0, 0, 0, 0] for w in params.trade_windows}
        # time windows: one history of (t, type, squared mid step), a left edge per window
        self.windows = sorted(set(params.rate_windows_s) | set(params.vol_windows_s))
        self.hist_t: list[int] = []
        self.hist_kind: list[int] = []
        self.hist_d2: list[int] = []
        self.left = dict.fromkeys(self.windows, 0)
        self.counts = {T: dict.fromkeys(RATE_TYPES, 0) for T in self.windows}
        self.d2 = dict.fromkeys(self.windows, 0)
        # Kyle's lambda over the last N executions
        self.N = params.kyle_trades
        self.kyle_ring = [(0, 0)] * self.N
        self.kyle_count = 0
        self.kyle = [0, 0, 0, 0]  # sx, sy, sxx, sxy
        self.kyle_value = NAN

    def update(self, t_ns: int, kind: int, size: int, sign: int, ask_p, ask_s, bid_p, bid_s):
        """One event: its time (ns after midnight), type, size, trade sign, and the book after
        it as four sequences of integers (LOBSTER units, empty levels as the dummies)."""
        p = self.params
        L = self.L
        n = self.n
        if self.t0 is None:
            self.t0 = t_ns
        out: list[float] = []
        a1, b1 = ask_p[0], bid_p[0]
        both = a1 != DUMMY and b1 != -DUMMY
        s = a1 + b1 if both else 0
        qa, qb = ask_s[0], bid_s[0]
        if both:
            mid_units = s / 2
            out.append(mid_units / PRICE_SCALE)
            if qa + qb > 0:
                micro = float(a1 * qb + b1 * qa) / float(qa + qb)
                out += [micro / PRICE_SCALE, (micro - mid_units) / mid_units * 1e4]
            else:
                out += [NAN, NAN]
            gap = float(a1 - b1)
            out += [gap / p.tick, gap / mid_units * 1e4]
        else:
            out += [NAN] * 5
        ask_cum = list(accumulate(ask_s))
        bid_cum = list(accumulate(bid_s))
        for ca, cb in zip(ask_cum, bid_cum, strict=True):
            out += (ca, cb)
        out += [
            (cb - ca) / (ca + cb) if ca + cb > 0 else NAN
            for ca, cb in zip(ask_cum, bid_cum, strict=True)
        ]
        # order-flow imbalance
        if n == 0:
            e = [0] * L
        else:
            pa, pqa, pb, pqb = self.prev_ask_p, self.prev_ask_s, self.prev_bid_p, self.prev_bid_s
            e = [
                (qb_ if b >= b0 else 0)
                - (qb0 if b <= b0 else 0)
                - (qa_ if a <= a0 else 0)
                + (qa0 if a >= a0 else 0)
                for a, qa_, b, qb_, a0, qa0, b0, qb0 in zip(
                    ask_p, ask_s, bid_p, bid_s, pa, pqa, pb, pqb, strict=True
                )
            ]
        ring = self.ofi_ring
        size_ring = len(ring)
        for w in self.ofi_windows:
            sums = self.ofi_sums[w]
            if n >= w:
                sums = [
                    v + x - o for v, x, o in zip(sums, e, ring[(n - w) % size_ring], strict=True)
                ]
            else:
                sums = [v + x for v, x in zip(sums, e, strict=True)]
            self.ofi_sums[w] = sums
            out += sums if n + 1 >= w else [NAN] * L
        ring[n % size_ring] = e
        # executions
        traded = 1 if kind in (4, 5) else 0
        term = (traded, sign, size * traded, sign * size)
        tring = self.trade_ring
        tsize = len(tring)
        for w in self.trade_windows:
            sums = self.trade_sums[w]
            old = tring[(n - w) % tsize] if n >= w else (0, 0, 0, 0)
            for i in range(4):
                sums[i] += term[i] - old[i]
            if n + 1 >= w:
                c, sg, v, sv = sums
                out += [sg / c if c > 0 else NAN, sv / v if v > 0 else NAN]
            else:
                out += [NAN, NAN]
        tring[n % tsize] = term
        # time windows: arrivals and realized volatility
        d = s - self.prev_s if (n > 0 and s != 0 and self.prev_s != 0) else 0
        self.hist_t.append(t_ns)
        self.hist_kind.append(kind)
        self.hist_d2.append(d * d)
        for T in self.windows:
            counts = self.counts[T]
            if kind in counts:
                counts[kind] += 1
            self.d2[T] += d * d
            edge = t_ns - T * NS
            left = self.left[T]
            while self.hist_t[left] <= edge:
                k0 = self.hist_kind[left]
                if k0 in counts:
                    counts[k0] -= 1
                self.d2[T] -= self.hist_d2[left]
                left += 1
            self.left[T] = left
        for T in p.rate_windows_s:
            full = t_ns - T * NS >= self.t0
            counts = self.counts[T]
            out += [counts[code] / T if full else NAN for code in RATE_TYPES]
        for T in p.vol_windows_s:
            full = t_ns - T * NS >= self.t0
            out.append(math.sqrt(self.d2[T]) / s * 1e4 if full and both else NAN)
        # Kyle's lambda, carried from the latest execution
        if traded:
            x, y = sign * size, d
            j = self.kyle_count
            kr = self.kyle_ring
            ox, oy = kr[j % self.N] if j >= self.N else (0, 0)
            k = self.kyle
            k[0] += x - ox
            k[1] += y - oy
            k[2] += x * x - ox * ox
            k[3] += x * y - ox * oy
            kr[j % self.N] = (x, y)
            self.kyle_count = j + 1
            if j + 1 >= self.N:
                den = self.N * k[2] - k[0] * k[0]
                self.kyle_value = (
                    float(self.N * k[3] - k[0] * k[1]) / float(den) / 2 if den > 0 else NAN
                )
        out.append(self.kyle_value)
        out.append((t_ns - OPEN_NS) / (60 * NS))
        self.prev_ask_p, self.prev_ask_s = ask_p, ask_s
        self.prev_bid_p, self.prev_bid_s = bid_p, bid_s
        self.prev_s = s
        self.n = n + 1
        return out


def replay_features(a: BookArrays, params: FeatureParams) -> np.ndarray:
    """Every event's features through :class:`IncrementalFeatures` (the reference for the
    equality with the batch features, and what the tick scorer runs)."""
    inc = IncrementalFeatures(params)
    L = params.levels
    rows = []
    ask_p, ask_s = a.ask_p[:, :L].tolist(), a.ask_s[:, :L].tolist()
    bid_p, bid_s = a.bid_p[:, :L].tolist(), a.bid_s[:, :L].tolist()
    t, kind, size, sign = a.t_ns.tolist(), a.kind.tolist(), a.size.tolist(), a.sign.tolist()
    for i in range(len(t)):
        rows.append(
            inc.update(t[i], kind[i], size[i], sign[i], ask_p[i], ask_s[i], bid_p[i], bid_s[i])
        )
    return np.array(rows, dtype=float)


class TreeScorer:
    """Class probabilities of one row from a LightGBM booster, through the single-row C API.

    Falls back to ``Booster.predict`` when the library lacks the fast entry points."""

    def __init__(self, booster, n_features: int):
        self.booster, self.n_features = booster, n_features
        self.row = np.zeros(n_features, dtype=np.float64)
        self.n_classes = booster.num_model_per_iteration()
        self.out = np.zeros(self.n_classes, dtype=np.float64)
        self._fast = None
        try:
            # the public C API, reached through the library handle lightgbm already loaded
            from lightgbm.basic import _LIB, _c_str, _safe_call

            handle = ctypes.c_void_p()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                    booster._handle,
                    ctypes.c_int(0),  # C_API_PREDICT_NORMAL
                    ctypes.c_int(0),
                    ctypes.c_int(-1),
                    ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                    ctypes.c_int32(n_features),
                    _c_str("num_threads=1"),
                    ctypes.byref(handle),
                )
            )
            self._handle, self._free = handle, _LIB.LGBM_FastConfigFree
            self._len = ctypes.c_int64()
            fn = _LIB.LGBM_BoosterPredictForMatSingleRowFast
            args = (
                handle,
                self.row.ctypes.data_as(ctypes.c_void_p),
                ctypes.byref(self._len),
                self.out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
            self._fast = lambda: fn(*args)
        except (ImportError, AttributeError, Exception):  # noqa: BLE001 (any failure: slow path)
            self._fast = None

    def score(self, values) -> np.ndarray:
        """Probabilities for one row (``values`` in the model's feature order); the returned
        array is reused by the next call."""
        self.row[:] = values
        if self._fast is not None:
            if self._fast() != 0:
                raise RuntimeError("LightGBM single-row prediction failed")
            return self.out
        self.out[:] = self.booster.predict(self.row.reshape(1, -1), num_threads=1)[0]
        return self.out

    def close(self) -> None:
        if self._fast is not None:
            self._free(self._handle)
            self._fast = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass


class LinearScorer:
    """The CKS regression classifier row by row: one dot product, thresholds, one-hot."""

    def __init__(self, weights: np.ndarray, intercept: float, lower: float, upper: float):
        self.w, self.b = [float(v) for v in weights], intercept
        self.lower, self.upper = lower, upper
        self.out = np.zeros(3)

    def score(self, values) -> np.ndarray:
        f = self.b + sum(w * v for w, v in zip(self.w, values, strict=True) if v == v)
        self.out[:] = 0.0
        self.out[0 if f <= self.lower else 2 if f >= self.upper else 1] = 1.0
        return self.out


@dataclass
class Scored:
    seq: int
    t_ns: int
    probabilities: np.ndarray  # down, stationary, up
    latency_ns: int


def replay(
    a: BookArrays,
    params: FeatureParams,
    columns: list[int],
    score: Callable[[list[float]], np.ndarray],
    speed: float | None = None,
    clock=None,
    sleep=None,
) -> Iterator[Scored]:
    """Replay the day event by event: update the features, score the model's ``columns`` of
    them, and yield each event's probabilities with the time the two took. ``speed`` paces the
    replay (1 = real time, 10 = ten times faster; None = as fast as possible); ``clock`` and
    ``sleep`` default to ``time.perf_counter_ns`` and ``time.sleep``."""
    import time

    clock = clock or time.perf_counter_ns
    sleep = sleep or time.sleep
    inc = IncrementalFeatures(params)
    L = params.levels
    ask_p, ask_s = a.ask_p[:, :L].tolist(), a.ask_s[:, :L].tolist()
    bid_p, bid_s = a.bid_p[:, :L].tolist(), a.bid_s[:, :L].tolist()
    t, kind, size, sign = a.t_ns.tolist(), a.kind.tolist(), a.size.tolist(), a.sign.tolist()
    started = clock()
    for i in range(len(t)):
        if speed:
            due = started + (t[i] - t[0]) / speed
            wait = due - clock()
            if wait > 0:
                sleep(wait / 1e9)
        begin = clock()
        values = inc.update(t[i], kind[i], size[i], sign[i], ask_p[i], ask_s[i], bid_p[i], bid_s[i])
        probabilities = score([values[c] for c in columns])
        yield Scored(i + 1, t[i], probabilities, clock() - begin)
