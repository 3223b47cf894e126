"""Allocators: turn signals and past returns into target weights on rebalance dates."""

from models.portfolio.allocators import (
    ForecastMu,
    buy_and_hold,
    equal_weights,
    hrp_weights,
    mean_variance_weights,
    ml_expected_returns,
    optimised_weights,
    rebalance_dates,
    risk_parity_weights,
    top_k_weights,
)
from models.portfolio.clusters import (
    cluster_constraints,
    cluster_exposure,
    clusters_before,
    correlation_clusters,
)
from models.portfolio.turnover import hold_buffer_weights, smooth_scores, topk_dropout_weights

__all__ = [
    "cluster_constraints",
    "cluster_exposure",
    "clusters_before",
    "correlation_clusters",
    "ForecastMu",
    "buy_and_hold",
    "equal_weights",
    "hold_buffer_weights",
    "hrp_weights",
    "mean_variance_weights",
    "ml_expected_returns",
    "optimised_weights",
    "rebalance_dates",
    "risk_parity_weights",
    "smooth_scores",
    "top_k_weights",
    "topk_dropout_weights",
]
