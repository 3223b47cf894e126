"""Trading costs from order books: spreads by hand, impact fits that recover a planted law out
of sample, daily scales that never read the day itself, the Corwin-Schultz comparison."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from models.backtest.costs import corwin_schultz_daily, spread_estimates
from models.microstructure import impact
from models.microstructure.reader import DUMMY


def test_quoted_spread_is_time_weighted_and_skips_one_sided_books():
    t = np.array([0, 1, 3, 4, 6]) * 1_000_000_000
    ask = np.array([1_000_100, 1_000_200, DUMMY, 1_000_100, 1_000_100])
    bid = np.array([999_900, 999_900, 999_900, 999_900, 999_900])
    # states last 1 s, 2 s, (one-sided) 1 s, 2 s, and the last one no time
    hs = [(a - b) / (a + b) * 1e4 for a, b in zip(ask, bid, strict=True)]
    expected = (hs[0] * 1 + hs[1] * 2 + hs[3] * 2) / 5
    assert impact.quoted_half_spread_bp(t, ask, bid) == pytest.approx(expected, rel=1e-12)


def test_effective_spread_is_share_weighted_against_the_mid_before_each_trade():
    kind = np.array([1, 4, 1, 5, 4])
    price = np.array([0, 1_000_100, 0, 1_000_000, 999_900])
    size = np.array([10, 100, 5, 300, 100])
    sign = np.array([0, 1, 0, 1, -1])
    ask = np.array([1_000_100] * 5)
    bid = np.array([999_900] * 5)
    # mid 100.00: +1 bp for the buy at the ask, 0 for the hidden one at the mid, +1 bp for the
    # sell at the bid; weighted by shares 100, 300, 100
    assert impact.effective_half_spread_bp(kind, price, size, sign, ask, bid) == pytest.approx(
        (1 * 100 + 0 * 300 + 1 * 100) / 500, rel=1e-12
    )


def _intervals(n=3000, coef=0.8, sigma=150.0, volume=2e6, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(0, 2000, n).round()
    r = coef * sigma * np.sign(q) * np.sqrt(np.abs(q) / volume) + rng.normal(0, 0.4, n)
    ts = pl.datetime_range(
        pl.datetime(2012, 6, 21, 9, 30), pl.datetime(2012, 6, 21, 16), "5s", eager=True
    )[:n]
    return pl.DataFrame(
        {
            "ts": ts,
            "return_bp": r,
            "signed_volume": q.astype(np.int64),
            "volume": np.abs(q),
            "mid_open": 100.0,
        }
    )


def test_square_root_law_and_kyle_lambda_are_recovered_out_of_sample():
    scale = impact.DailyScale(150.0, 2e6, "planted")
    fits = impact.impact_fits(_intervals(), scale, train_fraction=0.6, interval_s=5)
    assert fits["sqrt"].coef == pytest.approx(0.8, rel=0.05)
    assert fits["sqrt"].r2_oos > 0.5 and fits["sqrt"].n_test == 1200
    # the square root beats the straight line where the law is a square root
    assert fits["sqrt"].r2_oos > fits["kyle"].r2_oos > 0
    assert 0.35 < fits["exponent"] < 0.65
    # a linear law: Kyle's lambda (bp per $1M) is found, the intercept near zero
    lin = _intervals().with_columns(return_bp=pl.col("signed_volume") * 100.0 / 1e6 * 3.0)
    kyle = impact.impact_fits(lin, scale)["kyle"]
    assert kyle.coef == pytest.approx(3.0, rel=1e-9) and abs(kyle.intercept) < 1e-9


def test_too_few_intervals_are_refused():
    with pytest.raises(ValueError, match="too few to fit and test"):
        impact.impact_fits(_intervals(n=15), impact.DailyScale(1.0, 1.0, "x"))


def _bars(days=40):
    rng = np.random.default_rng(3)
    dates = [date(2012, 5, 1) + timedelta(days=i) for i in range(days)]
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, days)))
    return pl.DataFrame(
        {
            "date": dates,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": rng.uniform(1e6, 2e6, days),
        }
    )


def test_daily_scale_reads_only_the_days_before():
    bars = _bars()
    day = bars["date"][30]
    a = impact.daily_scale(bars, day)
    changed = bars.with_columns(
        pl.when(pl.col("date") >= day)
        .then(pl.col("close") * 3)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    assert impact.daily_scale(changed, day) == a
    r = np.diff(np.log(bars["close"].to_numpy()[9:30]))
    assert a.sigma_bp == pytest.approx(np.std(r, ddof=1) * 1e4)
    assert a.volume == pytest.approx(bars["volume"].to_numpy()[10:30].mean())
    assert impact.daily_scale(None, day) is None


def test_corwin_schultz_is_the_daily_library_estimate():
    bars = _bars()
    day = bars["date"][30]
    cs, cs20 = impact.corwin_schultz_bp(bars, "X", day)
    ref = spread_estimates(bars.with_columns(symbol=pl.lit("X")), estimator="corwin_schultz")
    daily = corwin_schultz_daily(bars.with_columns(symbol=pl.lit("X")))
    assert cs == pytest.approx(daily.filter(pl.col("date") == day)["_cs"][0] / 2 * 1e4)
    assert cs20 == pytest.approx(ref.filter(pl.col("date") == day)["spread"][0] / 2 * 1e4)
    assert impact.corwin_schultz_bp(bars.drop("high"), "X", day) == (None, None)


def test_calibration_frame_is_the_product_the_backtest_takes():
    frame = impact.calibration_frame(
        [
            impact.CostCalibration(
                "GOOG", 2.4, 1.5, "LOBSTER GOOG 2012-06-21", 2.6, 5.5, "2012-06-21", "2012-06-21"
            )
        ]
    )
    assert frame.columns[:4] == ["symbol", "half_spread_bp", "impact_coef", "source"]
    assert frame.row(0)[:3] == ("GOOG", 2.4, 1.5)
    assert impact.calibration_frame([]).schema == frame.schema
