"""Both UIs in a real browser (Debian's chromium, driven by selenium) against a materialized
home: the asset graph shows every group, an asset's metadata shows its plot, MLflow lists the
parent run with nested trials, the registry shows the alias. Screenshots are kept as artifacts
in ``$ALPHAFORGE_TEST_ARTIFACTS`` (default ``.artifacts/screenshots``)."""

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from pipelines.cli import UI_ENV, stop_groups, ui_commands
from pipelines.settings import load_settings

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip(
        "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)",
        allow_module_level=True,
    )
GROUPS = ("ingest", "features", "training", "portfolio", "risk", "explain", "reports")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="module")
def servers(materialized, tmp_path_factory):
    """``dagster dev`` and ``mlflow server`` on free loopback ports, each in its own process
    group (``dagster dev`` ignores SIGTERM for a while), stopped with SIGKILL as a last resort."""
    home = materialized.home
    logs = tmp_path_factory.mktemp("ui_logs")
    dagster_port, mlflow_port = _free_port(), _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALPHAFORGE", "DAGSTER_", "MLFLOW_"))
    }
    env |= UI_ENV | {
        "ALPHAFORGE_HOME": str(home),
        "ALPHAFORGE_PROFILE": "fast",
        "DAGSTER_HOME": str(home / "dagster"),
    }
    commands = ui_commands(
        load_settings(materialized.env), dagster_port, mlflow_port
    )  # what `make ui` runs
    procs = [
        subprocess.Popen(
            c,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=(logs / f"{i}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i, c in enumerate(commands)
    ]
    try:
        _wait(f"http://127.0.0.1:{dagster_port}/server_info")
        _wait(f"http://127.0.0.1:{mlflow_port}/health")
        yield f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{mlflow_port}"
    finally:
        stop_groups(procs, timeout=3)  # nothing to flush: a temporary home


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("ALPHAFORGE_TEST_ARTIFACTS", ROOT / ".artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _text_appears(driver, needles, timeout=90) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        for skip in driver.find_elements(
            By.XPATH, "//button[normalize-space()='Skip']"
        ):  # first-visit dialog
            try:
                skip.click()
            except Exception:  # noqa: BLE001 (it may vanish between finding and clicking)
                pass
        body = driver.find_element(By.TAG_NAME, "body").text
        if all(n in body for n in needles) or time.monotonic() > deadline:
            return body
        time.sleep(1)


def test_dagster_asset_graph_shows_every_group(servers, browser, shots):
    dagster, _ = servers
    browser.get(f"{dagster}/asset-groups")
    body = _text_appears(browser, ("Global asset lineage", *GROUPS))
    browser.save_screenshot(str(shots / "dagster_asset_graph.png"))
    assert all(group in body for group in GROUPS), body[:2000]


def _show_markdown(browser, key: str) -> None:
    """Click a metadata entry's "[Show Markdown]" link (long markdown opens in a dialog)."""
    from selenium.webdriver.common.by import By

    browser.find_element(
        By.XPATH, f"//td[normalize-space()='{key}']/following-sibling::td//a"
    ).click()


def test_strategy_table_shows_the_honesty_columns(servers, browser, shots):
    dagster, _ = servers
    browser.get(f"{dagster}/assets/strategy_table?view=events")
    _text_appears(browser, ("strategy_table", "pbo_logits"))
    _show_markdown(browser, "strategy_table")
    body = _text_appears(browser, ("ml_top_k", "buy_and_hold", "dsr", "pbo"))
    browser.save_screenshot(str(shots / "dagster_strategy_table.png"))
    assert all(n in body for n in ("ml_top_k", "risk_parity", "dsr", "pbo", "sharpe_gross")), body


def test_asset_metadata_shows_its_plot(servers, browser, shots):
    from selenium.webdriver.common.by import By

    dagster, _ = servers
    browser.get(f"{dagster}/assets/backtest?view=events")
    body = _text_appears(browser, ("equity_curve", "performance", "drawdowns"))
    assert "equity_curve" in body and "drawdowns" in body, body
    _show_markdown(browser, "equity_curve")  # opens the rendered plot in a dialog
    deadline = time.monotonic() + 30
    images = []
    while not images and time.monotonic() < deadline:
        images = [
            i
            for i in browser.find_elements(By.TAG_NAME, "img")
            if (i.get_attribute("src") or "").startswith("data:image/png")
        ]
        time.sleep(0.5)
    browser.save_screenshot(str(shots / "dagster_equity_curve.png"))
    assert images and images[0].size["width"] > 200


def test_dagster_shows_the_order_book_depth_heatmap(servers, browser, shots, lob_materialized):
    """The microstructure group's heat-map (price x time, colour = resting size, with the mid
    and the trades) in the ingest asset's metadata, in the same UI, on the same instance."""
    from selenium.webdriver.common.by import By

    dagster, _ = servers
    entry = "depth_heatmap_GOOG_2012-06-21"
    browser.get(f"{dagster}/assets/lob_events?view=events")
    body = _text_appears(browser, (entry, "pairs"))
    assert entry in body, body[:2000]
    _show_markdown(browser, entry)
    deadline = time.monotonic() + 30
    images = []
    while not images and time.monotonic() < deadline:
        images = [
            i
            for i in browser.find_elements(By.TAG_NAME, "img")
            if (i.get_attribute("src") or "").startswith("data:image/png")
        ]
        time.sleep(0.5)
    browser.save_screenshot(str(shots / "dagster_depth_heatmap.png"))
    assert images and images[0].size["width"] > 200


def test_mlflow_lists_the_parent_run_and_nested_trials(servers, browser, shots, materialized):
    _, ui = servers
    client = mlflow.MlflowClient(load_settings(materialized.env).mlflow_uri)
    experiment = client.get_experiment_by_name("alphaforge")
    parent = f"{materialized.result.job_def.name}-{materialized.result.run_id[:8]}"
    browser.get(f"{ui}/#/experiments/{experiment.experiment_id}/runs")
    body = _text_appears(browser, (parent,))
    browser.save_screenshot(str(shots / "mlflow_runs.png"))
    assert parent in body
    # a trial's own page names its parent (the model's run, nested under the pipeline's run)
    trial = client.search_runs(
        [experiment.experiment_id], "attributes.run_name = 'lightgbm-trial-0'"
    )[0]
    browser.get(f"{ui}/#/experiments/{experiment.experiment_id}/runs/{trial.info.run_id}")
    body = _text_appears(browser, ("lightgbm-trial-0", "Parent run"), timeout=60)
    browser.save_screenshot(str(shots / "mlflow_trial_run.png"))
    assert "lightgbm-trial-0" in body and "Parent run" in body and "fold_rank_ic" in body


def test_mlflow_compares_two_runs_side_by_side(servers, browser, shots, materialized):
    """The comparison a user makes between runs: two trials' parameters and metrics."""
    import json
    from urllib.parse import quote

    _, ui = servers
    client = mlflow.MlflowClient(load_settings(materialized.env).mlflow_uri)
    experiment = client.get_experiment_by_name("alphaforge")
    runs = [
        client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")[0]
        for name in ("lightgbm-trial-0", "lightgbm-trial-1")
    ]
    ids = quote(json.dumps([r.info.run_id for r in runs]))
    browser.get(
        f"{ui}/#/compare-runs?runs={ids}&experiments={quote(json.dumps([experiment.experiment_id]))}"
    )
    body = _text_appears(browser, ("Comparing 2 Runs", "lightgbm-trial-1", "mean_rank_ic"))
    browser.save_screenshot(str(shots / "mlflow_compare_runs.png"))
    assert "Comparing 2 Runs" in body and "mean_rank_ic" in body, body[:2000]
    assert all(p in body for p in runs[0].data.params), body[:2000]  # every tuned parameter


def test_registry_shows_the_challenger_alias(servers, browser, shots):
    _, ui = servers
    browser.get(f"{ui}/#/models/alphaforge-ensemble")
    body = _text_appears(browser, ("alphaforge-ensemble", "challenger"))
    browser.save_screenshot(str(shots / "mlflow_registry.png"))
    assert "challenger" in body and "Version 1" in body


def _figure_shown(browser, caption: str) -> dict:
    """Scroll a report figure into view; its image's decoded size and whether it is shown."""
    from selenium.webdriver.common.by import By

    img = browser.find_element(By.XPATH, f"//figure[figcaption[contains(., '{caption}')]]/img")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
    return {
        "width": browser.execute_script("return arguments[0].naturalWidth;", img),
        "complete": browser.execute_script("return arguments[0].complete;", img),
        "displayed": img.is_displayed(),
    }


def test_html_report_shows_the_var_backtest_and_the_shap_summary(materialized, browser, shots):
    page = materialized.home / "reports" / "latest" / "report.html"
    browser.get(page.resolve().as_uri())
    body = _text_appears(browser, ("AlphaForge run report", "VaR backtest", "Explanations"))
    for needle in ("kupiec_p", "independence_p", "zone", "fhs_garch", "evt", "dsr", "pbo"):
        assert needle in body, needle
    var = _figure_shown(browser, "99% VaR")
    browser.save_screenshot(str(shots / "report_var_backtest.png"))
    shap = _figure_shown(browser, "SHAP summary")
    browser.save_screenshot(str(shots / "report_shap_summary.png"))
    for shown in (var, shap):
        assert shown["complete"] and shown["displayed"] and shown["width"] > 500, shown
