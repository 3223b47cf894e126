"""Metadata helpers shared by the assets: tables, schemas and figures for the Dagster UI."""

import base64
import io
import re
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from dagster import MetadataValue, TableColumn, TableSchema
from matplotlib.figure import Figure


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def image(png: bytes, alt: str) -> MetadataValue:
    """A PNG shown inline in the asset's metadata panel."""
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def table(frame: pl.DataFrame, floatfmt: str = ".4f") -> MetadataValue:
    """A small frame as a markdown table."""
    return MetadataValue.md(to_markdown(frame, floatfmt))


def to_markdown(frame: pl.DataFrame, floatfmt: str = ".4f") -> str:
    """Polars' own markdown rendering, every row and column shown."""
    digits = int(floatfmt.strip(".f"))
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        float_precision=digits,
        tbl_rows=-1,
        tbl_cols=-1,
        fmt_str_lengths=120,
        tbl_width_chars=60_000,
    ):
        return str(frame)


def schema(frame: pl.DataFrame) -> TableSchema:
    return TableSchema(
        columns=[TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
    )


def frame_metadata(frame: pl.DataFrame) -> dict:
    """Row count and column schema, as Dagster's standard keys."""
    return {"dagster/row_count": len(frame), "dagster/column_schema": schema(frame)}


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
