"""Scoring with a registered model: ``alphaforge score``.

Models load only by ``models:/alphaforge-<name>@<alias>`` or ``models:/alphaforge-<name>/<n>``
URIs of the home's own tracking store. A model is pickled code; a path, a run URI or a remote
URL would let whoever controls the argument run code here, so anything else is refused before
MLflow is touched.
"""

import re
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

DEFAULT_MODEL = "models:/alphaforge-ensemble@champion"
MODEL_URI = re.compile(r"^models:/alphaforge-[a-z0-9_-]{1,64}(@[A-Za-z0-9_-]{1,64}|/[0-9]{1,9})$")


class ModelRefused(ValueError):
    """A model URI that is not one of our registry's."""


class NoSuchAlias(ValueError):
    """The registry has no version under the alias asked for (no @champion yet)."""


def load_model(uri: str):
    """The registered model at ``uri`` (checked first); a missing alias is reported with the
    reason the registry gives: the latest version's promotion decision."""
    check_model_uri(uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    name, _, alias = uri.removeprefix("models:/").partition("@")
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as err:
        if not alias or "alias" not in str(err).lower():
            raise
        raise NoSuchAlias(_missing_alias(mlflow.MlflowClient(), name, alias)) from None


def _missing_alias(client, name: str, alias: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'", max_results=1000)
    except MlflowException:
        versions = []
    if not versions:
        return f"no model {name} in the registry: run `alphaforge run` first"
    latest = client.get_model_version(name, str(max(int(v.version) for v in versions)))
    why = latest.tags.get("promotion_reason") or "no reason recorded"
    aliases = ", ".join(f"@{a}" for a in latest.aliases) or "no alias"
    head = (
        f"no @champion version of {name}: the champion_gate has promoted none"
        if alias == "champion"
        else f"no version of {name} carries @{alias}"
    )
    return (
        f"{head}. The latest, version {latest.version} ({aliases}), was "
        f"{latest.tags.get('promotion', 'not judged')}: {why}. To score with it anyway: "
        f"--model models:/{name}@challenger (or models:/{name}/{latest.version})"
    )


def check_model_uri(uri: str) -> str:
    if not MODEL_URI.match(uri):
        raise ModelRefused(
            f"refusing to load {uri!r}: only registry URIs of this home's tracking store, "
            "models:/alphaforge-<name>@<alias> or models:/alphaforge-<name>/<version> "
            f"(e.g. {DEFAULT_MODEL})"
        )
    return uri


@dataclass(frozen=True)
class Scores:
    frame: pl.DataFrame  # symbol, date, score, rank
    day: date
    load_s: float
    score_s: float


def score_day(tracking_uri: str, lake: Path, uri: str = DEFAULT_MODEL, day: date | None = None):
    """Score every symbol's features on ``day`` (default: the newest day in the lake's
    feature matrix) with the registered model; rank 1 is the highest score."""
    check_model_uri(uri)
    import mlflow

    path = lake / "feature_matrix.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no feature matrix at {path}: run `alphaforge run` first")
    features = pl.read_parquet(path)
    day = day or features["date"].max()
    rows = features.filter(pl.col("date") == day)
    if rows.is_empty():
        raise ValueError(f"no features dated {day} in {path}")
    mlflow.set_tracking_uri(tracking_uri)
    start = time.perf_counter()
    model = load_model(uri)
    loaded = time.perf_counter()
    scores = model.predict(rows.drop("symbol", "date").to_pandas())
    scored = time.perf_counter()
    frame = (
        rows.select("symbol", "date")
        .with_columns(score=pl.Series(scores, dtype=pl.Float64))
        .sort("score", descending=True)
        .with_row_index("rank", offset=1)
        .select("symbol", "date", "score", "rank")
    )
    return Scores(frame, day, loaded - start, scored - loaded)
