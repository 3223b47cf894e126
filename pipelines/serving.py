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


def check_model_uri(uri: str) -> str:
    if not MODEL_URI.match(uri):
        raise ModelRefused(
            f"refusing to load {uri!r}: only registry URIs of this home's tracking store, "
            "models:/alphaforge-<name>@<alias> or models:/alphaforge-<name>/<version> "
            f"(e.g. {DEFAULT_MODEL})"
        )
    return uri


def write_scores(frame: pl.DataFrame, path: Path) -> Path:
    """The scores as CSV (or Parquet, by the suffix), atomically: a reader of ``path`` sees the
    previous scores or these, never half a file."""
    from pipelines.atomic import write_atomic

    if path.suffix == ".parquet":
        return write_atomic(path, lambda f: frame.write_parquet(f))
    return write_atomic(path, lambda f: frame.write_csv(f))


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
    model = mlflow.pyfunc.load_model(uri)
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
