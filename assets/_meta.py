"""Metadata helpers shared by the assets: tables, schemas and figures for the Dagster UI."""

import base64
import io

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
