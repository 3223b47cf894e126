"""``alphaforge score``: the champion scores the newest day; nothing but our registry's URIs
loads (a path, a run URI or a URL is refused before MLflow is touched)."""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines.serving import ModelRefused, check_model_uri

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def alphaforge(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAFORGE", "MLFLOW_"))}
    env |= {"ALPHAFORGE_HOME": str(home), "ALPHAFORGE_PROFILE": "fast"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "uri",
    [
        "/tmp/evil/model",
        "file:///tmp/evil/model",
        "runs:/0123456789abcdef/model",
        "https://example.com/model.pkl",
        "s3://bucket/model",
        "models:/someone-elses-model@champion",
        "models:/alphaforge-ensemble@champion/../../x",
        "models:/alphaforge-ensemble",
    ],
)
def test_only_our_registry_uris_are_accepted(uri):
    with pytest.raises(ModelRefused, match="refusing to load"):
        check_model_uri(uri)


def test_our_registry_uris_pass():
    for uri in ("models:/alphaforge-ensemble@champion", "models:/alphaforge-ensemble/3"):
        assert check_model_uri(uri) == uri


def test_score_ranks_the_newest_day_with_the_champion(materialized, tmp_path):
    out = tmp_path / "scores.parquet"
    done = alphaforge("score", "--out", str(out), home=materialized.home)
    assert done.returncode == 0, done.stderr
    scores = pl.read_parquet(out)
    features = pl.read_parquet(materialized.home / "lake" / "feature_matrix.parquet")
    newest = features.filter(pl.col("date") == features["date"].max())
    assert scores.height == newest.height and (scores["date"] == features["date"].max()).all()
    assert scores["rank"].to_list() == list(range(1, scores.height + 1))
    assert scores["score"].is_sorted(descending=True) and scores["score"].is_finite().all()
    assert "scored" in done.stdout and "ms)" in done.stdout


def test_score_refuses_a_hostile_model_argument_without_loading_anything(materialized):
    done = alphaforge("score", "--model", "file:///tmp/evil/model", home=materialized.home)
    assert done.returncode == 2
    assert "refusing to load 'file:///tmp/evil/model'" in done.stderr
