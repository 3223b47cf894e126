"""VaR estimators against independent computations on known distributions; the backtests
against hand-computed cases and scipy's G-tests."""

import math

import numpy as np
import polars as pl
import pytest
from arch import arch_model
from numpy.testing import assert_allclose
from scipy import stats

from models.risk.var import METHODS, estimate, horizon_returns, rolling_forecasts, var_table
from models.risk.var_backtest import christoffersen, coverage, kupiec, traffic_light


def _tail_mean(dist, level: float) -> float:
    """ES of a scipy distribution by numerical integration (independent of our formulas)."""
    q = dist.ppf(1 - level)
    return -dist.expect(lambda x: x, ub=q, conditional=True)


@pytest.fixture(scope="module")
def normal_sample():
    return np.random.default_rng(0).normal(0.0005, 0.012, 100_000)


@pytest.fixture(scope="module")
def t_sample():
    return 0.0003 + 0.01 * np.random.default_rng(1).standard_t(4, 200_000)


@pytest.mark.parametrize("level", [0.95, 0.99])
@pytest.mark.parametrize("method", ["historical", "normal", "student_t", "cornish_fisher", "evt"])
def test_every_static_method_recovers_a_normal(normal_sample, method, level):
    truth = stats.norm(0.0005, 0.012)
    e = estimate(normal_sample, method, level)
    assert_allclose(e.var, -truth.ppf(1 - level), rtol=0.02)
    assert_allclose(e.es, _tail_mean(truth, level), rtol=0.02)


@pytest.mark.parametrize("level", [0.95, 0.99, 0.999])
@pytest.mark.parametrize("method", ["historical", "student_t", "evt"])
def test_fat_tailed_methods_recover_a_student_t(t_sample, method, level):
    truth = stats.t(4, loc=0.0003, scale=0.01)
    e = estimate(t_sample, method, level)
    # The GPD is only the tail's limit law: fitted above the 90 % loss quantile of a t(4), its
    # 99.9 % VaR is 3.5 % and its ES 9 % short of the truth (seed 1), so the far tail gets room.
    far = method == "evt" and level > 0.99
    assert_allclose(e.var, -truth.ppf(1 - level), rtol=0.05 if far else 0.03)
    assert_allclose(e.es, _tail_mean(truth, level), rtol=0.12 if far else 0.05)


def test_the_normal_understates_a_fat_tail(t_sample):
    truth = -stats.t(4, loc=0.0003, scale=0.01).ppf(0.001)
    assert estimate(t_sample, "normal", 0.999).var < 0.9 * truth
    assert estimate(t_sample, "cornish_fisher", 0.999).var > estimate(t_sample, "normal", 0.999).var


def test_historical_is_the_inverted_cdf_order_statistic():
    r = np.random.default_rng(2).normal(0, 0.01, 1001)
    e = estimate(r, "historical", 0.99)
    q = np.quantile(r, 0.01, method="inverted_cdf")
    assert e.var == -q
    # ES is the mean of the worst 1 % of mass (Rockafellar-Uryasev): 10 whole days and 0.01
    # of the eleventh out of 1001.
    worst = np.sort(r)[:11]
    assert_allclose(e.es, -(worst[:10].sum() + 0.01 * worst[10]) / 10.01, rtol=1e-9)


def test_cornish_fisher_without_skew_or_kurtosis_is_the_normal():
    # A sample whose skewness and excess kurtosis are zero by construction: symmetric normal
    # quantiles (kurtosis of a normal grid is not exactly 0, so compare to within its effect).
    r = stats.norm.ppf((np.arange(20_000) + 0.5) / 20_000) * 0.01
    cf, nm = estimate(r, "cornish_fisher", 0.99), estimate(r, "normal", 0.99)
    assert_allclose(cf.var, nm.var, rtol=5e-3)
    assert_allclose(cf.es, nm.es, rtol=5e-3)


def test_ten_day_historical_compounds_overlapping_windows():
    r = np.random.default_rng(3).normal(0, 0.01, 300)
    brute = np.array([np.prod(1 + r[i : i + 10]) - 1 for i in range(291)])
    assert_allclose(horizon_returns(r, 10), brute, rtol=1e-9)
    assert_allclose(
        estimate(r, "historical", 0.95, horizon=10).var,
        estimate(brute, "historical", 0.95).var,
        rtol=1e-9,
    )


