"""Metadata helpers shared by the assets: tables, schemas and figures for the Dagster UI."""

import base64
import os
import re
import resource
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from dagster import (
    MetadataValue,
    TableColumn,
    TableConstraints,
    TableRecord,
    TableSchema,
)

from models.reporting.columns import KINDS, Column, describe, display, once_text
from models.reporting.html import to_markdown  # noqa: F401 (the assets' markdown tables)
from models.reporting.plots import png_bytes  # noqa: F401 (the assets' figures)


def image(png: bytes, alt: str) -> MetadataValue:
    """A PNG shown inline in the asset's metadata panel."""
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def table(frame: pl.DataFrame) -> MetadataValue:
    """A small frame as a Dagster table: each column typed and described from the column
    registry (``models/reporting/columns.py``), its values as a person reads them (fractions in percent,
    integers as integers; the unit in the heading and the description), and the figures that are
    one per table (PBO) said once, in the schema's constraints, instead of on every row."""
    shown = display(frame)
    columns = [
        TableColumn(
            heading,
            _TYPES.get(column.kind, "float"),
            description=_describe(column),
        )
        for _, heading, column in shown.columns
    ]
    once = [f"{once_text([figure])}: {figure[1].description}" for figure in shown.once]
    schema = TableSchema(columns=columns, constraints=TableConstraints(other=once))
    headings = [heading for _, heading, _ in shown.columns]
    records = [TableRecord(dict(zip(headings, row, strict=True))) for row in shown.shown.rows()]
    return MetadataValue.table(records, schema)


_TYPES = {"text": "string", "int": "int", "days": "int"}


def _describe(column: Column) -> str:
    unit = KINDS[column.kind].unit
    extra = {
        "percent": "in percent",
        "prob": "a probability, in percent",
        "bp": "in basis points",
        "days": "in trading days",
        "seconds": "in seconds",
        "multiple": "times the book",
    }.get(column.kind)
    text = column.description or "Not described yet (models/reporting/columns.py)."
    return f"{text.rstrip('.')}, {extra}." if extra and unit else text


def schema(frame: pl.DataFrame, descriptions: dict[str, str] | None = None) -> TableSchema:
    """The frame's columns with their dtypes, described from ``descriptions`` (e.g. the feature
    registry's) or the column registry."""
    descriptions = descriptions or {}
    return TableSchema(
        columns=[
            TableColumn(
                name,
                str(dtype),
                description=descriptions.get(name) or describe(name, dtype).description or None,
            )
            for name, dtype in frame.schema.items()
        ]
    )


def frame_metadata(frame: pl.DataFrame, descriptions: dict[str, str] | None = None) -> dict:
    """Row count and column schema (described), as Dagster's standard keys."""
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": schema(frame, descriptions),
    }


# Linux keeps a process's peak resident set (VmHWM) and lets the process reset it (writing 5 to
# /proc/self/clear_refs, since Linux 4.0): the peak of one step, or of one model inside a step,
# is then read exactly, allocations by polars, Arrow and the boosting libraries (which
# tracemalloc cannot see) included. Elsewhere every peak is the process's since it started.
_STATUS, _CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")
_carried = 0.0  # the window's peak before the last reset inside it (see measure_peak)


def _reset() -> None:
    try:
        _CLEAR.write_text("5")
    except OSError:
        pass


def _hwm_mib() -> float:
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", _STATUS.read_text())
        if match:
            return int(match.group(1)) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def start_peak_window() -> None:
    """Start a new window for :func:`peak_rss_mib` (the IO manager opens one per step)."""
    global _carried
    _carried = 0.0
    _reset()


def peak_rss_mib() -> float:
    """The highest resident set size, in MiB, since :func:`start_peak_window`."""
    return max(_carried, _hwm_mib())


@contextmanager
def measure_peak(into: dict[str, float], key: str) -> Iterator[None]:
    """``into[key]``: the peak resident set size (MiB) while the block runs, without losing
    the window's own peak."""
    global _carried
    _carried = max(_carried, _hwm_mib())
    _reset()
    try:
        yield
    finally:
        into[key] = round(_hwm_mib(), 1)


def yield_to_fits() -> None:
    """Run this (background) thread at the lowest CPU priority: on a machine whose cores the
    fits' OpenMP threads fill, a tracking thread at normal priority stalls one of them, and the
    others wait at the next barrier. Linux gives threads their own nice value; elsewhere this
    does nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def contract_check(asset: str) -> str:
    """The name of an ingest asset's blocking data-contract check: ``check_<asset>_contract``."""
    return f"check_{asset}_contract"
