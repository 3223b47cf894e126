"""Run a versioned Great Expectations suite on a polars frame and name every failure.

GX 1.x validates pandas, not polars, so the frame is converted here, at the check. Frames carry
``source_file`` and ``source_row`` (1-based line in the file, header = line 1) so a failure can
say where the bad value came from. Each expectation's ``meta.severity`` says what a failure
means: ``block`` stops the run, ``quarantine`` sets the failing rows aside (``Report.flagged``).
"""

import html
import json
import logging
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import polars as pl

SUITES = resources.files("data_contracts") / "suites"
SOURCE_COLUMNS = ["source_file", "source_row"]
# a rule whose ``meta.file_column`` names another column (the order-book file of a LOBSTER pair,
# whose lines match the message file's) reports that column's file
FILE_COLUMNS = ["book_file"]

_RULES = {
    "expect_column_values_to_not_be_null": "must not be null",
    "expect_compound_columns_to_be_unique": "must be unique together",
    "expect_table_row_count_to_be_between": "table must have at least {min_value} row(s)",
    "expect_column_to_exist": "column must exist",
    "expect_column_values_to_match_regex": "must match {regex}",
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
    symbol: str | None = None
    severity: str = "block"

    def __str__(self) -> str:
        text = f"column '{self.column}' {self.rule}" if self.column else self.rule
        if self.row is not None:
            where = f" (symbol {self.symbol})" if self.symbol else ""
            text += (
                f": first bad row is row {self.row} of {self.file}{where} (value {self.value!r})"
            )
        elif self.file:
            text += f" in {self.file}"
        return text + (f"; {self.count} row(s) fail" if self.count else "")

    def as_dict(self) -> dict:
        return vars(self) | {"value": str(self.value)}


class ContractViolation(ValueError):
    """Raised with every violation of a contract, each naming its file, column and row."""

    def __init__(self, contract: str, violations: list[Violation]):
        self.contract = contract
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"data contract '{contract}' failed:\n{lines}")


@dataclass
class Report:
    """A suite's outcome: every violation, the rows flagged by quarantine rules
    (``[source_file, source_row, rule]``) and the HTML rendering of the GX result."""

    violations: list[Violation]
    flagged: pl.DataFrame
    html: str = field(repr=False, default="")

    @property
    def blocking(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "block"]


def load_suite(name: str) -> dict:
    """The suite's JSON as stored in ``data_contracts/suites/<name>.json``."""
    return json.loads((SUITES / f"{name}.json").read_text())


def validate(frame: pl.DataFrame, suite_name: str) -> list[Violation]:
    """Validate ``frame`` against a stored suite; return the violations (empty when it passes)."""
    return run_suite(frame, suite_name).violations


