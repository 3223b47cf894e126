"""Deflated Sharpe ratio against the paper's worked example; PBO against hand-computed cases."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import kurtosis, norm, skew

from models.backtest.overfitting import deflated_sharpe, probability_of_backtest_overfitting, sharpe


def test_expected_max_sharpe_matches_the_papers_example():
    # Bailey & López de Prado (2014), section "A numerical example": 100 independent trials
    # whose annualised Sharpe ratios have variance 1/2, daily data (250 days a year):
    # SR0 = 0.1132 per day; with SR = 2.5 a year, T = 1250, skew -3, kurtosis 10: DSR = 0.9004.
    from skfolio.measures import expected_max_sharpe_ratio

    sr0 = expected_max_sharpe_ratio(100, np.sqrt(0.5 / 250))
    assert_allclose(sr0, 0.1132, atol=5e-5)
    sr = 2.5 / np.sqrt(250)
    z = (sr - sr0) * np.sqrt(1250 - 1) / np.sqrt(1 + 3 * sr + (10 - 1) / 4 * sr**2)
    assert_allclose(norm.cdf(z), 0.9004, atol=5e-4)


def test_deflated_sharpe_is_the_psr_formula_at_the_expected_max():
    rng = np.random.default_rng(0)
    returns = rng.standard_t(5, size=1250) * 0.01 + 0.0008
    trials = rng.normal(0.0, 0.03, size=40)
    out = deflated_sharpe(returns, trials, n_trials=100)
    sr = returns.mean() / returns.std(ddof=1)
    g3, g4 = skew(returns), kurtosis(returns, fisher=False)
    expected_sr0 = trials.std(ddof=1) * (
        (1 - np.euler_gamma) * norm.ppf(1 - 1 / 100)
        + np.euler_gamma * norm.ppf(1 - 1 / (100 * np.e))
    )
    assert_allclose(out["sr0"], expected_sr0, rtol=1e-12)
    z = (
        (sr - expected_sr0)
        * np.sqrt(len(returns) - 1)
        / np.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    )
    assert_allclose(out["dsr"], norm.cdf(z), rtol=1e-3)
    assert out["n_trials"] == 100
    # more trials, same spread: a higher bar, a lower DSR
    assert deflated_sharpe(returns, trials, n_trials=1000)["dsr"] < out["dsr"]


def test_random_signals_are_not_significant_after_deflation():
    rng = np.random.default_rng(1)
    variants = rng.normal(0.0, 0.01, size=(1500, 50))  # 50 skill-less strategies, 6 years
    srs = sharpe(variants)
    best = variants[:, np.argmax(srs)]
    out = deflated_sharpe(best, srs)
    assert out["psr"] > 0.9  # taken alone, the luckiest looks good ...
    assert out["dsr"] < 0.95  # ... deflated by the 50 trials, it is not significant


def test_pbo_hand_computed_two_trials_two_blocks():
    # Two blocks, two trials; A wins the first block and loses the second, B the reverse. Each
    # split picks the in-sample winner, which is last out of sample: w = 1/3, logit < 0.
    a = np.r_[[0.02, 0.01, 0.03], [-0.02, -0.01, -0.03]]
    b = -a
    out = probability_of_backtest_overfitting(np.c_[a, b], n_blocks=2)
    assert out.n_splits == 2
    assert_allclose(out.logits, np.log(0.5))
    assert out.pbo == 1.0
    assert out.prob_oos_loss == 1.0
    # a trial that wins both halves is never overfit
    c = np.r_[[0.03, 0.02, 0.04], [0.01, 0.02, 0.03]]
    out = probability_of_backtest_overfitting(np.c_[a, c], n_blocks=2)
    assert_allclose(out.logits, np.log(2.0))
    assert out.pbo == 0.0


def test_pbo_of_noise_is_about_one_half_and_of_skill_near_zero():
    # one panel's PBO varies a lot (its 252 splits share data: 0.10 to 0.80 over these seeds);
    # over panels, skill-less trials are overfit half the time
    panels = [np.random.default_rng(s).normal(0.0, 0.01, size=(1600, 30)) for s in range(8)]
    pbos = [probability_of_backtest_overfitting(m, n_blocks=10).pbo for m in panels]
    assert 0.4 < np.mean(pbos) < 0.6
    skilled = panels[2].copy()  # the most overfit-looking panel of noise
    skilled[:, 7] += 0.004  # one trial with a real edge (daily Sharpe 0.4)
    out = probability_of_backtest_overfitting(skilled, n_blocks=10)
    assert out.pbo < 0.05
    assert out.n_splits == 252  # C(10, 5)


def test_pbo_refuses_bad_input():
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(np.zeros((100, 3)), n_blocks=3)
    with pytest.raises(ValueError, match="NaN"):
        probability_of_backtest_overfitting(np.full((100, 3), np.nan))
    with pytest.raises(ValueError, match="two trials"):
        probability_of_backtest_overfitting(np.zeros((100, 1)))
