"""The feature registry: every time-series feature with its formula in words, window and inputs.

A :class:`FeatureSpec` builds one polars expression over one symbol's rows sorted by date; the
engine (``technical.compute``) runs it per symbol and nulls every row that has fewer than
``lookback`` earlier rows, so a window never reaches into another symbol
(``tests/unit/test_feature_library.py`` checks each feature symbol by symbol) and never into the
future (the perturbation test).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import polars as pl

EPS = 1e-12


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    description: str
    inputs: tuple[str, ...]
    window: int
    lookback: int
    build: Callable[[], pl.Expr]
    family: str
    # columns computed once on the whole sorted panel before the per-symbol pass
    helpers: tuple[tuple[str, Callable[[], pl.Expr]], ...] = ()

    def available(self, columns: Iterable[str]) -> bool:
        return set(self.inputs) <= set(columns)


REGISTRY: dict[str, FeatureSpec] = {}


def register(
    name: str,
    description: str,
    inputs: tuple[str, ...],
    build: Callable[[], pl.Expr],
    *,
    family: str,
    window: int = 1,
    lookback: int | None = None,
    helpers: tuple[tuple[str, Callable[[], pl.Expr]], ...] = (),
) -> None:
    """Add a feature; ``lookback`` (earlier rows of the same symbol needed) defaults to window - 1."""
    if name in REGISTRY:
        raise ValueError(f"feature {name!r} registered twice")
    REGISTRY[name] = FeatureSpec(
        name,
        description,
        inputs,
        window,
        window - 1 if lookback is None else lookback,
        build,
        family,
        helpers,
    )


def describe(names: Iterable[str]) -> pl.DataFrame:
    """Name, family, window, inputs and formula of each feature: for SHAP reports and metadata."""
    rows = [REGISTRY[n] for n in names if n in REGISTRY]
    return describe_rows(
        [(s.name, s.family, s.window, ", ".join(s.inputs), s.description) for s in rows]
    )


def describe_rows(rows: Iterable[tuple[str, str, int, str, str]]) -> pl.DataFrame:
    """The :func:`describe` table from ``(feature, family, window, inputs, description)`` rows,
    for features computed outside the registry (statistical forecasts, news sentiment)."""
    return pl.DataFrame(
        list(rows),
        schema={
            "feature": pl.String,
            "family": pl.String,
            "window": pl.Int64,
            "inputs": pl.String,
            "description": pl.String,
        },
        orient="row",
    )
