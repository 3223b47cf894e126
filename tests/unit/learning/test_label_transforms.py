import numpy as np
import polars as pl
import pytest

from models.learning.label_transforms import transform_labels


def _labels():
    return pl.DataFrame(
        {
            "symbol": ["A", "B", "C", "D"] * 2,
            "date": [1] * 4 + [2] * 4,
            "label": [0.01, 0.03, -0.02, 0.06, 0.10, 0.20, 0.30, 0.40],
            "label_end": [9] * 8,
        }
    )


SECTORS = pl.DataFrame({"symbol": ["A", "B", "C"], "sector": ["x", "x", "y"]})  # D has none


def _apply(how):
    out = transform_labels(_labels().lazy(), how, SECTORS.lazy()).collect()
    assert out.columns == ["symbol", "date", "label", "label_end"]
    return out["label"].to_numpy()


def test_per_date_transforms():
    day1 = np.array([0.01, 0.03, -0.02, 0.06])
    np.testing.assert_allclose(_apply("none")[:4], day1)
    np.testing.assert_allclose(_apply("market_neutral")[:4], day1 - day1.mean())
    np.testing.assert_allclose(_apply("zscore")[:4], (day1 - day1.mean()) / day1.std(ddof=1))
    np.testing.assert_allclose(_apply("rank")[:4], (np.array([2, 3, 1, 4]) / 4 - 0.5) * 12**0.5)
    # each date on its own: date 2's values never enter date 1's
    np.testing.assert_allclose(_apply("market_neutral")[4:], [-0.15, -0.05, 0.05, 0.15])


def test_sector_transforms_and_names_without_a_sector():
    neutral = _apply("sector_neutral")[:4]
    np.testing.assert_allclose(neutral, [-0.01, 0.01, 0.0, 0.0])  # C and D alone in their group
    np.testing.assert_allclose(_apply("sector_rank")[4:], np.array([0.0, 0.5, 0.5, 0.5]) * 12**0.5)
    with pytest.raises(ValueError, match="needs a sector map"):
        transform_labels(_labels().lazy(), "sector_rank")
    with pytest.raises(ValueError, match="unknown label transform"):
        transform_labels(_labels().lazy(), "demean")
