"""Surveillance: anomalous asset-days by isolation forest, fitted on the past only."""

from collections.abc import Sequence
from datetime import date

import numpy as np
import polars as pl
import polars.selectors  # noqa: F401  (pl.selectors)
from sklearn.ensemble import IsolationForest

DEFAULT_COLUMNS = ("ret_1", "ret_5", "vol_5", "vol_20", "ma_gap_5", "drawdown_20", "range_pos_20")


def anomalies(
    features: pl.DataFrame,
    *,
    since: date,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    contamination: float = 0.01,
    max_train: int = 200_000,
    random_state: int = 0,
) -> pl.DataFrame:
    """Score every asset-day on or after ``since`` with an isolation forest fitted on the rows
    before it (at most the last ``max_train``), so a day is judged against history only.

    Returns ``[symbol, date, score, anomaly, <columns>]``: ``score`` is scikit-learn's
    ``score_samples`` negated (higher = more unusual); ``anomaly`` marks scores above the
    training rows' ``1 - contamination`` quantile.
    """
    cols = [c for c in columns if c in features.columns]
    if not cols:  # another feature set: every float feature that is rarely missing
        nulls = features.select(pl.selectors.float().null_count() / max(features.height, 1)).row(
            0, named=True
        )
        cols = [c for c, share in nulls.items() if share < 0.05]
    if not cols:
        raise ValueError("the feature matrix has no float feature to judge anomalies by")
    clean = features.select("symbol", "date", *cols).drop_nulls(cols).sort("date", "symbol")
    past = clean.filter(pl.col("date") < since).tail(max_train)
    recent = clean.filter(pl.col("date") >= since)
    if past.height < 100 or recent.is_empty():
        raise ValueError(
            f"need history before {since} and rows after it (got {past.height} and {recent.height})"
        )
    forest = IsolationForest(n_estimators=200, random_state=random_state, n_jobs=1).fit(
        past.select(cols).to_numpy()
    )
    threshold = np.quantile(-forest.score_samples(past.select(cols).to_numpy()), 1 - contamination)
    score = -forest.score_samples(recent.select(cols).to_numpy())
    return recent.with_columns(score=pl.Series(score), anomaly=pl.Series(score > threshold)).select(
        "symbol", "date", "score", "anomaly", *cols
    )
