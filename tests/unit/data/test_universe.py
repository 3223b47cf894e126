"""The investable-universe screen on planted junk among clean series."""

import re
from datetime import date

import numpy as np
import polars as pl
import pytest
from conftest import random_walk_panel

from data_contracts.quality import QualityRules, quality_findings
from models.data.universe import (
    ScreenRules,
    excluded_symbols,
    investable,
    market_stale_days,
    screen,
    screen_weights,
    without_stale_days,
)

RULES = ScreenRules()  # the defaults: $1, $1 M median dollar volume over 20 days, 60 days
STALE_DAY, TAIL_FROM, JUMP_AT = 250, 300, 200


@pytest.fixture(scope="module")
def planted() -> pl.DataFrame:
    """Eight clean random walks traded ~200 k shares a day, and three junk series: a
    delisted name's zero-volume half-cent tail, a name traded 3 shares a day, a +250 % print
    that reverses; day 250 is a holiday the vendor filled with the previous closes."""
    rng = np.random.default_rng(7)
    base = random_walk_panel(n_symbols=11, n_days=400, seed=7)
    names = {"S08": "TAIL", "S09": "THIN", "S10": "JUMP"}
    day = pl.int_range(pl.len()).over("symbol")
    panel = base.with_columns(
        pl.col("symbol").replace(names),
        volume=pl.lit(2e5) * pl.Series(rng.uniform(0.5, 1.5, len(base))),
    ).with_columns(day=day)
    sym = pl.col("symbol")
    panel = panel.with_columns(
        close=pl.when((sym == "TAIL") & (pl.col("day") >= TAIL_FROM))
        .then(0.005)
        .when((sym == "JUMP") & (pl.col("day") == JUMP_AT))
        .then(pl.col("close") * 3.5)
        .otherwise(pl.col("close")),
        volume=pl.when((sym == "TAIL") & (pl.col("day") >= TAIL_FROM))
        .then(0.0)
        .when(sym == "THIN")
        .then(3.0)
        .otherwise(pl.col("volume")),
    )
    previous = pl.col("close").shift(1).over("symbol")
    return panel.with_columns(
        close=pl.when(pl.col("day") == STALE_DAY).then(previous).otherwise(pl.col("close"))
    ).sort("symbol", "date")


@pytest.fixture(scope="module")
def screened(planted) -> pl.DataFrame:
    findings = quality_findings(planted.drop("day"), date(2030, 1, 1), QualityRules())
    out = screen(planted.drop("day"), findings, RULES)
    return out.join(planted.select("symbol", "date", "day"), on=["symbol", "date"])


def test_each_junk_series_is_excluded_with_its_reason(screened):
    assert len(screened) == 11 * 400  # one row per symbol and date
    tail = screened.filter(symbol="TAIL")
    late = tail.filter(pl.col("day") >= TAIL_FROM)
    assert not late["eligible"].any()
    assert late["rule"].str.contains("price").all()
    assert late["reason"][0].startswith("price: 0.005 below 1.0")
    # its dollar volume turns once the 20-day median is half made of zero days
    assert late.filter(pl.col("day") >= TAIL_FROM + 10)["rule"].str.contains("dollar volume").all()
    assert tail.filter(
        (pl.col("day") >= 60) & (pl.col("day") < TAIL_FROM) & (pl.col("day") != STALE_DAY)
    )["eligible"].all()

    thin = screened.filter(symbol="THIN")
    assert not thin["eligible"].any()  # (its first days are judged short of history)
    assert thin.filter(pl.col("day") >= 9)["rule"].str.contains("dollar volume").all()
    assert "dollar volume: median" in thin["reason"][100]

    jump = screened.filter(symbol="JUMP")
    window = jump.filter(pl.col("day").is_between(JUMP_AT, JUMP_AT + 1 + RULES.finding_days - 1))
    assert not window["eligible"].any()
    assert window["reason"].str.contains("open finding: return outlier").all()
    assert re.search(
        r"one-day return 2\.[3-6]\d*, a spike given back", window["reason"][0]
    )  # +250 %
    after = jump.filter(pl.col("day") >= JUMP_AT + 1 + RULES.finding_days)
    assert after.filter(pl.col("day") != STALE_DAY)["eligible"].all()

    stale = screened.filter(pl.col("day") == STALE_DAY)
    assert not stale["eligible"].any()
    assert stale["reason"].str.contains("market-wide stale day: 1[01] of 11 closes unchanged").all()


