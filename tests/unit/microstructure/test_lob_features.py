"""Order-book features: golden values against a plain event loop written from the formulas,
the tick-by-tick (incremental) features equal to the batch ones, and no look-ahead."""

import math
from datetime import date

import numpy as np
import polars as pl
import pytest
from conftest import shared_slice, synthetic_lob

from models.microstructure.features import (
    BookArrays,
    FeatureParams,
    clock_features,
    event_features,
    feature_names,
    features_frame,
)
from models.microstructure.labels import labels_frame, parse_horizons
from models.microstructure.reader import MESSAGE_COLUMNS, book_columns, book_frame, events_frame
from models.microstructure.replay import replay_features

DAY = date(2012, 6, 21)
PARAMS = FeatureParams(
    levels=5, ofi_windows=(7, 40), trade_windows=(25, 120), rate_windows_s=(1, 4),
    vol_windows_s=(3, 9), kyle_trades=30,
)  # fmt: skip


def frames(messages, book, levels):
    m = pl.DataFrame([list(r) for r in messages], schema=list(MESSAGE_COLUMNS), orient="row").cast(
        {"time": pl.Float64, **{c: pl.Int64 for c in MESSAGE_COLUMNS[1:]}}
    )
    b = pl.DataFrame(book, schema=book_columns(levels), orient="row")
    return events_frame(m, DAY), book_frame(b, levels)


def slow_reference(events: pl.DataFrame, book: pl.DataFrame, p: FeatureParams) -> dict:
    """Each feature from its definition, one event at a time, in dollars and plain floats:
    empty levels as +/- infinity with size 0 (not the dummy integers), windows by scanning."""
    inf = math.inf
    L, n = p.levels, len(events)
    t = events["t_ns"].to_list()
    kind, size, sign = (
        events["type"].to_list(),
        events["size"].to_list(),
        events["trade_sign"].to_list(),
    )
    rows = book.to_dicts()

    def side(r, s, k):
        price = r[f"{s}_price_{k}"]
        return (
            (price, r[f"{s}_size_{k}"]) if price is not None else ((inf if s == "ask" else -inf), 0)
        )

    out = {name: [None] * n for name in feature_names(p)}
    mids = [None] * n
    e = [[0] * L for _ in range(n)]
    executed = []
    for i in range(n):
        r = rows[i]
        (a1, qa), (b1, qb) = side(r, "ask", 1), side(r, "bid", 1)
        if math.isfinite(a1) and math.isfinite(b1):
            mid = (a1 + b1) / 2
            mids[i] = mid
            out["mid"][i] = mid
            if qa + qb:
                micro = (a1 * qb + b1 * qa) / (qa + qb)
                out["microprice"][i] = micro
                out["microprice_gap_bp"][i] = (micro - mid) / mid * 1e4
            out["spread_ticks"][i] = (a1 - b1) / 0.01
            out["spread_bp"][i] = (a1 - b1) / mid * 1e4
        ca = cb = 0
        for k in range(1, L + 1):
            ca += side(r, "ask", k)[1]
            cb += side(r, "bid", k)[1]
            out[f"ask_depth_{k}"][i], out[f"bid_depth_{k}"][i] = ca, cb
            out[f"depth_imbalance_{k}"][i] = (cb - ca) / (cb + ca) if cb + ca else None
        if i:
            for k in range(1, L + 1):
                (pa, sa), (pb, sb) = side(r, "ask", k), side(r, "bid", k)
                (pa0, sa0), (pb0, sb0) = side(rows[i - 1], "ask", k), side(rows[i - 1], "bid", k)
                e[i][k - 1] = (
                    (sb if pb >= pb0 else 0) - (sb0 if pb <= pb0 else 0)
                    - (sa if pa <= pa0 else 0) + (sa0 if pa >= pa0 else 0)
                )  # fmt: skip
        for w in p.ofi_windows:
            for k in range(L):
                out[f"ofi_{k + 1}_{w}"][i] = (
                    sum(e[j][k] for j in range(i - w + 1, i + 1)) if i >= w - 1 else None
                )
        for w in p.trade_windows:
            if i >= w - 1:
                trades = [j for j in range(i - w + 1, i + 1) if kind[j] in (4, 5)]
                vol = sum(size[j] for j in trades)
                out[f"trade_sign_imbalance_{w}"][i] = (
                    sum(sign[j] for j in trades) / len(trades) if trades else None
                )
                out[f"trade_volume_imbalance_{w}"][i] = (
                    sum(sign[j] * size[j] for j in trades) / vol if vol else None
                )
        for T in p.rate_windows_s:
            inside, j = [], i
            while j >= 0 and t[i] - t[j] < T * 1e9:
                inside.append(j)
                j -= 1
            for code, label in (
                (1, "new"),
                (2, "cancel"),
                (3, "delete"),
                (4, "exec"),
                (5, "hidden"),
            ):
                full = t[i] - T * 1e9 >= t[0]
                out[f"rate_{label}_{T}s"][i] = (
                    sum(kind[j] == code for j in inside) / T if full else None
                )
        for T in p.vol_windows_s:
            steps, j = [], i
            while j > 0 and t[i] - t[j] < T * 1e9:
                if mids[j] is not None and mids[j - 1] is not None:
                    steps.append((mids[j] - mids[j - 1]) ** 2)
                j -= 1
            full = t[i] - T * 1e9 >= t[0]
            out[f"realized_vol_{T}s"][i] = (
                math.sqrt(sum(steps)) / mids[i] * 1e4 if full and mids[i] else None
            )
        if kind[i] in (4, 5):
            executed.append(i)
        trades = executed[-p.kyle_trades :]
        if len(trades) == p.kyle_trades:
            x = np.array([sign[j] * size[j] for j in trades], dtype=float)
            y = np.array(
                [
                    (mids[j] - mids[j - 1]) * 100
                    if j and mids[j] is not None and mids[j - 1] is not None
                    else 0.0
                    for j in trades
                ]
            )  # cents
            out["kyle_lambda"][i] = np.polyfit(x, y, 1)[0] * 100 if np.ptp(x) > 0 else None
        out["session_minutes"][i] = (t[i] - 34_200e9) / 60e9
    return out


