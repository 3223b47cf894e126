"""News sentiment as features: the window arithmetic, and no text before it was available."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from models.data.sentiment import daily_sentiment
from models.features.alternative import sentiment_features

TEXTS = pl.DataFrame(
    {
        "date": [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 3), date(2024, 1, 10)],
        "ticker": ["AAA", "AAA", "", "AAA"],
        "text": [
            "profit growth strong",
            "loss and litigation",
            "markets gained after strong profit",
            "record gains",
        ],
    }
)


def _keys(days):
    return pl.DataFrame({"symbol": "AAA", "date": [date(2024, 1, d) for d in days]}).lazy()


def test_window_sums_news_available_in_the_last_seven_days():
    out = sentiment_features(_keys([2, 3, 4, 9, 10, 11]), daily_sentiment(TEXTS).lazy()).collect()
    row = {r["date"].day: r for r in out.iter_rows(named=True)}
    # the 2 Jan text (1 positive word) is usable from 3 Jan; 3 Jan's (2 negative) from 4 Jan
    assert row[2]["sent_texts_7d"] == 0 and row[2]["sent_polarity_7d"] is None
    assert row[3]["sent_polarity_7d"] == 1.0
    assert row[4]["sent_polarity_7d"] == pytest.approx((1 - 2) / 3)
    assert row[9]["sent_texts_7d"] == 2
    assert row[10]["sent_polarity_7d"] == -1.0 and row[10]["sent_texts_7d"] == 1
    assert row[11]["sent_texts_7d"] == 1  # 10 Jan's text, no LM word in it
    assert row[4]["mkt_sent_polarity_7d"] == 1.0 and row[3]["mkt_sent_polarity_7d"] is None


def test_texts_after_a_date_do_not_move_its_features():
    rng = np.random.default_rng(0)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(60)]
    words = np.array(["profit", "loss", "gain", "litigation", "the", "market"])
    texts = pl.DataFrame(
        {
            "date": [days[i] for i in rng.integers(0, len(days), 300)],
            "ticker": rng.choice(["AAA", "BBB", ""], 300),
            "text": [" ".join(rng.choice(words, 5)) for _ in range(300)],
        }
    )
    keys = pl.DataFrame(
        {"symbol": ["AAA", "BBB"] * 60, "date": [d for d in days for _ in range(2)]}
    ).lazy()
    cut = date(2024, 2, 1)
    base = sentiment_features(keys, daily_sentiment(texts).lazy()).collect()
    later = texts.filter(pl.col("date") >= cut).with_columns(text=pl.lit("loss loss loss"))
    changed = pl.concat([texts.filter(pl.col("date") < cut), later])
    again = sentiment_features(keys, daily_sentiment(changed).lazy()).collect()
    # a text dated d is available from the next business day: rows up to the cut are unchanged
    assert base.filter(pl.col("date") <= cut).equals(again.filter(pl.col("date") <= cut))
    assert not base.equals(again)


def test_weekend_news_is_usable_on_monday():
    texts = pl.DataFrame({"date": [date(2024, 1, 6)], "ticker": ["AAA"], "text": ["profit"]})
    assert daily_sentiment(texts)["available_date"].to_list() == [date(2024, 1, 8)]
