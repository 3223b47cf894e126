"""The leakage check fails on planted leaks and passes without them."""

import numpy as np
import polars as pl
import pytest
from conftest import random_walk_panel

from models.features import build_feature_matrix
from models.features.alternative import empty_alt
from models.learning.dataset import assemble
from models.learning.labels import forward_returns
from models.learning.leakage import feature_label_ic, feature_leaks, oos_leaks, split_leaks
from models.learning.metrics import ic_summary
from models.learning.training import BaseModels, oof_frame, tuning_window

EMPTY_ALT = empty_alt()


@pytest.fixture(scope="module")
def data():
    panel = random_walk_panel(n_symbols=10, n_days=700, seed=11)
    features = build_feature_matrix(panel.lazy(), EMPTY_ALT.lazy(), feature_set="minimal").collect()
    labels = forward_returns(panel.lazy(), 5).collect()
    return features, labels


def _oof(features, labels, purge):
    ds = assemble(features, labels)
    tune_end, _ = tuning_window(ds, 0.5)
    base = BaseModels({"ridge": {"alpha": 1.0}}, {}, tune_end, "rank", ds.feature_names, 0, 1)
    return oof_frame(ds, base, n_splits=3, purge=purge)


def test_clean_pipeline_passes(data):
    features, labels = data
    oof = _oof(features, labels, purge=True)
    ic = feature_label_ic(
        features, labels, [c for c in features.columns if c not in ("symbol", "date")]
    )
    summary = pl.DataFrame(
        [
            {
                "model": "ridge",
                **ic_summary(
                    oof["date"].to_numpy(), oof["pred_ridge"].to_numpy(), oof["label"].to_numpy()
                ),
            }
        ]
    )
    assert split_leaks(oof) == [] and feature_leaks(ic) == [] and oos_leaks(summary) == []
    assert ic["mean_rank_ic"].abs().max() < 0.1


def test_splits_without_purge_are_caught(data):
    features, labels = data
    leaks = split_leaks(_oof(features, labels, purge=False))
    assert leaks and {x.kind for x in leaks} == {"unpurged_split"}
    assert "on or after the fold's first date" in leaks[0].detail


def test_label_shifted_into_features_is_caught_and_named(data):
    features, labels = data
    # the planted leak: tomorrow's 5-day return, as if a feature had used shift(-5)
    leaked = features.join(
        labels.select("symbol", "date", pl.col("label").alias("peek")),
        on=["symbol", "date"],
        how="left",
    )
    names = [c for c in leaked.columns if c not in ("symbol", "date")]
    found = feature_leaks(feature_label_ic(leaked, labels, names))
    assert [x.where for x in found] == ["peek"]
    # and the model trained on it scores an implausible out-of-sample IC, caught too
    oof = _oof(leaked, labels, purge=True)
    summary = pl.DataFrame(
        [
            {
                "model": "ridge",
                **ic_summary(
                    oof["date"].to_numpy(), oof["pred_ridge"].to_numpy(), oof["label"].to_numpy()
                ),
            }
        ]
    )
    assert [x.kind for x in oos_leaks(summary)] == ["implausible_oos"]
    assert np.isfinite(summary["rank_ic"][0]) and summary["rank_ic"][0] > 0.5
