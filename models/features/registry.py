"""The feature registry: every time-series feature with its formula in words, window and inputs.

A :class:`FeatureSpec` builds one polars expression over one symbol's rows sorted by date; the
engine (``technical.compute``) runs it per symbol and nulls every row that has fewer than
``lookback`` earlier rows, so a window never reaches into another symbol
(``tests/unit/features/test_feature_library.py`` checks each feature symbol by symbol) and never into the
future (the perturbation test).

Two ways to do less work, both declared by the feature, never guessed by the engine:

- ``on_panel``: the expression is row-wise, or an *exact* window (max, min, quantile, counts,
  shifts: a function of the rows in its window and nothing else), so it runs on the whole sorted
  panel without a group-by; the lookback mask then keeps each window inside its symbol. Rolling
  sums, means, variances and correlations carry floating-point state from row to row and stay
  per symbol: on the panel the last bits of one symbol's values would depend on the symbol
  sorted before it.
- ``parts``: intermediate columns that several features of one window share (a rolling mean
  used by MA, RESI and BETA). Polars' common-subexpression elimination leaves rolling
  expressions alone (measured: ``[A, B, A - B]`` costs twice ``[A, B]``), so sharing is explicit.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import polars as pl

EPS = 1e-12


@dataclass(frozen=True)
class Part:
    """An intermediate column shared by features of one window; ``per_symbol`` unless exact."""

    name: str
    build: Callable[[], pl.Expr]
    per_symbol: bool = True


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
    # intermediates computed before build() (see the module docstring)
    parts: tuple[Part, ...] = ()
    # build() runs on the whole sorted panel, after the parts: row-wise or an exact window
    on_panel: bool = False

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
    parts: tuple[Part, ...] = (),
    on_panel: bool = False,
) -> None:
    """Add a feature; ``lookback`` (earlier rows of the same symbol needed) defaults to window - 1."""
    if name in REGISTRY:
        raise ValueError(f"feature {name!r} registered twice")
    if parts and not on_panel:
        raise ValueError(f"feature {name!r}: a feature built from parts runs on the panel")
    REGISTRY[name] = FeatureSpec(
        name,
        description,
        inputs,
        window,
        window - 1 if lookback is None else lookback,
        build,
        family,
        helpers,
        parts,
        on_panel,
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
