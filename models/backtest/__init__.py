"""Backtesting: the vectorised engine, trading-cost estimates, overfitting statistics and the strategy table."""
