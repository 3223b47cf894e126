"""Trading costs measured on real trades and books, per ticker, next to the daily-bar estimate.

- **Quoted half-spread** (bp): (ask - bid) / 2 / mid, weighted by how long each book state
  lasted.
- **Effective half-spread** (bp): s (p - m) / m per execution, s the trade sign (+1 buyer-
  initiated), p its price, m the mid just before it, weighted by shares.
- **Temporary impact of signed order flow** on a clock (``interval_s``): each interval's mid
  return r (bp) against its signed executed volume Q, two fits on the first
  ``train_fraction`` of the intervals (time order), each scored out of sample on the rest
  (R^2 against the training mean, Campbell-Thompson style):

  * **Kyle's lambda**: r = c + lambda Q$, Q$ the signed dollar volume (bp per $1M);
  * **square-root law**: r = Y sigma sign(Q) sqrt(|Q| / V), sigma the daily volatility (bp)
    and V the daily volume (shares) from the 20 daily bars before the day when daily bars are
    given (what the daily backtest's impact model reads), else from the training intervals;
    Y is then the daily backtest's ``impact_coef``.

  Q counts the executions in these files only (one venue, NASDAQ in LOBSTER's data), while V
  from daily bars is every venue's volume: Y is fitted on the visible share of the flow.
- **Corwin-Schultz** (2012) half-spread of the same name on the same day from daily bars
  (``models.backtest.costs``), for comparison.

The calibrated figures leave as :class:`CostCalibration` rows (``calibration_frame``), the
shape the daily backtest can take through ``portfolio.costs``.
"""

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from sklearn.linear_model import LinearRegression

from models.microstructure.reader import DUMMY, PRICE_SCALE

SESSION_S = 23_400  # 09:30-16:00


@dataclass(frozen=True)
class CostCalibration:
    """One name's trading costs for the daily backtest: half the spread to charge per unit
    traded (bp) and the square-root impact coefficient (the backtest's ``impact_coef``)."""

    symbol: str
    half_spread_bp: float
    impact_coef: float
    source: str
    quoted_half_spread_bp: float | None = None
    kyle_lambda_bp_per_musd: float | None = None
    first_day: str | None = None
    last_day: str | None = None


# what the impact table shows a reader (the UI's metadata and the run report)
IMPACT_COLUMNS = (
    "symbol",
    "quoted_half_spread_bp",
    "effective_half_spread_bp",
    "cs_half_spread_bp",
    "kyle_lambda_bp_per_musd",
    "kyle_r2_oos",
    "sqrt_coef",
    "sqrt_r2_oos",
)


def calibration_frame(rows: list[CostCalibration]) -> pl.DataFrame:
    schema = {
        "symbol": pl.String,
        "half_spread_bp": pl.Float64,
        "impact_coef": pl.Float64,
        "source": pl.String,
        "quoted_half_spread_bp": pl.Float64,
        "kyle_lambda_bp_per_musd": pl.Float64,
        "first_day": pl.String,
        "last_day": pl.String,
    }
    return pl.DataFrame([asdict(r) for r in rows], schema=schema)


def quoted_half_spread_bp(t_ns: np.ndarray, ask: np.ndarray, bid: np.ndarray) -> float:
    """Time-weighted (ask - bid) / 2 / mid in bp over the states where both sides hold a
    level; ``ask``/``bid`` in LOBSTER units with the dummies for empty sides."""
    both = (ask != DUMMY) & (bid != -DUMMY)
    dt = np.diff(t_ns, append=t_ns[-1]).astype(float)
    hs = np.where(both, (ask - bid) / (ask + bid) * 1e4, 0.0)  # (a - b) / 2 / ((a + b) / 2)
    w = np.where(both, dt, 0.0)
    return float((hs * w).sum() / w.sum()) if w.sum() > 0 else float("nan")


def effective_half_spread_bp(
    kind: np.ndarray, price: np.ndarray, size: np.ndarray, sign: np.ndarray,
    ask: np.ndarray, bid: np.ndarray,
) -> float:  # fmt: skip
    """Share-weighted s (p - m) / m in bp over the executions (types 4 and 5), m the mid
    before each (the previous line's book); ``price`` in LOBSTER units."""
    n = len(kind)
    prev = np.arange(n) - 1
    ok = np.isin(kind, (4, 5)) & (prev >= 0)
    ok[ok] &= (ask[prev[ok]] != DUMMY) & (bid[prev[ok]] != -DUMMY)
    m = (ask[prev[ok]] + bid[prev[ok]]) / 2
    eff = sign[ok] * (price[ok] - m) / m * 1e4
    w = size[ok].astype(float)
    return float((eff * w).sum() / w.sum()) if w.sum() > 0 else float("nan")


@dataclass(frozen=True)
class ImpactFit:
    coef: float
    intercept: float
    r2_in: float
    r2_oos: float
    n_train: int
    n_test: int