def test_fhs_garch_tracks_the_true_conditional_quantile():
    # A GARCH(1,1) with normal shocks simulated by arch: tomorrow's 99 % VaR is
    # -(mu + sigma_{t+1} * z_0.01) with the simulation's own conditional volatility.
    params = np.array([0.05, 0.05, 0.08, 0.9])  # mu, omega, alpha, beta (percent returns)
    sim = arch_model(None, mean="Constant", vol="GARCH", p=1, q=1).simulate(
        params, 3001, burn=500, initial_value=None
    )
    y = sim["data"].to_numpy()
    r, last = y[:-1] / 100, sim.iloc[-2]
    sigma_next = math.sqrt(
        params[1] + params[2] * (y[-2] - params[0]) ** 2 + params[3] * last["volatility"] ** 2
    )
    truth = -(params[0] + sigma_next * stats.norm.ppf(0.01)) / 100
    assert_allclose(estimate(r, "fhs_garch", 0.99).var, truth, rtol=0.15)
    ten = estimate(r, "fhs_garch", 0.99, horizon=10)
    assert 2 * truth < ten.var < 5 * truth


def test_rolling_forecasts_equal_the_estimate_on_each_window():
    r = 0.01 * np.random.default_rng(4).standard_t(5, 700)
    windowed = [m for m in METHODS if m != "neural"]  # the net trains on all days before
    out = rolling_forecasts(r, windowed, (0.95, 0.99), window=300, refit_every=25)
    for (method, level), (var, es) in out.items():
        assert np.isnan(var[:300]).all() and np.isfinite(var[300:]).all()
        for day in (300, 350, 625):  # refit days of the held methods (300 + k * 25)
            e = estimate(r[day - 300 : day], method, level)
            assert_allclose([var[day], es[day]], [e.var, e.es], rtol=1e-6, err_msg=method)
        assert (es[300:] >= var[300:] - 1e-12).all(), method


def test_rolling_forecasts_do_not_see_the_day_they_forecast():
    r = 0.01 * np.random.default_rng(5).normal(size=400)
    shocked = r.copy()
    shocked[350:] *= 10
    a = rolling_forecasts(r, METHODS, (0.99,), window=250, refit_every=10)
    b = rolling_forecasts(shocked, METHODS, (0.99,), window=250, refit_every=10)
    for key in a:
        assert_allclose(a[key][0][:351], b[key][0][:351], rtol=1e-9, err_msg=str(key))


def test_var_table_lists_every_method_level_and_horizon():
    r = 0.01 * np.random.default_rng(6).standard_t(5, 1000)
    table = var_table(r, (0.95, 0.99), (1, 10))
    assert table.height == len(METHODS) * 4
    assert (table["es"] >= table["var"]).all()
    assert "threshold" in table.filter(method="evt")["note"][0]
    # about sqrt(10) = 3.2 times for i.i.d. returns (the net's one-day forecast is conditional
    # on the last 20 days' volatility, so it is left out)
    static = table.filter(pl.col("method") != "neural")
    one, ten = static.filter(horizon_days=1)["var"], static.filter(horizon_days=10)["var"]
    assert (ten > 2.0 * one).all()
    with pytest.raises(ValueError, match="unknown VaR method"):
        var_table(r, methods=["magic"])
    with pytest.raises(ValueError, match="at least 30"):
        var_table(r[:10])


def test_fz0_loss_is_lowest_at_the_true_var_and_es():
    # The FZ0 score is strictly consistent for (VaR, ES): on a large normal sample its mean is
    # smallest at the true pair, and larger when either is moved.
    import torch

    from models.risk.neural_var import fz0_loss

    y = torch.tensor(np.random.default_rng(9).normal(0, 1, 400_000), dtype=torch.float64)
    truth = stats.norm()
    v, e = truth.ppf(0.01), -_tail_mean(truth, 0.99)

    def score(var, es):
        n = len(y)
        return float(
            fz0_loss(
                y, torch.full((n,), var, dtype=y.dtype), torch.full((n,), es, dtype=y.dtype), 0.01
            )
        )

    best = score(v, e)
    for dv, de in ((0.2, 0), (-0.2, 0), (0, 0.2), (0, -0.2), (0.2, 0.2)):
        assert score(v + dv, e + de) > best, (dv, de)


