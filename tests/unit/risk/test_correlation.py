"""Dynamic correlation: EWMA against its closed form, DCC recovering simulated parameters,
no look-ahead, and the out-of-sample comparison on data with a known correlation process."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from models.risk.correlation import (
    _dcc_states,
    _to_correlation,
    compare_correlation_forecasts,
    dcc_fit,
    ewma_correlation,
)


def simulate_dcc(T: int, a: float, b: float, seed: int = 0) -> np.ndarray:
    """Standardised returns whose correlation follows a DCC(1,1) around a fixed target."""
    rng = np.random.default_rng(seed)
    qbar = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]])
    q, z = qbar.copy(), np.empty((T, 3))
    for t in range(T):
        z[t] = np.linalg.cholesky(_to_correlation(q)) @ rng.normal(size=3)
        q = (1 - a - b) * qbar + a * np.outer(z[t], z[t]) + b * q
    return z


def test_ewma_is_the_exponentially_weighted_sum_of_past_outer_products():
    r = np.random.default_rng(0).normal(size=(200, 3))
    lam, t = 0.94, 150
    q0 = np.cov(r[:60], rowvar=False)
    direct = lam**t * q0 + (1 - lam) * sum(
        lam ** (t - 1 - k) * np.outer(r[k], r[k]) for k in range(t)
    )
    assert_allclose(ewma_correlation(r, lam)[t], _to_correlation(direct), rtol=1e-10)


def test_dcc_recovers_the_simulated_parameters():
    z = simulate_dcc(4000, a=0.05, b=0.90)
    a, b = dcc_fit(z)
    assert a == pytest.approx(0.05, abs=0.02)
    assert b == pytest.approx(0.90, abs=0.05)


def test_states_use_only_earlier_days():
    r = np.random.default_rng(1).normal(size=(300, 3))
    later = r.copy()
    later[200:] *= 5
    assert_allclose(ewma_correlation(r)[:201], ewma_correlation(later)[:201])
    qbar = np.cov(r, rowvar=False)
    assert_allclose(
        _dcc_states(r, 0.05, 0.9, qbar)[:201], _dcc_states(later, 0.05, 0.9, qbar)[:201]
    )


def test_dcc_beats_the_rolling_year_on_a_dcc_process():
    z = simulate_dcc(2000, a=0.08, b=0.90, seed=2) * 0.01
    out = compare_correlation_forecasts(z, split=1200, horizon=20)
    scores = dict(zip(out.scores["method"], out.scores["mse"], strict=True))
    assert set(scores) == {"rolling", "ewma", "dcc", "lstm"}
    assert scores["dcc"] < scores["rolling"]
    assert out.scores["blocks"][0] == 40
    for m, c in out.latest.items():  # every forecast is a valid correlation matrix
        assert_allclose(np.diag(c), 1.0, atol=1e-9, err_msg=m)
        assert np.linalg.eigvalsh(c).min() > -1e-9, m
    with pytest.raises(ValueError, match="250"):
        compare_correlation_forecasts(z[:200], split=100)