def _oos_r2(y: np.ndarray, pred: np.ndarray, train_mean: float) -> float:
    sst = np.sum((y - train_mean) ** 2)
    return float(1 - np.sum((y - pred) ** 2) / sst) if sst > 0 else float("nan")


def fit_line(x: np.ndarray, y: np.ndarray, n_train: int, intercept: bool) -> ImpactFit:
    """OLS of ``y`` on ``x`` over the first ``n_train`` rows, scored on the rest."""
    X = x.reshape(-1, 1)
    model = LinearRegression(fit_intercept=intercept).fit(X[:n_train], y[:n_train])
    mean = float(y[:n_train].mean())
    return ImpactFit(
        float(model.coef_[0]),
        float(model.intercept_) if intercept else 0.0,
        _oos_r2(y[:n_train], model.predict(X[:n_train]), mean),
        _oos_r2(y[n_train:], model.predict(X[n_train:]), mean),
        n_train,
        len(y) - n_train,
    )


@dataclass(frozen=True)
class DailyScale:
    """sigma (daily volatility, bp) and V (daily volume, shares), and where they came from."""

    sigma_bp: float
    volume: float
    source: str


def daily_scale(bars: pl.DataFrame | None, day, window: int = 20) -> DailyScale | None:
    """From ``[date, close, volume]`` daily bars: the 20 days before ``day`` (never ``day``
    itself): standard deviation of the daily log returns and the mean volume."""
    if bars is None or bars.is_empty() or "volume" not in bars.columns:
        return None
    before = bars.filter(pl.col("date") < day).sort("date").tail(window + 1)
    if len(before) < window // 2:
        return None
    r = np.diff(np.log(before["close"].to_numpy()))
    return DailyScale(
        float(np.std(r, ddof=1) * 1e4),
        float(before["volume"].tail(window).mean()),
        f"daily bars, {len(r)} days before {day}",
    )


def intraday_scale(returns_bp: np.ndarray, volume: np.ndarray, interval_s: int) -> DailyScale:
    """sigma and V from intervals (the training ones): the interval return's deviation
    scaled to a session, and the session's volume at the intervals' rate."""
    per_day = SESSION_S / interval_s
    return DailyScale(
        float(np.nanstd(returns_bp, ddof=1) * np.sqrt(per_day)),
        float(np.nansum(volume) / len(volume) * per_day),
        "intraday intervals of the training period",
    )


def impact_fits(
    intervals: pl.DataFrame,
    scale: DailyScale | None,
    train_fraction: float = 0.6,
    interval_s: int = 10,
) -> dict:
    """Kyle's lambda and the square-root law on one ticker's intervals (``return_bp``,
    ``signed_volume``, ``mid_open``; time order, days concatenated)."""
    frame = intervals.drop_nulls(["return_bp", "mid_open"]).filter(pl.col("return_bp").is_finite())
    r = frame["return_bp"].to_numpy()
    q = frame["signed_volume"].to_numpy().astype(float)
    dollars = q * frame["mid_open"].to_numpy() / 1e6
    n_train = int(len(r) * train_fraction)
    if n_train < 10 or len(r) - n_train < 10:
        raise ValueError(f"{len(r)} intervals are too few to fit and test an impact model")
    if scale is None:
        scale = intraday_scale(
            r[:n_train], np.abs(frame["volume"].to_numpy()[:n_train]), interval_s
        )
    sqrt_x = scale.sigma_bp * np.sign(q) * np.sqrt(np.abs(q) / scale.volume)
    kyle = fit_line(dollars, r, n_train, intercept=True)
    root = fit_line(sqrt_x, r, n_train, intercept=False)
    return {
        "kyle": kyle,
        "sqrt": root,
        "scale": scale,
        "exponent": impact_exponent(q[:n_train], r[:n_train]),
        "x_share": q / scale.volume,
        "returns": r,
        "n_train": n_train,
    }


def impact_exponent(q: np.ndarray, r: np.ndarray, bins: int = 10) -> float:
    """delta in E[r | Q] ~ sign(Q) |Q|^delta: the slope of log mean signed return on log mean
    |Q| across quantile bins of |Q| (signs pooled: r sign(Q)); NaN when the bins' means are not
    all positive."""
    nz = q != 0
    a, y = np.abs(q[nz]), r[nz] * np.sign(q[nz])
    if len(a) < bins * 5:
        return float("nan")
    edges = np.quantile(a, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, a, side="right") - 1, 0, bins - 1)
    mq = np.array([a[which == b].mean() for b in range(bins) if (which == b).any()])
    mr = np.array([y[which == b].mean() for b in range(bins) if (which == b).any()])
    if (mr <= 0).any() or len(mq) < 3:
        return float("nan")
    return float(np.polyfit(np.log(mq), np.log(mr), 1)[0])


