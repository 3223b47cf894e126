"""Allocators: turn signals and past returns into target weights on rebalance dates."""

from models.portfolio.allocators import equal_weights, hrp_weights, rebalance_dates, top_k_weights

__all__ = ["equal_weights", "hrp_weights", "rebalance_dates", "top_k_weights"]