def test_neural_var_learns_a_normal_tail_and_tracks_volatility():
    rng = np.random.default_rng(10)
    vol = np.repeat([0.005, 0.02], 2000)  # a calm regime, then a stormy one
    r = rng.normal(0, 1, 4000) * vol
    out = rolling_forecasts(r, ["neural"], (0.99,), window=1000, refit_every=250)
    var = out[("neural", 0.99)][0]
    # a month into each regime the forecast scales with the 20-day volatility the net reads
    calm, storm = np.nanmedian(var[1500:2000]), np.nanmedian(var[3000:4000])
    assert_allclose(calm, -stats.norm.ppf(0.01) * 0.005, rtol=0.25)
    assert_allclose(storm, -stats.norm.ppf(0.01) * 0.02, rtol=0.25)


def test_neural_var_is_finite_after_weeks_in_cash():
    """A book that sits in cash has no volatility for a while (the DQN's portfolio does)."""
    r = np.random.default_rng(11).normal(0, 0.01, 1500)
    r[600:650] = 0.0
    out = rolling_forecasts(r, ["neural"], (0.99,), window=500, refit_every=250)
    var, es = out[("neural", 0.99)]
    assert np.isfinite(var[500:]).all() and np.isfinite(es[500:]).all()


# --- backtests -------------------------------------------------------------------------------


def test_kupiec_hand_cases_and_the_g_test():
    # No exception in 250 days at 99 %: LR = -2 * 250 * ln(0.99) = 5.025, rejected at 5 %.
    lr, p = kupiec(np.zeros(250, bool), 0.99)
    assert_allclose(lr, -2 * 250 * math.log(0.99), rtol=1e-12)
    assert p < 0.05
    # Exactly the expected count: LR = 0, p = 1.
    assert kupiec(np.r_[np.ones(1, bool), np.zeros(99, bool)], 0.99) == (0.0, 1.0)
    # Any count: the G-test of the observed counts against the binomial expectation.
    hits = np.zeros(500, bool)
    hits[[3, 70, 71, 200, 300, 301, 302, 480, 499]] = True
    g = stats.power_divergence([491, 9], f_exp=[495, 5], lambda_="log-likelihood")
    assert_allclose(kupiec(hits, 0.99), (g.statistic, g.pvalue), rtol=1e-10)


def test_christoffersen_hand_cases_and_the_g_test():
    # Transitions 00:4 01:2 10:2 11:1: P(hit | hit) = P(hit | no hit) = 1/3, LR = 0.
    assert christoffersen(np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0]))[0] == pytest.approx(
        0, abs=1e-12
    )
    # Clustered: 00:5 01:1 10:1 11:2.
    lr, _ = christoffersen(np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 0]))
    null = 6 * math.log(2 / 3) + 3 * math.log(1 / 3)
    alt = 5 * math.log(5 / 6) + math.log(1 / 6) + math.log(1 / 3) + 2 * math.log(2 / 3)
    assert_allclose(lr, -2 * (null - alt), rtol=1e-12)
    # In general it is the G-test of independence on the 2 x 2 transition table.
    hits = np.random.default_rng(7).random(1000) < 0.05
    hits[500:510] = True
    table = np.zeros((2, 2))
    np.add.at(table, (hits[:-1].astype(int), hits[1:].astype(int)), 1)
    g = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    assert_allclose(christoffersen(hits), (g.statistic, g.pvalue), rtol=1e-10)


def test_traffic_light_zones_match_the_basel_table():
    # BCBS (1996), 250 days at 99 %: green 0-4, yellow 5-9, red 10 or more.
    zones = [traffic_light(x) for x in range(13)]
    assert zones == ["green"] * 5 + ["yellow"] * 5 + ["red"] * 3


def test_coverage_counts_exceptions_and_skips_days_without_a_forecast():
    r = np.array([np.nan, -0.03, 0.01, -0.05, 0.0, -0.021])
    var = np.array([0.02, np.nan, 0.02, 0.02, 0.02, 0.02])
    c = coverage(r, var, 0.95)
    assert (c.days, c.exceptions, c.expected) == (4, 2, pytest.approx(0.2))
    assert c.conditional_lr == pytest.approx(c.kupiec_lr + c.independence_lr)


def test_a_calibrated_var_passes_and_an_understated_one_fails():
    r = np.random.default_rng(8).normal(0, 0.01, 2500)
    good = coverage(r, np.full(2500, -stats.norm.ppf(0.01) * 0.01), 0.99)
    bad = coverage(r, np.full(2500, -stats.norm.ppf(0.01) * 0.007), 0.99)
    assert good.kupiec_p > 0.05 and good.zone == "green"
    assert bad.kupiec_p < 1e-6 and bad.zone == "red"
