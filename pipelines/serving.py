"""Scoring with a registered model: ``alphaforge score`` and ``alphaforge stream``.

Models load only by ``models:/alphaforge-<name>@<alias>`` or ``models:/alphaforge-<name>/<n>``
URIs of the configured registry (a path, a run URI or a remote URL is refused before MLflow is
touched), and then only through ``pipelines.registry.load_registered``: the version's files must
lie in the registry's artifact store, its ``model.skops`` must have the digest recorded at
registration, and skops builds only the types listed in code. Nothing the artifact says about
how to load it (loader module, ``code_paths``, its own trusted-type list) is followed.
"""

import re
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.registry import ModelRefused, load_registered

DEFAULT_MODEL = "models:/alphaforge-ensemble@champion"
MODEL_URI = re.compile(
    r"^models:/(?P<name>alphaforge-[a-z0-9_-]{1,64})(@(?P<alias>[A-Za-z0-9_-]{1,64})|/(?P<version>[0-9]{1,9}))$"
)

__all__ = [
    "DEFAULT_MODEL",
    "ModelRefused",
    "NoSuchAlias",
    "check_model_uri",
    "load_model",
    "score_day",
]


class NoSuchAlias(ModelRefused):
    """The registry has no version under the alias asked for (no @champion yet)."""


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
        f"no @champion version of {name}: the champion gate (check_ensemble_model_champion_gate) has promoted none"
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


def load_model(tracking_uri: str, uri: str, artifact_root: Path | None):
    """The registered model at ``uri``, loaded as the module says (``ModelRefused`` else;
    :class:`NoSuchAlias`, saying why, when no version carries the alias)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    match = MODEL_URI.match(check_model_uri(uri))
    client = mlflow.MlflowClient(tracking_uri)
    if match["alias"]:  # a missing alias is reported with the registry's reason for it
        try:
            client.get_model_version_by_alias(match["name"], match["alias"])
        except MlflowException:
            raise NoSuchAlias(_missing_alias(client, match["name"], match["alias"])) from None
    model, _ = load_registered(
        client,
        match["name"],
        alias=match["alias"],
        version=match["version"],
        artifact_root=artifact_root,
    )
    return model


def model_inputs(model, frame: pl.DataFrame) -> np.ndarray:
    """The model's input columns of ``frame``, in the order it was trained on (the ensemble
    records its features); a feature the frame lacks (news sentiment in a stream) is NaN."""
    names = list(
        getattr(model, "features_", None)
        or [c for c in frame.columns if c not in ("symbol", "date")]
    )
    if int(getattr(model, "window_", 1)) > 1:
        raise ValueError("this model reads a window of past days; score it in the pipeline")
    missing = [c for c in names if c not in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in missing)
    return frame.select(names).cast(pl.Float64).to_numpy()


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


def score_day(
    tracking_uri: str,
    lake: Path,
    uri: str = DEFAULT_MODEL,
    day: date | None = None,
    artifact_root: Path | None = None,
):
    """Score every symbol's features on ``day`` (default: the newest day in the lake's
    feature matrix) with the registered model; rank 1 is the highest score. ``artifact_root``:
    the local artifact store the model's files must lie in (none: the tracking server's)."""
    check_model_uri(uri)
    path = lake / "feature_matrix.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no feature matrix at {path}: run `alphaforge run` first")
    features = pl.read_parquet(path)
    day = day or features["date"].max()
    rows = features.filter(pl.col("date") == day)
    if rows.is_empty():
        raise ValueError(f"no features dated {day} in {path}")
    start = time.perf_counter()
    model = load_model(tracking_uri, uri, artifact_root)
    loaded = time.perf_counter()
    scores = model.predict(model_inputs(model, rows))
    scored = time.perf_counter()
    frame = (
        rows.select("symbol", "date")
        .with_columns(score=pl.Series(scores, dtype=pl.Float64))
        .sort("score", descending=True)
        .with_row_index("rank", offset=1)
        .select("symbol", "date", "score", "rank")
    )
    return Scores(frame, day, loaded - start, scored - loaded)
