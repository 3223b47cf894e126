"""The statistical forecasts: point-in-time, and our vectorised filters agree with the
libraries' own filters for the same parameters."""

import warnings

import numpy as np
import polars as pl
from arch import arch_model
from conftest import random_walk_panel
from statsmodels.tsa.arima.model import ARIMA

from models.features.statistical import (
    STAT_COLUMNS,
    _arma_block,
    _garch_block,
    statistical_features,
)


def test_values_up_to_t_ignore_everything_after_t():
    panel = random_walk_panel(n_symbols=3, n_days=700, seed=5)
    cut = panel["date"].unique().sort()[500]
    rng = np.random.default_rng(9)
    shocked = panel.with_columns(
        pl.when(pl.col("date") > cut)
        .then(pl.col("close") * np.exp(rng.normal(0, 0.2, len(panel))))
        .otherwise(pl.col("close"))
    )
    a = statistical_features(panel, refit_every=150, train_window=300)
    b = statistical_features(shocked, refit_every=150, train_window=300)
    past_a, past_b = (f.filter(pl.col("date") <= cut) for f in (a, b))
    assert past_a[STAT_COLUMNS[0]].drop_nulls().len() > 100
    assert past_a.equals(past_b)
    assert not a.filter(pl.col("date") > cut).equals(b.filter(pl.col("date") > cut))


def test_garch_filter_matches_arch_for_fixed_parameters():
    rng = np.random.default_rng(0)
    r = rng.standard_t(5, 1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = arch_model(r[:800], mean="Constant", vol="GARCH", rescale=False).fit(disp="off")
        fixed = arch_model(r, mean="Constant", vol="GARCH", rescale=False).fix(fit.params)
    p = fit.params
    ours = _garch_block(r - p["mu"], p["omega"], p["alpha[1]"], p["beta[1]"], float(np.var(r)))
    # ours[t] is the variance forecast for t + 1; arch's conditional_volatility[t + 1] the same.
    # The two start from different initial variances; the difference decays as beta^t.
    theirs = fixed.conditional_volatility[1:] ** 2
    np.testing.assert_allclose(ours[:-1][-300:], theirs[-300:], rtol=1e-6)


def test_arma_filter_matches_statsmodels_for_fixed_parameters():
    rng = np.random.default_rng(1)
    e = rng.normal(size=2001)
    r = 0.05 + e[1:] + 0.3 * e[:-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ARIMA(r[:1000], order=(1, 0, 1), trend="c").fit()
        applied = fit.apply(r)
    mu, phi, theta = fit.params[:3]
    ours = mu + _arma_block(r - mu, phi, theta, horizon=1)  # forecast of r[t + 1] made at t
    theirs = applied.fittedvalues[1:]  # statsmodels' one-step prediction of r[t + 1]
    np.testing.assert_allclose(ours[:-1][200:], theirs[200:], rtol=1e-6, atol=1e-8)
