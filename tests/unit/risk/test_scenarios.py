"""Generated scenarios: the realism checks accept real windows and reject broken generators."""

import numpy as np
import polars as pl
import pytest
from numpy.testing import assert_allclose
from skfolio.datasets import load_sp500_dataset

from models.risk.scenarios import (
    WindowGAN,
    block_bootstrap,
    generate_scenarios,
    realism_checks,
    return_windows,
    scenario_pnl,
)


@pytest.fixture(scope="module")
def returns() -> np.ndarray:
    """Real daily returns of 8 of skfolio's bundled S&P 500 stocks since 2010."""
    prices = load_sp500_dataset().loc["2010":].iloc[:, :8]
    return prices.pct_change().dropna().to_numpy()


class IidGaussian(WindowGAN):
    """Broken on purpose: i.i.d. normal returns with each asset's real volatility."""

    def fit(self, windows, progress=None):
        self.shape_ = windows.shape[1:]
        self.scale_ = windows.reshape(-1, self.shape_[1]).std(axis=0)
        return self

    def sample(self, n, seed=0):
        return np.random.default_rng(seed).normal(size=(n, *self.shape_)) * self.scale_


class Collapsed(WindowGAN):
    """Broken on purpose: one real window, repeated with a whisper of noise."""

    def fit(self, windows, progress=None):
        self.window_ = windows[len(windows) // 2]
        return self

    def sample(self, n, seed=0):
        noise = np.random.default_rng(seed).normal(scale=1e-5, size=(n, *self.window_.shape))
        return self.window_ + noise


def test_windows_are_consecutive_days(returns):
    w = return_windows(returns, 20)
    assert w.shape == (len(returns) - 19, 20, 8)
    assert_allclose(w[5], returns[5:25])


def test_real_windows_pass_every_check(returns):
    real = return_windows(returns, 20)
    checks = realism_checks(real, block_bootstrap(real, 3000, seed=1))
    assert all(c.passed for c in checks), checks


@pytest.mark.parametrize(
    ("broken", "fails"),
    [
        (IidGaussian, {"excess kurtosis", "|r| autocorrelation", "mean pairwise correlation"}),
        (Collapsed, {"window distance"}),
    ],
)
def test_a_broken_generator_is_rejected_and_the_bootstrap_used(returns, broken, fails):
    out = generate_scenarios(returns, 20, 2000, broken(), seed=0)
    assert out.source == "bootstrap"
    failed = set(out.checks.filter(~pl.col("passed"))["name"])
    assert fails <= failed, failed
    assert all(name in out.reason for name in fails)
    real = return_windows(returns, 20)
    # bootstrap scenarios are real windows
    assert any(np.array_equal(out.windows[0], w) for w in real)


def test_gan_trains_reproducibly_and_samples_the_right_shape(returns):
    real = return_windows(returns[:800, :4], 10)
    a = WindowGAN(steps=60, hidden=64, batch_size=64, random_state=3).fit(real)
    b = WindowGAN(steps=60, hidden=64, batch_size=64, random_state=3).fit(real)
    sa, sb = a.sample(500, seed=1), b.sample(500, seed=1)
    assert sa.shape == (500, 10, 4) and np.isfinite(sa).all()
    assert_allclose(sa, sb)
    assert len(a.losses_) == 2 and all(np.isfinite(x).all() for x in a.losses_)
    # whatever it learned in 60 steps, the checks judge it, and each check reports both sides
    checks = realism_checks(real, sa)
    assert {c.name for c in checks} >= {"excess kurtosis", "volatility"}


def test_scenario_pnl_compounds_each_asset_and_weights_it():
    scenarios = np.array([[[0.1, -0.5], [0.1, 0.0]]])  # one scenario, two days, two assets
    pnl = scenario_pnl(scenarios, np.array([0.6, 0.4]), horizon=2)
    assert_allclose(pnl, [0.6 * (1.1 * 1.1 - 1) + 0.4 * (0.5 - 1)])
