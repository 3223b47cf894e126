from datetime import date

import numpy as np
import polars as pl
import pytest
from scipy import stats

from models.features.alternative import empty_alt
from models.risk import stress_test, var_table


def test_var_table_matches_definitions():
    rng = np.random.default_rng(3)
    r = rng.standard_t(4, 5000) * 0.01
    table = var_table(r, (0.95, 0.99))
    hist = table.filter(pl.col("method") == "historical")
    # historical VaR is the empirical loss quantile, CVaR the mean loss beyond it
    q95 = -np.quantile(r, 0.05)
    assert hist.filter(pl.col("level") == 0.95)["var"][0] == pytest.approx(q95, rel=0.02)
    tail = r[r <= -hist.filter(pl.col("level") == 0.95)["var"][0]]
    assert hist.filter(pl.col("level") == 0.95)["cvar"][0] == pytest.approx(-tail.mean(), rel=0.02)
    normal = table.filter((pl.col("method") == "normal") & (pl.col("level") == 0.99)).row(
        0, named=True
    )
    assert normal["var"] == pytest.approx(-(r.mean() + r.std(ddof=1) * stats.norm.ppf(0.01)))
    assert (table["cvar"] > table["var"]).all()


def test_ten_day_var_exceeds_one_day():
    r = np.random.default_rng(0).normal(0, 0.01, 2000)
    one = var_table(r, (0.99,), horizon=1)
    ten = var_table(r, (0.99,), horizon=10)
    assert (ten["var"] > 2.5 * one["var"]).all()


def test_too_few_returns_is_an_error():
    with pytest.raises(ValueError, match="at least 30"):
        var_table(np.zeros(10))


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
    from models.anomaly import anomalies
    from models.features import build_feature_matrix

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