def corwin_schultz_bp(
    bars: pl.DataFrame | None, symbol: str, day
) -> tuple[float | None, float | None]:
    """Half the Corwin-Schultz spread (bp) of ``day`` (from ``day`` and the day before) and
    its 20-day mean, from ``[date, high, low, close, volume]`` daily bars."""
    if bars is None or bars.is_empty() or not {"high", "low"} <= set(bars.columns):
        return None, None
    from models.backtest.costs import SPREAD_ESTIMATORS, corwin_schultz_daily

    frame = bars.filter(pl.col("date") <= day).with_columns(symbol=pl.lit(symbol))
    frame = frame.select("symbol", "date", "high", "low")
    daily = corwin_schultz_daily(frame).filter(pl.col("date") == day)
    mean = SPREAD_ESTIMATORS["corwin_schultz"](frame, 20).filter(pl.col("date") == day)
    if daily.is_empty() or mean.is_empty() or mean["spread"][0] is None:
        return None, None
    return float(daily["_cs"][0] / 2 * 1e4), float(mean["spread"][0] / 2 * 1e4)


def spreads(events: pl.DataFrame, book: pl.DataFrame) -> dict[str, float]:
    """Quoted and effective half-spread (bp) of one day from ``lob_events`` and ``lob_book``."""
    t = events["t_ns"].to_numpy()
    ask = (book["ask_price_1"] * PRICE_SCALE).round().fill_null(DUMMY).cast(pl.Int64).to_numpy()
    bid = (book["bid_price_1"] * PRICE_SCALE).round().fill_null(-DUMMY).cast(pl.Int64).to_numpy()
    price = (events["price"] * PRICE_SCALE).round().fill_null(0).cast(pl.Int64).to_numpy()
    return {
        "quoted_half_spread_bp": quoted_half_spread_bp(t, ask, bid),
        "effective_half_spread_bp": effective_half_spread_bp(
            events["type"].to_numpy(),
            price,
            events["size"].to_numpy(),
            events["trade_sign"].to_numpy(),
            ask,
            bid,
        ),  # fmt: skip
        "executions": int(events["type"].is_in([4, 5]).sum()),
        "executed_shares": int(events.filter(pl.col("type").is_in([4, 5]))["size"].sum()),
    }


def impact_summary(
    symbol: str,
    days: list[tuple[str, pl.DataFrame, pl.DataFrame]],
    intervals: pl.DataFrame,
    bars: pl.DataFrame | None,
    *,
    train_fraction: float,
    interval_s: int,
) -> tuple[dict, dict]:
    """One ticker's costs from its ``days`` (``(day key, its executions and events, its book)``,
    in order) and its ``intervals`` (the clock features of those days): quoted and effective
    half-spread (bp), the temporary impact of signed flow per interval fitted as Kyle's lambda
    and as the square-root law (each with its out-of-sample R^2), next to the Corwin-Schultz
    half-spread of the same name and day from daily ``bars`` (None: not given). Returns the
    row and what the impact curve plots."""
    per_day = [spreads(events, book) for _, events, book in days]
    first = min(e["ts"].min() for _, e, _ in days).date()
    last = max(e["ts"].max() for _, e, _ in days).date()
    scale = daily_scale(bars, first)
    fits = impact_fits(intervals, scale, train_fraction, interval_s)
    cs, cs20 = corwin_schultz_bp(bars, symbol, last)
    keys = sorted(k for k, _, _ in days)
    book = next(b for k, _, b in days if k == keys[0])
    levels = int(book.select(pl.col("^ask_price_.*$").is_not_null().any()).sum_horizontal()[0])
    row = {
        "symbol": symbol,
        "days": ",".join(k.split("_")[-1] for k in keys),
        "levels": levels,
        "executions": sum(d["executions"] for d in per_day),
        "quoted_half_spread_bp": float(np.mean([d["quoted_half_spread_bp"] for d in per_day])),
        "effective_half_spread_bp": float(
            np.mean([d["effective_half_spread_bp"] for d in per_day])
        ),
        "kyle_lambda_bp_per_musd": fits["kyle"].coef,
        "kyle_r2_in": fits["kyle"].r2_in,
        "kyle_r2_oos": fits["kyle"].r2_oos,
        "sqrt_coef": fits["sqrt"].coef,
        "sqrt_r2_in": fits["sqrt"].r2_in,
        "sqrt_r2_oos": fits["sqrt"].r2_oos,
        "impact_exponent": fits["exponent"],
        "daily_vol_bp": fits["scale"].sigma_bp,
        "daily_volume": fits["scale"].volume,
        "scale_source": fits["scale"].source,
        "cs_half_spread_bp": cs,
        "cs_half_spread_20d_bp": cs20,
        "interval_s": interval_s,
        "intervals_train": fits["kyle"].n_train,
        "intervals_test": fits["kyle"].n_test,
    }
    curve = {**fits, "price": float(intervals["mid_open"].mean()), "interval_s": interval_s}
    return row, curve
