"""Risk: VaR and ES estimators and their backtests, neural VaR, stress tests, generated scenarios, dynamic correlation, anomalies and the risk report."""
