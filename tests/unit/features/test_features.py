"""Feature values against hand computations, and the point-in-time proof."""

from datetime import date

import numpy as np
import polars as pl
from numpy.testing import assert_allclose
from polars.testing import assert_frame_equal

from models.features import build_feature_matrix, feature_columns
from models.learning.labels import forward_returns


def test_point_in_time_truncating_the_future_changes_no_past_feature(panel, alt):
    full = build_feature_matrix(panel.lazy(), alt.lazy()).collect()
    for cut in (date(2015, 6, 30), date(2015, 11, 13), date(2016, 3, 1)):
        past = build_feature_matrix(
            panel.filter(pl.col("date") <= cut).lazy(),
            alt.filter(pl.col("available_date") <= cut).lazy(),
        ).collect()
        assert_frame_equal(full.filter(pl.col("date") <= cut), past, check_exact=False, rtol=1e-9)


def test_monthly_series_enters_only_after_its_publication_date(panel, alt):
    out = build_feature_matrix(panel.lazy(), alt.lazy()).collect()
    monthly = alt.filter(pl.col("series") == "FF_SMB").sort("available_date")
    first = monthly.row(0, named=True)
    assert (
        out.filter(pl.col("date") < first["available_date"])["FF_SMB"].null_count()
        == out.filter(pl.col("date") < first["available_date"]).height
    )
    on_day = out.filter(pl.col("date") >= first["available_date"]).sort("date").row(0, named=True)
    assert on_day["FF_SMB"] == first["value"]


def test_price_features_match_hand_computation(panel, alt):
    out = (
        build_feature_matrix(panel.lazy(), alt.lazy())
        .collect()
        .filter(pl.col("symbol") == "S03")
        .sort("date")
    )
    close = panel.filter(pl.col("symbol") == "S03").sort("date")["close"].to_numpy()
    assert_allclose(out["ret_20"].to_numpy()[20:], close[20:] / close[:-20] - 1)
    log_ret = np.diff(np.log(close))
    vol = np.array([log_ret[i - 20 : i].std(ddof=1) for i in range(20, len(log_ret) + 1)])
    assert_allclose(out["vol_20"].to_numpy()[20:], vol, rtol=1e-8)
    assert out["ret_20"][:20].null_count() == 20


def test_cross_sectional_rank_lies_in_unit_interval(panel, alt):
    out = build_feature_matrix(panel.lazy(), alt.lazy()).collect().drop_nulls("ret_5_csrank")
    assert out["ret_5_csrank"].min() > 0 and out["ret_5_csrank"].max() == 1.0
    per_day = out.group_by("date").agg(pl.col("ret_5_csrank").max())
    assert (per_day["ret_5_csrank"] == 1.0).all()


def test_features_are_finite_or_null(panel, alt):
    out = build_feature_matrix(panel.lazy(), alt.lazy()).collect()
    floats = out.select(feature_columns(out))
    assert floats.select(pl.all().is_nan().any() | pl.all().is_infinite().any()).row(0) == tuple(
        [False] * floats.width
    )


def test_labels_are_forward_returns_with_their_end_date(panel):
    labels = (
        forward_returns(panel.lazy(), horizon=3)
        .collect()
        .filter(pl.col("symbol") == "S00")
        .sort("date")
    )
    s0 = panel.filter(pl.col("symbol") == "S00").sort("date")
    close, dates = s0["close"].to_numpy(), s0["date"].to_numpy()
    assert_allclose(labels["label"].to_numpy(), close[3:] / close[:-3] - 1)
    assert (labels["label_end"].to_numpy() == dates[3:]).all()
    assert labels.height == s0.height - 3


def test_no_window_crosses_into_another_symbol(panel):
    """Each symbol computed alone gives exactly what it gets inside the panel."""
    from models.features import price_features

    together = price_features(panel.lazy()).collect()
    alone = pl.concat(
        price_features(part.lazy()).collect()
        for _, part in panel.group_by("symbol", maintain_order=True)
    ).sort("symbol", "date")
    assert_frame_equal(together, alone)


def test_no_label_kind_spans_a_hole_in_a_symbols_history(panel):
    from models.learning.labels import triple_barrier

    dates = panel["date"].unique().sort()
    hole = (dates[100], dates[250])
    gapped = panel.filter(~((pl.col("symbol") == "S01") & pl.col("date").is_between(*hole)))
    for labels in (
        forward_returns(gapped.lazy(), 5, max_gap_days=10).collect(),
        triple_barrier(gapped.lazy(), 5, 1.0, 20, max_gap_days=10).collect(),
    ):
        s01 = labels.filter(pl.col("symbol") == "S01")
        # no label of the rows before the hole ends after it; the rows after keep theirs
        assert s01.filter((pl.col("date") < hole[0]) & (pl.col("label_end") > hole[0])).is_empty()
        assert s01.filter(pl.col("date") > hole[1]).height > 100
    # exactly the five rows whose horizon spans the hole lose their label
    every = forward_returns(gapped.lazy(), 5).collect().filter(pl.col("symbol") == "S01")
    kept = forward_returns(gapped.lazy(), 5, max_gap_days=10).collect()
    assert every.height - kept.filter(pl.col("symbol") == "S01").height == 5
