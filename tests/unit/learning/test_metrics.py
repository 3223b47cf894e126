import numpy as np
import pytest
from scipy import stats

from models.learning.metrics import daily_ic, ic_summary


def test_daily_rank_ic_is_per_date_spearman():
    rng = np.random.default_rng(0)
    dates = np.repeat(np.arange("2020-01-01", "2020-01-11", dtype="datetime64[D]"), 20)
    pred, label = rng.normal(size=200), rng.normal(size=200)
    ic = daily_ic(dates, pred, label)
    first = stats.spearmanr(pred[:20], label[:20]).statistic
    assert ic["ic"][0] == pytest.approx(first)
    assert ic.height == 10


def test_perfect_prediction_has_unit_ic_and_hit_rate():
    dates = np.repeat(np.arange("2020-01-01", "2020-01-06", dtype="datetime64[D]"), 10)
    label = np.tile(np.linspace(-1, 1, 10) + 0.05, 5)
    summary = ic_summary(dates, label * 2, label)
    assert summary["rank_ic"] == pytest.approx(1.0)
    assert summary["hit_rate"] == 1.0