def run_suite(frame: pl.DataFrame, suite_name: str) -> Report:
    """Validate ``frame`` with GX. Expectations on columns the frame lacks are skipped (optional
    columns such as ``volume``).

    GX decides pass or fail and counts the unexpected values, with a bounded result format
    (``SUMMARY``: 20 examples each): a ``COMPLETE`` result lists every unexpected row, and
    with 437 k of them in a 590 k-row frame GX spent ~400 s copying and serialising it into
    its validation-results store (~12 s clean). Which rows failed comes from polars masks
    built from the same expectation definitions (:func:`failing_rows`), and each mask must
    count what GX counted; an expectation without a mask, or whose count differs, is asked
    of GX again with a ``COMPLETE`` result, alone."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    spec = load_suite(suite_name)
    for position, e in enumerate(spec["expectations"]):
        e["meta"] = {**e.get("meta", {}), "position": position}
    spec["expectations"] = [e for e in spec["expectations"] if _columns(e) <= set(frame.columns)]
    index_cols = [
        c for c in [*SOURCE_COLUMNS, *FILE_COLUMNS, "symbol", "date"] if c in frame.columns
    ]
    validation = _validation_definition(suite_name, json.dumps(spec, sort_keys=True))
    # categorical strings: a 2.4 M-row frame converts in a tenth of the time
    pandas = _categorical(frame).to_pandas()
    result = validation.run(
        batch_parameters={"dataframe": pandas},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
    )
    failed = [r for r in result.results if not r.success]
    masks = {i: _mask(frame, r) for i, r in enumerate(failed)}
    fallback = [r for i, r in enumerate(failed) if masks[i] is None]
    complete = _complete(suite_name, spec, fallback, pandas, index_cols) if fallback else {}
    violations, flagged = [], []
    order = [c for c in SOURCE_COLUMNS if c in frame.columns]
    for i, r in enumerate(failed):
        if masks[i] is not None:
            rows = frame.filter(masks[i]).sort(order)
        else:
            rows = complete[_key(r.expectation_config)]
        first = rows.row(0, named=True) if len(rows) else {}
        count = int((r.result or {}).get("unexpected_count") or len(rows) or 1)
        v = _violation(r, first, count)
        violations.append(v)
        if v.severity == "quarantine":
            flagged.append(
                rows.select(
                    (pl.col(c) if c in rows.columns else pl.lit(None)).cast(t).alias(c)
                    for c, t in (("source_file", pl.String), ("source_row", pl.Int64))
                ).with_columns(rule=pl.lit(f"{v.column}: {v.rule}" if v.column else v.rule))
            )
    empty = pl.DataFrame(
        schema={"source_file": pl.String, "source_row": pl.Int64, "rule": pl.String}
    )
    return Report(
        violations, pl.concat([empty, *flagged]), render_html(spec, result.results, violations)
    )


def failing_rows(expectation_type: str, kwargs: dict) -> pl.Expr | None:
    """The rows a row-level expectation finds unexpected, as a polars predicate with GX's own
    semantics (missing values are not unexpected for ``between``, ``match_regex`` and pair
    rules, which ignore rows with either value missing); None for an expectation that has no
    row mask here (table-level ones, or a type this function does not know)."""
    col = pl.col(kwargs["column"]) if "column" in kwargs else None
    if expectation_type == "expect_column_values_to_not_be_null":
        return col.is_null()
    if expectation_type == "expect_column_values_to_be_between":
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        ok = pl.lit(True)
        if lo is not None:
            ok &= col > lo if kwargs.get("strict_min") else col >= lo
        if hi is not None:
            ok &= col < hi if kwargs.get("strict_max") else col <= hi
        return col.is_not_null() & ~ok
    if expectation_type == "expect_column_values_to_match_regex":
        text = col.cast(pl.String)
        return text.is_not_null() & ~text.str.contains(kwargs["regex"])
    if expectation_type == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = pl.col(kwargs["column_A"]), pl.col(kwargs["column_B"])
        if kwargs.get("ignore_row_if", "both_values_are_missing") != "either_value_is_missing":
            return None
        ok = a >= b if kwargs.get("or_equal") else a > b
        return a.is_not_null() & b.is_not_null() & ~ok
    if expectation_type == "expect_compound_columns_to_be_unique":
        return pl.struct(kwargs["column_list"]).is_duplicated()
    return None


def _mask(frame: pl.DataFrame, result) -> pl.Expr | None:
    """The row mask of a failed expectation, when it counts what GX counted."""
    config = result.expectation_config
    mask = failing_rows(config.type, dict(config.kwargs))
    if mask is None:
        return None
    counted = (result.result or {}).get("unexpected_count")
    if counted is None or frame.select(mask.sum()).item() != counted:
        logging.getLogger(__name__).warning(
            f"{config.type} {dict(config.kwargs)}: the polars mask does not count what GX "
            f"counted ({counted}); its rows are taken from a COMPLETE GX result"
        )
        return None
    return mask


def _key(config) -> int:
    """The expectation's position in the stored suite (GX rewrites kwargs: adds a batch id,
    turns 0 into 0.0)."""
    return int((config.meta or {})["position"])


def _complete(suite_name: str, spec: dict, results: list, pandas, index_cols: list[str]) -> dict:
    """Every unexpected row of ``results``' expectations, by GX with a ``COMPLETE`` result: a
    suite of only them, so a rule without a polars mask costs only itself."""
    wanted = {_key(r.expectation_config) for r in results}
    sub = dict(spec, name=f"{suite_name}_complete")
    sub["expectations"] = [e for e in spec["expectations"] if e["meta"]["position"] in wanted]
    validation = _validation_definition(sub["name"], json.dumps(sub, sort_keys=True))
    out = validation.run(
        batch_parameters={"dataframe": pandas},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_cols},
    )
    schema = {"source_file": pl.String, "source_row": pl.Int64}
    rows = {}
    for r in out.results:
        index = [
            i for i in (r.result or {}).get("unexpected_index_list") or [] if isinstance(i, dict)
        ]
        found = (
            pl.DataFrame([{k: _plain(v) for k, v in i.items()} for i in index]) if index else None
        )
        rows[_key(r.expectation_config)] = (
            found.with_columns(
                pl.col(c).cast(t) for c, t in schema.items() if c in found.columns
            ).sort([c for c in schema if c in found.columns])
            if found is not None
            else pl.DataFrame(schema=schema)
        )
    return rows


def _categorical(frame: pl.DataFrame) -> pl.DataFrame:
    repeated = [
        c for c in ("source_file", "book_file", "symbol") if frame.schema.get(c) == pl.String
    ]
    return frame.with_columns(pl.col(repeated).cast(pl.Categorical))


def _columns(expectation: dict) -> set[str]:
    kwargs = expectation["kwargs"]
    names = [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")]
    return {n for n in [*names, *kwargs.get("column_list", [])] if n}


@cache
def _validation_definition(suite_name: str, suite_json: str):
    """One ephemeral GX context per suite variant and process (creating it costs a second)."""
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


def _violation(result, first: dict, count: int) -> Violation:
    """One failed expectation as a :class:`Violation`: ``first`` is its first unexpected row
    (by file and line), ``count`` how many GX found."""
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    meta = config.meta or {}
    outcome = result.result or {}
    if meta.get("rule"):
        rule = meta["rule"]
    elif config.type == "expect_column_values_to_be_between":
        rule = _bounds(kwargs)
    else:
        rule = _RULES.get(config.type, config.type).format_map(_Default(kwargs))
    column = (
        kwargs.get("column")
        or (",".join(kwargs["column_list"]) if "column_list" in kwargs else None)
        or (f"{kwargs['column_A']},{kwargs['column_B']}" if "column_A" in kwargs else None)
    )
    value = _first_value(kwargs, outcome, first)
    if meta.get("column"):  # a rule on a derived column, reported on the column users know
        column = meta["column"]
        value = {c: first.get(c) for c in column.split(",")} if "," in column else first.get(column)
    return Violation(
        rule=rule,
        column=column,
        file=first.get(meta.get("file_column", "source_file")),
        row=int(first["source_row"]) if first.get("source_row") is not None else None,
        value=_plain(value),
        count=count,
        symbol=first.get("symbol"),
        severity=meta.get("severity", "block"),
    )


def _first_value(kwargs: dict, outcome: dict, first: dict) -> object:
    if kwargs.get("column"):
        return first.get(kwargs["column"], (outcome.get("partial_unexpected_list") or [None])[0])
    if "column_A" in kwargs:
        if kwargs["column_A"] in first and kwargs["column_B"] in first:
            return [first[kwargs["column_A"]], first[kwargs["column_B"]]]
        pairs = outcome.get("partial_unexpected_list") or [None]
        return pairs[0]
    if "column_list" in kwargs:
        return {c: first.get(c) for c in kwargs["column_list"]}
    return outcome.get("observed_value")


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
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):  # pandas Timestamp, datetime, date
        return value.isoformat().removesuffix("T00:00:00")
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value  # NaN -> None


def render_html(spec: dict, results: list, violations: list[Violation]) -> str:
    """The validation result as one self-contained HTML page: GX's Data Docs need a file-backed
    project and a site builder; this page shows the same facts (each expectation, its severity,
    pass/fail, unexpected count and the first bad row) and is stored as a report file."""
    failures = iter(violations)
    rows = []
    for r in results:
        config = r.expectation_config
        v = next(failures) if not r.success else None
        status = (
            "passed" if r.success else f"FAILED ({(config.meta or {}).get('severity', 'block')})"
        )
        detail = html.escape(str(v)) if v else ""
        rows.append(
            f"<tr class={'ok' if r.success else 'bad'}><td>{html.escape(config.type)}</td>"
            f"<td><code>{html.escape(json.dumps(dict(config.kwargs), default=str))}</code></td>"
            f"<td>{status}</td><td>{detail}</td></tr>"
        )
    meta = spec.get("meta", {})
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>Validation: {html.escape(spec['name'])}</title><style>"
        "body{font-family:sans-serif}td{border-bottom:1px solid #ddd;padding:4px;vertical-align:top}"
        ".bad{background:#fde8e8}.ok{background:#eefaf0}</style></head><body>"
        f"<h1>Suite {html.escape(spec['name'])} v{meta.get('version', '?')}</h1>"
        f"<p>{html.escape(meta.get('notes', ''))}</p>"
        f"<p>{sum(r.success for r in results)} of {len(results)} expectations passed.</p>"
        "<table><tr><th>expectation</th><th>arguments</th><th>result</th><th>first failure</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
