"""The labels asset applies the configured per-date transform; the default changes nothing."""

import numpy as np
import polars as pl
from conftest import random_walk_panel

from assets.features import LabelsConfig, labels
from models.features.alternative import empty_alt
from models.learning.labels import forward_returns


def _run(transform: str, sectors: pl.DataFrame) -> pl.DataFrame:
    panel = random_walk_panel(n_symbols=6, n_days=60, seed=4)
    # every row judged eligible: an empty screen (rows it has not judged are kept)
    universe = pl.DataFrame(
        schema={
            "symbol": pl.String,
            "date": pl.Date,
            "eligible": pl.Boolean,
            "rule": pl.String,
            "reason": pl.String,
        }
    )
    return labels(LabelsConfig(transform=transform), panel, empty_alt(), universe, sectors).value


def test_default_is_todays_label_and_sector_rank_is_per_date_and_sector():
    sectors = pl.DataFrame({"symbol": [f"S{i}" for i in range(6)], "sector": ["a", "b"] * 3})
    panel = random_walk_panel(n_symbols=6, n_days=60, seed=4)
    assert _run("none", sectors).equals(forward_returns(panel.lazy(), 5).collect())
    ranked = _run(
        "sector_rank", sectors.with_columns(symbol=pl.Series(sorted(panel["symbol"].unique())))
    )
    # three names per sector and date: ranks -1/3, 0, +1/3 (unit-variance scale) in each
    spread = ranked.group_by("date").agg(pl.col("label").sort())["label"].to_list()
    np.testing.assert_allclose(
        spread[0], np.repeat(np.array([1, 2, 3]) / 3 - 0.5, 2) * 12**0.5, atol=1e-12
    )
    neutral = _run("market_neutral", sectors)
    np.testing.assert_allclose(
        neutral.group_by("date").agg(pl.col("label").sum())["label"], 0, atol=1e-12
    )
