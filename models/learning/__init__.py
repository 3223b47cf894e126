"""Forecasting: datasets and labels, purged cross-validation, the model zoo, tuning, training, stacking, leakage checks, explanations, promotion and the peer's protocol."""