def test_every_clean_row_is_kept(screened):
    clean = screened.filter(
        ~pl.col("symbol").is_in(["TAIL", "THIN", "JUMP"]) & (pl.col("day") != STALE_DAY)
    )
    warm = clean.filter(pl.col("day") < RULES.min_history)
    assert (warm["rule"] == "history").all()  # point in time: too short a history so far
    kept = clean.filter(pl.col("day") >= RULES.min_history)
    assert kept["eligible"].all(), kept.filter(~pl.col("eligible")).head()
    assert len(kept) == 8 * (400 - RULES.min_history - 1)


def test_the_stale_day_is_found_and_dropped(planted, screened):
    days = market_stale_days(planted.drop("day"))
    assert (
        days["date"].to_list()
        == planted.filter(pl.col("day") == STALE_DAY)["date"].unique().to_list()
    )
    universe = screened.drop("day")
    assert without_stale_days(planted, universe).filter(pl.col("day") == STALE_DAY).is_empty()
    assert investable(planted, universe).height == universe["eligible"].sum()


def test_excluded_symbols_names_each_with_its_rules(screened):
    table = excluded_symbols(screened.drop("day"))
    assert set(table["symbol"]) >= {"TAIL", "THIN", "JUMP"}
    by = {r["symbol"]: r for r in table.iter_rows(named=True)}
    assert by["THIN"]["rules"].startswith("dollar volume (")
    assert "price (100 days)" in by["TAIL"]["rules"]
    assert "open finding" in by["JUMP"]["rules"]


def test_without_volume_the_screen_does_not_judge_liquidity(planted):
    closes = planted.drop("day", "volume")
    out = screen(
        closes,
        pl.DataFrame(
            schema={"rule": pl.String, "symbol": pl.String, "date": pl.Date, "detail": pl.String}
        ),
        RULES,
    )
    assert not out["rule"].str.contains("dollar volume").any()
    assert out.filter(pl.col("symbol") == "THIN")["eligible"].sum() > 300


def test_screened_weights_drop_excluded_names_and_keep_each_sides_gross():
    d = date(2020, 1, 2)
    weights = pl.DataFrame(
        {
            "date": [d] * 5,
            "symbol": ["A", "B", "C", "X", "Y"],
            "weight": [0.25, 0.25, 0.5, -0.5, -0.5],
        }
    )
    universe = pl.DataFrame(
        {
            "symbol": ["A", "B", "C", "X", "Y"],
            "date": [d] * 5,
            "eligible": [True, False, True, True, True],
        }
    )
    out = screen_weights(weights, universe).sort("symbol")
    assert out["symbol"].to_list() == ["A", "C", "X", "Y"]
    np.testing.assert_allclose(out["weight"].to_numpy(), [1 / 3, 2 / 3, -0.5, -0.5])


def test_on_adjusted_closes_alone_the_minimum_price_is_not_judged(planted):
    from dataclasses import replace

    out = screen(planted.drop("day", "volume"), _no_findings(), replace(RULES, min_price=None))
    assert not out["rule"].drop_nulls().str.contains("price").any()
    judged = screen(planted.drop("day", "volume"), _no_findings(), RULES)
    assert judged["rule"].drop_nulls().str.contains("price").any()  # the half-cent tail


def _no_findings() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"rule": pl.String, "symbol": pl.String, "date": pl.Date, "detail": pl.String}
    )
