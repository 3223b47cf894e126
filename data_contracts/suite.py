"""Run a versioned Great Expectations suite on a polars frame and name every failure.

GX 1.x validates pandas, not polars, so the frame is converted here, at the check. Frames carry
``source_file`` and ``source_row`` (1-based line in the file, header = line 1) so a failure can
say where the bad value came from.
"""

import json
import logging
from dataclasses import dataclass
from functools import cache
from importlib import resources

import polars as pl

SUITES = resources.files("data_contracts") / "suites"
SOURCE_COLUMNS = ["source_file", "source_row"]

_RULES = {
    "expect_column_values_to_not_be_null": "must not be null",
    "expect_compound_columns_to_be_unique": "must be unique together",
    "expect_table_row_count_to_be_between": "table must have at least {min_value} row(s)",
    "expect_column_to_exist": "column must exist",
}


@dataclass(frozen=True)
class Violation:
    """One broken rule with the first place it is broken."""

    rule: str
    column: str | None
    file: str | None
    row: int | None
    value: object
    count: int | None

    def __str__(self) -> str:
        text = f"column '{self.column}' {self.rule}" if self.column else self.rule
        if self.row is not None:
            text += f": first bad row is row {self.row} of {self.file} (value {self.value!r})"
        elif self.file:
            text += f" in {self.file}"
        return text + (f"; {self.count} row(s) fail" if self.count else "")


class ContractViolation(ValueError):
    """Raised with every violation of a contract, each naming its file, column and row."""

    def __init__(self, contract: str, violations: list[Violation]):
        self.contract = contract
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"data contract '{contract}' failed:\n{lines}")


def load_suite(name: str) -> dict:
    """The suite's JSON as stored in ``data_contracts/suites/<name>.json``."""
    return json.loads((SUITES / f"{name}.json").read_text())


def validate(frame: pl.DataFrame, suite_name: str) -> list[Violation]:
    """Validate ``frame`` against a stored suite; return the violations (empty when it passes)."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    spec = load_suite(suite_name)
    index_cols = [c for c in SOURCE_COLUMNS if c in frame.columns]
    validation = _validation_definition(suite_name, json.dumps(spec, sort_keys=True))
    result = validation.run(
        batch_parameters={"dataframe": frame.to_pandas()},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_cols},
    )
    return [_violation(r) for r in result.results if not r.success]


@cache
def _validation_definition(suite_name: str, suite_json: str):
    """One ephemeral GX context per suite and process (creating it costs about a second)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    spec = json.loads(suite_json)
    suite = context.suites.add(
        gx.ExpectationSuite(
            name=spec["name"], expectations=spec["expectations"], meta=spec.get("meta")
        )
    )
    batch = (
        context.data_sources.add_pandas(f"{suite_name}_source")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe("whole")
    )
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch, suite=suite)
    )


def _violation(result) -> Violation:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    outcome = result.result or {}
    rule = (
        _bounds(kwargs)
        if config.type == "expect_column_values_to_be_between"
        else (_RULES.get(config.type, config.type).format_map(_Default(kwargs)))
    )
    index = outcome.get("unexpected_index_list") or []
    first = (
        min(index, key=lambda r: r.get("source_row", 0))
        if index and isinstance(index[0], dict)
        else {}
    )
    column = kwargs.get("column") or (
        ",".join(kwargs["column_list"]) if "column_list" in kwargs else None
    )
    value = (
        first.get(kwargs.get("column"))
        if kwargs.get("column")
        else {c: first.get(c) for c in kwargs.get("column_list", [])}
    )
    if outcome.get("observed_value") is not None and not index:
        value = outcome["observed_value"]
    return Violation(
        rule=rule,
        column=column,
        file=first.get("source_file"),
        row=int(first["source_row"]) if "source_row" in first else None,
        value=_plain(value),
        count=int(outcome.get("unexpected_count") or (0 if index else 1)),
    )


def _bounds(kwargs: dict) -> str:
    parts = []
    if kwargs.get("min_value") is not None:
        parts.append(f"{'>' if kwargs.get('strict_min') else '>='} {kwargs['min_value']:g}")
    if kwargs.get("max_value") is not None:
        parts.append(f"{'<' if kwargs.get('strict_max') else '<='} {kwargs['max_value']:g}")
    return "must be " + " and ".join(parts)


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return "…"


def _plain(value: object) -> object:
    """numpy and pandas scalars as plain Python values, for messages and metadata."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):  # pandas Timestamp, datetime, date
        return value.isoformat().removesuffix("T00:00:00")
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value  # NaN -> None
