"""Links people follow from the UIs: MLflow links open its model-training view; `alphaforge ui`
serves MLflow where the links point; catalog descriptions read as plain text."""

import pytest

from pipelines.cli import mlflow_ui_port, ui_commands
from pipelines.definitions import catalog_text
from pipelines.resources import ui_link
from pipelines.settings import load_settings


def test_ui_links_put_the_training_view_inside_the_hash_route():
    # MLflow's hash router reads its query after the '#': before it the UI opens in GenAI mode
    assert ui_link("http://127.0.0.1:5000/", "experiments/1/runs/abc") == (
        "http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning"
    )
    assert ui_link("http://h:1", "/x?a=1").endswith("/#/x?a=1&workflowType=machine_learning")


def test_alphaforge_ui_serves_mlflow_where_the_links_point(tmp_path):
    env = {"ALPHAFORGE_HOME": str(tmp_path)}
    assert mlflow_ui_port(load_settings(env), None) == 5000
    moved = load_settings(env | {"ALPHAFORGE_MLFLOW_UI": "http://127.0.0.1:5123"})
    assert mlflow_ui_port(moved, None) == 5123 and mlflow_ui_port(moved, 5123) == 5123
    with pytest.raises(
        ValueError, match=r"--mlflow-port 5001: the links .* http://127.0.0.1:5123 "
    ):
        mlflow_ui_port(moved, 5001)
    remote = load_settings(env | {"ALPHAFORGE_MLFLOW_UI": "https://mlflow.example.com"})
    assert mlflow_ui_port(remote, None) == 5000 and mlflow_ui_port(remote, 5001) == 5001
    command = ui_commands(moved, 3000, mlflow_ui_port(moved, None))[1]
    assert command[command.index("--port") + 1] == "5123"


def test_catalog_text_drops_rst_markup_and_joins_wrapped_lines():
    doc = """Daily ``[date, net]`` of every strategy, see
    :func:`models.backtest.engine.performance`.

    - ``a``: one
      wrapped item;
    - b: two."""
    assert catalog_text(doc) == (
        "Daily [date, net] of every strategy, see models.backtest.engine.performance.\n\n"
        "- a: one wrapped item;\n- b: two."
    )
