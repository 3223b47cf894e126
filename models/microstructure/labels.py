"""Short-horizon labels at event time, each with where its horizon ends (for purging).

- ``k`` events ahead, the smoothed-mid convention of DeepLOB (Zhang, Zohren & Roberts 2019,
  after Ntakaris et al. 2018): ``l = (m_plus - m_minus) / m_minus`` with ``m_minus`` the mean
  mid of events ``n-k+1..n`` and ``m_plus`` that of ``n+1..n+k``; smoothing both sides keeps a
  one-event bounce from setting the label.
- ``T`` seconds ahead: ``l = m(t + T) / m(t) - 1``, ``m(t + T)`` the mid after the last event at
  or before ``t + T``.

Each is a class with a dead zone: +1 (up) when ``l > alpha``, -1 (down) when ``l < -alpha``, 0
(stationary) otherwise, ``alpha`` in bp of the mid. Rows whose windows hold an empty side of
the book, start before the day's k-th event, or end after its last event have no label.
``label_end_seq`` is the last event the label reads: a training row is purged when it reaches
past the first test event.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

from models.microstructure.features import NS, BookArrays, best_sum

UP, FLAT, DOWN = 1, 0, -1
CLASSES = (DOWN, FLAT, UP)


@dataclass(frozen=True)
class Horizon:
    """``k`` events (smoothed) or ``seconds`` ahead, and the dead zone in bp."""

    name: str
    events: int | None = None
    seconds: int | None = None
    dead_zone_bp: float = 0.0


def parse_horizons(names: list[str], dead_zones: dict[str, float]) -> list[Horizon]:
    """``["k10", "k50", "s10"]`` -> horizons; ``dead_zones`` maps each name to alpha in bp."""
    out = []
    for name in names:
        kind, value = name[0], name[1:]
        if kind not in "ks" or not value.isdigit() or int(value) < 1:
            raise ValueError(f"horizon {name!r}: expected k<events> or s<seconds>, e.g. k50, s10")
        out.append(
            Horizon(
                name,
                events=int(value) if kind == "k" else None,
                seconds=int(value) if kind == "s" else None,
                dead_zone_bp=float(dead_zones.get(name, 0.0)),
            )
        )
    return out


def smoothed_returns(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(l, end)`` for a k-event smoothed label from ``s`` = ask_1 + bid_1 (0 where a side is
    empty); ``l`` NaN where undefined, ``end`` the 0-based last event read."""
    n = len(s)
    empty = np.concatenate([[0], np.cumsum(s == 0)])
    total = np.concatenate([[0], np.cumsum(s)])
    idx = np.arange(n)
    ok = (idx >= k - 1) & (idx + k < n)
    lo, hi = np.clip(idx - k + 1, 0, n), np.clip(idx + k + 1, 0, n)
    mid_at = np.clip(idx + 1, 0, n)
    ok &= (empty[hi] - empty[lo]) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        minus = (total[mid_at] - total[lo]) / k
        plus = (total[hi] - total[mid_at]) / k
        l = np.where(ok, plus / minus - 1, np.nan)  # noqa: E741
    return l, idx + k


def time_returns(s: np.ndarray, t_ns: np.ndarray, seconds: int) -> tuple[np.ndarray, np.ndarray]:
    """``(l, end)`` for the return to the mid ``seconds`` later (the last event at or before
    ``t + seconds``); NaN when that lies past the day's last event or a side is empty."""
    target = t_ns + seconds * NS
    end = np.searchsorted(t_ns, target, side="right") - 1
    ok = (target <= t_ns[-1]) & (s != 0) & (s[end] != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        l = np.where(ok, s[end] / s - 1, np.nan)  # noqa: E741
    return l, end


def past_returns(s: np.ndarray, t_ns: np.ndarray, h: Horizon) -> np.ndarray:
    """The return of the last label that has ended at each event (what persistence
    forecasts): the smoothed label of event ``n - k``, or the mid's return over the last T
    seconds (from the last event at or before ``t - T``)."""
    if h.events is not None:
        ret, _ = smoothed_returns(s, h.events)
        out = np.full(len(s), np.nan)
        out[h.events :] = ret[: len(s) - h.events]
        return out
    start = np.searchsorted(t_ns, t_ns - h.seconds * NS, side="right") - 1
    ok = (t_ns - h.seconds * NS >= t_ns[0]) & (s != 0) & (s[np.maximum(start, 0)] != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, s / s[np.maximum(start, 0)] - 1, np.nan)


def to_class(ret: np.ndarray, dead_zone_bp: float) -> np.ndarray:
    """+1 / 0 / -1 with the dead zone; NaN stays NaN (as float)."""
    alpha = dead_zone_bp * 1e-4
    return np.where(
        np.isnan(ret), np.nan, np.where(ret > alpha, UP, np.where(ret < -alpha, DOWN, FLAT))
    )


def labels_frame(events: pl.DataFrame, book: pl.DataFrame, horizons: list[Horizon]) -> pl.DataFrame:
    """``[seq, ts, ret_<h>, end_<h>, past_<h>]`` per horizon: the smoothed or plain return
    (null where undefined), the time of the last event it reads, and the last ended label's
    return (known at the event). Classes are made where the dead zone is known
    (:func:`to_class`; the models calibrate it on their training rows)."""
    a = BookArrays.from_frames(events, book, 1)
    s = best_sum(a)
    cols: dict[str, object] = {}
    for h in horizons:
        if h.events is not None:
            ret, end = smoothed_returns(s, h.events)
        else:
            ret, end = time_returns(s, a.t_ns, h.seconds)
        cols[f"ret_{h.name}"] = pl.Series(ret).fill_nan(None)
        cols[f"end_{h.name}"] = events["ts"].gather(np.minimum(end, len(s) - 1))
        cols[f"past_{h.name}"] = pl.Series(past_returns(s, a.t_ns, h)).fill_nan(None)
    return pl.concat([events.select("seq", "ts"), pl.DataFrame(cols)], how="horizontal")