def _compare(batch: dict, other: dict, names, rtol=1e-9, atol=1e-9):
    for name in names:
        a = np.array([np.nan if v is None else v for v in batch[name]], dtype=float)
        b = np.array([np.nan if v is None else v for v in other[name]], dtype=float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name}: nulls differ")
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


@pytest.fixture(scope="module")
def synthetic_day():
    messages, book = synthetic_lob(n=1500, levels=5, seed=11, halt_at=700, empty_at=1100)
    return frames(messages, book, 5)


@pytest.fixture(scope="module")
def quantized_day():
    """Times on a quarter-second grid: events exactly a window apart (the left edge of every
    time window is open)."""
    return frames(*synthetic_lob(n=800, levels=5, seed=5, quantum=0.25), 5)


@pytest.fixture(scope="module")
def goog_day():
    msg = shared_slice("message", 10, lines=2500)
    bk = shared_slice("orderbook", 10, lines=2500)
    m = [
        tuple(float(v) if i == 0 else int(v) for i, v in enumerate(line.split(","))) for line in msg
    ]
    b = np.array([[int(v) for v in line.split(",")] for line in bk], dtype=np.int64)
    return frames(m, b, 10)


@pytest.mark.parametrize("which", ["synthetic_day", "quantized_day", "goog_day"])
def test_features_match_a_slow_event_loop(which, request):
    events, book = request.getfixturevalue(which)
    params = PARAMS if which != "goog_day" else FeatureParams(kyle_trades=30)
    batch = event_features(BookArrays.from_frames(events, book, params.levels), params)
    slow = slow_reference(events, book, params)
    # the slow loop has every null where the batch has NaN; both hold real values elsewhere
    assert sum(np.isfinite(batch["ofi_1_" + str(params.ofi_windows[0])])) > 0.9 * len(events)
    assert np.isfinite(batch["kyle_lambda"]).sum() > 100
    _compare(batch, slow, feature_names(params))


def test_the_synthetic_day_covers_empty_sides_ties_and_halts(synthetic_day):
    events, book = synthetic_day
    feats = features_frame(events, book, PARAMS)
    assert feats["mid"].null_count() > 0  # a side emptied: no mid, no spread
    assert (events["t_ns"].diff() == 0).sum() > 50  # ties in time
    assert (events["type"] == 7).sum() == 3 and (events["type"] == 5).sum() > 50
    assert book["ask_price_5"].null_count() > 0


