from datetime import date

import numpy as np
import polars as pl
import pytest
from scipy import stats

from models.features.alternative import empty_alt
from models.risk.stress import hypothetical_shocks, stress_test


def test_stress_test_replays_weights_and_reports_coverage():
    prices = pl.DataFrame(
        {
            "symbol": ["A", "A", "B", "B"],
            "date": [date(2020, 2, 19), date(2020, 3, 23)] * 2,
            "close": [100.0, 70.0, 50.0, 45.0],
        }
    )
    out = stress_test(
        {"A": 0.5, "B": 0.3, "C": 0.2},
        prices,
        {
            "covid": (date(2020, 2, 19), date(2020, 3, 23)),
            "gfc": (date(2008, 9, 12), date(2008, 10, 10)),
        },
    )
    covid = out.filter(pl.col("episode") == "covid").row(0, named=True)
    assert covid["coverage"] == pytest.approx(0.8)
    assert covid["portfolio_return"] == pytest.approx((0.5 * -0.3 + 0.3 * -0.1) / 0.8)
    gfc = out.filter(pl.col("episode") == "gfc").row(0, named=True)
    assert gfc["portfolio_return"] is None and gfc["coverage"] == 0.0


def test_anomalies_flag_an_injected_shock_and_use_the_past_only(panel):
    from models.features import build_feature_matrix
    from models.risk.anomaly import anomalies

    shocked = panel.with_columns(
        pl.when((pl.col("symbol") == "S02") & (pl.col("date") >= date(2016, 5, 2)))
        .then(pl.col("close") * 0.6)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    alt = empty_alt()
    features = build_feature_matrix(shocked.lazy(), alt.lazy()).collect()
    since = date(2016, 4, 1)
    out = anomalies(features, since=since, contamination=0.01)
    assert out["date"].min() >= since
    top = out.sort("score", descending=True).row(0, named=True)
    assert top["symbol"] == "S02" and top["date"] == date(2016, 5, 2) and top["anomaly"]
    assert out["anomaly"].mean() < 0.1


def test_hypothetical_shocks_pass_through_betas_and_scale_volatility():
    rng = np.random.default_rng(0)
    dates = pl.date_range(date(2020, 1, 1), date(2021, 12, 31), "1d", eager=True)[:300]
    mkt = rng.normal(0, 0.01, 300)
    returns = pl.concat(
        pl.DataFrame({"symbol": s, "date": dates, "ret": beta * mkt + rng.normal(0, 0.005, 300)})
        for s, beta in (("A", 0.5), ("B", 1.5))
    )
    out = hypothetical_shocks(
        {"A": 0.5, "B": 0.5}, returns, pl.DataFrame({"date": dates, "ret": mkt}), lookback=250
    )
    shocks = dict(zip(out["shock"], out["portfolio_return"], strict=True))
    ten = next(v for k, v in shocks.items() if k.startswith("market -10%"))
    assert ten == pytest.approx(-0.10, abs=0.01)  # book beta about (0.5 + 1.5) / 2 = 1
    today = shocks["one-day 99% VaR today"]
    assert today < 0  # returns: a loss is negative
    assert shocks["one-day 99% VaR, volatility x2"] == pytest.approx(2 * today)
    wide = returns.pivot(on="symbol", index="date", values="ret").tail(250)
    book = 0.5 * wide["A"].to_numpy() + 0.5 * wide["B"].to_numpy()
    assert today == pytest.approx(stats.norm.ppf(0.01) * book.std(ddof=1), rel=1e-9)
