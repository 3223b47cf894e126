"""Acceptance table of the model zoo on the bundled data of the fast-profile run: every model
and the ensemble, tuned and scored the pipeline's way, out-of-sample on the same rows.

Kept small for the suite (the last 1,000 dates, one Optuna trial per model); the full table
comes from ``python -m benchmarks.zoo``. The figures are printed as they are; what is asserted
is that each is an honest out-of-sample number, not that it is good.
"""

import numpy as np
import polars as pl
import pytest

from assets._meta import to_markdown
from benchmarks.zoo import zoo_table
from models.features.statistical import statistical_features
from models.learning.dataset import assemble
from models.learning.estimators import MODEL_SPECS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_model_and_the_ensemble_get_oos_figures(materialized):
    lake = materialized.home / "lake"
    features = pl.read_parquet(lake / "feature_matrix.parquet")
    dates = features["date"].unique().sort()
    recent = dates.tail(1000).min()
    # the statistical forecasts need three years before the first scored date, not the whole
    # history since 2007 (each value still uses only days before it)
    since = dates.tail(1000 + 756).min()
    prices = pl.read_parquet(lake / "market_prices.parquet").filter(pl.col("date") >= since)
    stats = statistical_features(prices, n_jobs=2).filter(pl.col("date") >= recent)
    features = features.filter(pl.col("date") >= recent).join(
        stats, on=["symbol", "date"], how="left"
    )
    ds = assemble(features, pl.read_parquet(lake / "labels.parquet"))
    table = zoo_table(
        ds, sorted(MODEL_SPECS), n_trials=1, inner=2, outer=3, progress=lambda m: None
    )
    print(to_markdown(table))
    assert table["model"].to_list() == [*sorted(MODEL_SPECS), "ensemble"]
    scored = table.filter(pl.col("n_dates") > 0)
    # every model but one that predicts a constant is scored on the same dates
    assert scored["n_dates"].n_unique() == 1 and scored["n_dates"][0] > 150
    assert "ensemble" in scored["model"].to_list()
    # out-of-sample daily Rank IC of real equities: small, and nowhere near a leak
    assert (scored["rank_ic"].abs() < 0.2).all()
    assert np.isfinite(scored["rank_icir"].to_numpy()).all()