@pytest.mark.parametrize("which", ["synthetic_day", "quantized_day", "goog_day"])
def test_incremental_features_equal_the_batch_ones(which, request):
    events, book = request.getfixturevalue(which)
    params = PARAMS if which != "goog_day" else FeatureParams()
    arrays = BookArrays.from_frames(events, book, params.levels)
    batch = event_features(arrays, params)
    inc = replay_features(arrays, params)
    names = feature_names(params)
    _compare(batch, {n: inc[:, i] for i, n in enumerate(names)}, names)


def test_perturbing_the_future_changes_nothing_before_it(synthetic_day):
    events, book = synthetic_day
    cut = 900
    other_e, other_b = frames(*synthetic_lob(n=1500, levels=5, seed=99), 5)
    # the same day up to the cut, another day's events after it (times kept increasing)
    shift = int(events["t_ns"][cut] - other_e["t_ns"][cut]) + 1
    future_e = other_e[cut + 1 :].with_columns(
        pl.col("t_ns") + shift, pl.col("ts") + pl.duration(nanoseconds=shift)
    )
    perturbed_e = pl.concat([events[: cut + 1], future_e.with_columns(pl.col("seq"))])
    perturbed_b = pl.concat([book[: cut + 1], other_b[cut + 1 :]])
    a = features_frame(events, book, PARAMS)
    b = features_frame(perturbed_e, perturbed_b, PARAMS)
    assert a[: cut + 1].equals(b[: cut + 1])
    assert not a[cut + 1 :].equals(b[cut + 1 :])
    # a label reads no further than its end: perturbing after every end changes no label
    horizons = parse_horizons(["k10", "s2"], {})
    la, lb = labels_frame(events, book, horizons), labels_frame(perturbed_e, perturbed_b, horizons)
    before = (la["end_k10"] < events["ts"][cut + 1]) & (la["end_s2"] < events["ts"][cut + 1])
    keep = la["end_k10"].is_not_null() & before
    assert keep.sum() > 500
    assert (
        la.filter(keep)
        .select("ret_k10", "ret_s2")
        .equals(lb.filter(keep).select("ret_k10", "ret_s2"))
    )
    # the persistence inputs are known at the event itself
    assert (
        la[: cut + 1]
        .select("past_k10", "past_s2")
        .equals(lb[: cut + 1].select("past_k10", "past_s2"))
    )
    # each clock row is the features as of its tick, and its interval's flow
    ca = clock_features(events, book, a, (1,), 5)
    cb = clock_features(perturbed_e, perturbed_b, b, (1,), 5)
    upto = int((ca["tau_ns"] < int(events["t_ns"][cut + 1])).sum())
    assert upto > 10
    assert ca.head(upto).equals(cb.head(upto))
    assert not ca.equals(cb)


def test_clock_rows_are_the_features_as_of_their_tick(synthetic_day):
    events, book = synthetic_day
    feats = features_frame(events, book, PARAMS)
    clock = clock_features(events, book, feats, (1, 2), 5)
    t = events["t_ns"].to_numpy()
    for row in clock.filter(pl.col("clock") == "2s").head(30).to_dicts():
        last = int(np.searchsorted(t, row["tau_ns"], side="right"))  # events at or before tau
        assert row["asof_seq"] == last
        assert row["spread_ticks"] == feats["spread_ticks"][last - 1]
        inside = events.filter(
            (pl.col("t_ns") > row["tau_ns"] - 2_000_000_000) & (pl.col("t_ns") <= row["tau_ns"])
        )
        assert row["n_events"] == len(inside)
        assert row["signed_volume"] == int(
            (inside["trade_sign"].cast(pl.Int64) * inside["size"]).sum()
        )


def test_smoothed_labels_follow_the_deeplob_definition(synthetic_day):
    events, book = synthetic_day
    lab = labels_frame(events, book, parse_horizons(["k5", "s3"], {}))
    mid = features_frame(events, book, PARAMS)["mid"].to_numpy()
    n = 400
    expected = mid[n + 1 : n + 6].mean() / mid[n - 4 : n + 1].mean() - 1
    assert lab["ret_k5"][n] == pytest.approx(expected, rel=1e-12)
    assert lab["end_k5"][n] == events["ts"][n + 5]
    t = events["t_ns"].to_numpy()
    end = int(np.searchsorted(t, t[n] + 3_000_000_000, side="right")) - 1
    assert lab["ret_s3"][n] == pytest.approx(mid[end] / mid[n] - 1, rel=1e-12)
    assert lab["past_k5"][n] == lab["ret_k5"][n - 5]
