"""The notebooks a user opens first run top to bottom (nbclient, a real kernel) and are stored
without outputs."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _run(path: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    book = nbformat.read(path, as_version=4)
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(
            book,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOKS.parent)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return book


def test_notebooks_are_stored_without_outputs():
    books = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert len(books) >= 2
    for path in books:
        book = nbformat.read(path, as_version=4)
        assert all(
            not c.get("outputs") and c.get("execution_count") is None
            for c in book.cells
            if c.cell_type == "code"
        ), path


def test_explore_features_notebook_runs():
    book = _run(NOTEBOOKS / "01_explore_features.ipynb", {})
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert any(o.output_type == "error" for o in outputs) is False
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the correlation map


def test_compare_runs_notebook_runs_on_a_materialized_home(materialized):
    book = _run(
        NOTEBOOKS / "02_compare_runs_and_load_model.ipynb",
        {"ALPHAFORGE_HOME": str(materialized.home)},
    )
    text = "".join(
        str(o.get("text", "")) for c in book.cells if c.cell_type == "code" for o in c.outputs
    )
    assert f"from Dagster run {materialized.result.run_id}" in text
