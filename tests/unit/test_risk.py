from datetime import date

import polars as pl
import pytest

from models.features.alternative import empty_alt
from models.risk import stress_test


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
