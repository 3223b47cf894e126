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

__all__ = [
    "cluster_constraints",
    "cluster_exposure",
    "clusters_before",
    "correlation_clusters",
    "ForecastMu",
    "buy_and_hold",
    "equal_weights",
    "hrp_weights",
    "mean_variance_weights",
    "ml_expected_returns",
    "optimised_weights",
    "rebalance_dates",
    "risk_parity_weights",
    "top_k_weights",
]
