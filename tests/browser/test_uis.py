"""Both UIs and the run report in a real browser (Debian's chromium, driven by selenium) against
a materialized home, started the way ``alphaforge ui`` starts them, checked for what a person
looks for on a first visit: every group in the lineage, no failed data check and no missing
daily partition on the bundled run, every ``mlflow_run`` link answering from the MLflow UI the
links name, the strategy table as a table, MLflow in its model-training view with the registry
one click away, the night's metrics on the parent run, tables that sort where sorting exists.
Screenshots go to ``$ALPHAFORGE_TEST_ARTIFACTS`` (default ``.artifacts/screenshots``); the
README's ``docs/screenshots/`` are copies of them."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import mlflow
import polars as pl
import pytest
from dagster import AssetKey

from pipelines.cli import UI_ENV, mlflow_ui_port, stop_groups, ui_commands
from pipelines.resources import TRAINING_VIEW, ui_link
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
HEADLINE = ("ensemble_test_rank_ic", "best_net_sharpe", "pbo", "rows_in", "var99_exceptions_max")


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
    """``dagster dev`` and ``mlflow server`` as ``alphaforge ui`` runs them: MLflow on the port
    of ``ALPHAFORGE_MLFLOW_UI`` (the materialized home's links name a free one), each in its own
    process group (``dagster dev`` ignores SIGTERM for a while), stopped with SIGKILL last."""
    home = materialized.home
    logs = tmp_path_factory.mktemp("ui_logs")
    settings = load_settings(materialized.env)
    dagster_port, mlflow_port = _free_port(), mlflow_ui_port(settings, None)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALPHAFORGE", "DAGSTER_", "MLFLOW_"))
    }
    env |= UI_ENV | materialized.env | {"DAGSTER_HOME": str(home / "dagster")}
    procs = [
        subprocess.Popen(
            c,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=(logs / f"{i}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i, c in enumerate(ui_commands(settings, dagster_port, mlflow_port))
    ]
    try:
        _wait(f"http://127.0.0.1:{dagster_port}/server_info")
        _wait(f"http://127.0.0.1:{mlflow_port}/health")
        yield f"http://127.0.0.1:{dagster_port}", settings.mlflow_ui
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


def _png_images(driver, timeout: float = 30) -> list:
    """The inline PNG images on the page, once at least one has rendered (or none in time)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    images = []
    while not images and time.monotonic() < deadline:
        images = [
            i
            for i in driver.find_elements(By.TAG_NAME, "img")
            if (i.get_attribute("src") or "").startswith("data:image/png")
        ]
        time.sleep(0.5)
    return images


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


def _metadata(materialized, key: str) -> dict:
    event = materialized.instance.get_latest_materialization_event(AssetKey(key))
    return event.asset_materialization.metadata


def test_dagster_asset_graph_shows_every_group(servers, browser, shots):
    dagster, _ = servers
    browser.get(f"{dagster}/asset-groups")
    body = _text_appears(browser, ("Global asset lineage", *GROUPS))
    browser.save_screenshot(str(shots / "dagster_asset_graph.png"))
    assert all(group in body for group in GROUPS), body[:2000]


def _show_markdown(browser, key: str, timeout: float = 90) -> list:
    """Click a metadata entry's "[Show Markdown]" link (long markdown opens in a dialog) and
    return the dialog's PNG images. Under load the page keeps re-rendering after its text is
    there (a first-visit dialog, the events list refreshing, an earlier dialog still closing),
    so a click can miss or be intercepted: it is tried again until an image shows."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    backdrop = (By.CSS_SELECTOR, ".bp5-overlay-backdrop")
    link = (By.XPATH, f"//td[normalize-space()='{key}']/following-sibling::td//a")
    deadline = time.monotonic() + timeout
    if browser.find_elements(*backdrop):  # an earlier test's dialog: close it and let it go
        browser.find_element(By.TAG_NAME, "body").send_keys("\ue00c")  # Escape
        while browser.find_elements(*backdrop) and time.monotonic() < deadline:
            time.sleep(0.5)
    while True:
        try:
            links = browser.find_elements(*link)
            if links and not browser.find_elements(*backdrop):
                browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", links[0])
                links[0].click()
            images = _png_images(browser, timeout=10)
            if images:
                return images
            # an overlay without our image (a first-visit dialog, an earlier one closing)
            _text_appears(browser, (), timeout=0)  # clicks a first-visit dialog's Skip
            browser.find_element(By.TAG_NAME, "body").send_keys("\ue00c")  # Escape
        except WebDriverException:  # the element went stale or the click was intercepted
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no picture opened from {key!r} in {timeout:.0f} s")
        time.sleep(1)


def test_asset_metadata_shows_its_plot(servers, browser, shots):
    from selenium.webdriver.common.by import By

    dagster, _ = servers
    browser.get(f"{dagster}/assets/backtest?view=events")
    body = _text_appears(browser, ("equity_curve", "performance", "drawdowns"))
    assert "equity_curve" in body and "drawdowns" in body, body
    images = _show_markdown(browser, "equity_curve")  # the rendered plot, in a dialog
    browser.save_screenshot(str(shots / "dagster_equity_curve.png"))
    assert images and images[0].size["width"] > 200
    browser.find_element(By.TAG_NAME, "body").send_keys("\ue00c")  # Escape closes the dialog


def test_dagster_shows_the_order_book_depth_heatmap(servers, browser, shots, lob_materialized):
    """The microstructure group's heat-map (price x time, colour = resting size, with the mid
    and the trades) in the ingest asset's metadata, in the same UI, on the same instance."""

    dagster, _ = servers
    entry = "depth_heatmap_GOOG_2012-06-21"
    browser.get(f"{dagster}/assets/lob_events?view=events")
    body = _text_appears(browser, (entry, "pairs"))
    assert entry in body, body[:2000]
    images = _show_markdown(browser, entry)
    browser.save_screenshot(str(shots / "dagster_depth_heatmap.png"))
    assert images and images[0].size["width"] > 200


def test_no_data_check_fails_on_the_bundled_run(servers, browser, shots, materialized):
    """Every check of the bundled run passes but the champion gate's, which may refuse the
    fast ensemble (then a warning that says why, not a data alarm); the quality check's page
    shows it passed."""
    dagster, _ = servers
    checks = materialized.result.get_asset_check_evaluations()
    failed = {c.check_name: c.description for c in checks if not c.passed}
    gate = failed.pop("check_ensemble_model_champion_gate", None)
    assert not failed, failed
    if gate is not None:
        assert gate.startswith("refused: test Rank IC"), gate
    browser.get(f"{dagster}/assets/market_prices?view=checks")
    body = _text_appears(browser, ("check_market_prices_quality", "Passed"))
    browser.save_screenshot(str(shots / "dagster_market_prices_checks.png"))
    assert "check_market_prices_quality" in body and "Passed" in body and "Failed" not in body


def test_no_daily_partition_is_missing_in_the_bundled_range(servers, browser, shots):
    """The bundled range, typed into the partitions page's range box as a person would: the
    weekday partitions run on to today, past the bundled data's last day (2022-12-28)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    dagster, _ = servers
    browser.get(f"{dagster}/assets/daily_prices?view=partitions")
    _text_appears(browser, ("Materialized (", "Missing ("))
    (box,) = [
        i
        for i in browser.find_elements(By.TAG_NAME, "input")
        if (i.get_attribute("value") or "").startswith("[")
    ]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("[2022-12-01...2022-12-28]", Keys.ENTER)
    body = _text_appears(browser, ("20 Partitions Selected", "Missing ("))
    browser.save_screenshot(str(shots / "dagster_daily_partitions.png"))
    counts = {k: int(v.replace(",", "")) for k, v in re.findall(r"(\w+) \(([\d,]+)\)", body)}
    assert counts["Missing"] == 0 and counts["Failed"] == 0, body[:2000]
    assert counts["Materialized"] == 20, body[:2000]  # December 2022's weekdays


def _mlflow_links(materialized) -> dict[str, str]:
    """Every ``mlflow_run`` and ``report_url`` link in the latest materializations."""
    links = {}
    for key in materialized.defs.resolve_asset_graph().get_all_asset_keys():
        event = materialized.instance.get_latest_materialization_event(key)
        if event is None:
            continue
        metadata = event.asset_materialization.metadata
        for name in ("mlflow_run", "report_url"):
            if name in metadata:
                links[f"{key.to_user_string()}.{name}"] = metadata[name].value
    return links


def test_every_mlflow_link_answers_from_the_ui_it_names(servers, browser, materialized):
    """Each link names the MLflow UI that `alphaforge ui` serves (no file:// link), opens the
    model-training view, and its run exists on that server: the run page's own API answers
    200 for it from the same port."""
    _, ui = servers
    links = _mlflow_links(materialized)
    assert len(links) >= 12 and "run_report.report_url" in links, links
    for name, link in links.items():
        parts = urlsplit(link)
        assert f"{parts.scheme}://{parts.netloc}" == ui, (name, link)
        assert parts.fragment.endswith(TRAINING_VIEW), (name, link)
        run_id = parts.fragment.split("/runs/")[1].split("/")[0].split("?")[0]
        api = f"{ui}/ajax-api/2.0/mlflow/runs/get?run_id={run_id}"
        with urllib.request.urlopen(api, timeout=10) as response:
            assert response.status == 200, (name, api)
            assert json.load(response)["run"]["info"]["run_id"] == run_id
        with urllib.request.urlopen(link, timeout=10) as response:
            assert response.status == 200, (name, link)


def test_strategy_table_is_a_table_with_units_and_its_link_opens(
    servers, browser, shots, materialized
):
    from selenium.webdriver.common.by import By

    dagster, _ = servers
    browser.get(f"{dagster}/assets/strategy_table?view=events")
    _text_appears(browser, ("strategy_table", "pbo_logits", "annual_return (%)"))
    table = browser.find_element(
        By.XPATH, "//table[.//*[normalize-space()='annual_return (%)']][.//*[.='ml_top_k']]"
    )
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", table)
    browser.save_screenshot(str(shots / "dagster_strategy_table.png"))
    text = table.text
    for heading in ("strategy", "annual_return (%)", "sharpe", "psr (%)", "dsr (%)"):
        assert heading in text, heading
    frame = pl.read_parquet(materialized.home / "lake" / "strategy_table.parquet")
    assert all(name in text for name in frame["strategy"])
    ml = frame.filter(strategy="ml_top_k").row(0, named=True)
    assert f"{ml['annual_return'] * 100:.2f}".rstrip("0").rstrip(".") in text  # a percentage
    assert "pbo (%)" not in text  # one figure for the table, not a column
    # the asset's MLflow link, followed from the page: the parent of one run per strategy
    href = browser.find_element(
        By.XPATH, "//td[normalize-space()='mlflow_run']/following-sibling::td//a"
    ).get_attribute("href")
    assert href == _metadata(materialized, "strategy_table")["mlflow_run"].value


def test_mlflow_opens_in_model_training_with_the_registry_one_click_away(servers, browser, shots):
    from selenium.webdriver.common.by import By

    _, ui = servers
    browser.get(ui_link(ui, "experiments"))  # what `alphaforge ui` and `alphaforge run` print
    body = _text_appears(browser, ("Model registry", "alphaforge"))
    browser.save_screenshot(str(shots / "mlflow_landing.png"))
    assert "Model registry" in body and "alphaforge" in body, body[:1500]
    assert "Default" not in body.split("alphaforge", 1)[1]  # the empty Default experiment gone
    browser.find_element(By.XPATH, "//a[normalize-space()='Model registry']").click()
    body = _text_appears(browser, ("alphaforge-ensemble",))
    assert "alphaforge-ensemble" in body, body[:1500]


def test_mlflow_parent_run_carries_the_nights_metrics(servers, browser, shots, materialized):
    _, ui = servers
    client = mlflow.MlflowClient(load_settings(materialized.env).mlflow_uri)
    experiment = client.get_experiment_by_name("alphaforge")
    name = f"{materialized.result.job_def.name}-{materialized.result.run_id[:8]}"
    (parent,) = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")
    assert set(HEADLINE) <= set(parent.data.metrics), parent.data.metrics
    browser.get(ui_link(ui, f"experiments/{experiment.experiment_id}/runs/{parent.info.run_id}"))
    body = _text_appears(browser, (name, *HEADLINE))
    browser.save_screenshot(str(shots / "mlflow_parent_run.png"))
    assert all(m in body for m in HEADLINE), body[:3000]
    assert "Model registry" in body  # still the training view
    # the runs list, newest first: the parent run and its nested children
    browser.get(ui_link(ui, f"experiments/{experiment.experiment_id}/runs"))
    body = _text_appears(browser, (name,))
    browser.save_screenshot(str(shots / "mlflow_runs.png"))
    assert name in body


def test_mlflow_sorts_the_strategies_by_a_metric(servers, browser, shots, materialized):
    """One MLflow run per strategy, listed in MLflow's own table sorted by net Sharpe."""
    from urllib.parse import quote

    from selenium.webdriver.common.by import By

    _, ui = servers
    client = mlflow.MlflowClient(load_settings(materialized.env).mlflow_uri)
    experiment = client.get_experiment_by_name("alphaforge")
    frame = pl.read_parquet(materialized.home / "lake" / "strategy_table.parquet")
    ranked = frame.sort("sharpe", descending=True)["strategy"].to_list()
    search = quote("attributes.run_name LIKE 'strategy %'")
    query = f"searchFilter={search}&orderByKey={quote('metrics.`sharpe`')}&orderByAsc=false"
    browser.get(ui_link(ui, f"experiments/{experiment.experiment_id}/runs?{query}"))
    _text_appears(browser, tuple(f"strategy {s}" for s in ranked[:5]))

    def shown() -> tuple[list[str], list[str]]:
        """The strategy rows in the order the table shows them, top to bottom, and the
        ranking's order of the same rows. The grid positions its rows by style, so their order
        in the page's text is not the order on screen: it is read from where each row is. The
        list is drawn before the sort is applied, so this is read until they agree."""
        links = browser.find_elements(By.XPATH, "//a[starts-with(normalize-space(.), 'strategy ')]")
        rows = sorted((a.location["y"], a.text.strip().removeprefix("strategy ")) for a in links)
        order = [name for _, name in rows if name in ranked]
        return order, [s for s in ranked if s in order]

    deadline = time.monotonic() + 30
    order, visible = shown()
    while order != visible and time.monotonic() < deadline:
        time.sleep(1)
        order, visible = shown()
    browser.save_screenshot(str(shots / "mlflow_strategies_by_sharpe.png"))
    assert len(visible) >= min(8, len(ranked)), (order, ranked)
    assert order == visible, (order, ranked)


def test_mlflow_trial_headlines_its_mean_fold_score(servers, browser, shots, materialized):
    _, ui = servers
    client = mlflow.MlflowClient(load_settings(materialized.env).mlflow_uri)
    experiment = client.get_experiment_by_name("alphaforge")
    trial = client.search_runs(
        [experiment.experiment_id], "attributes.run_name = 'lightgbm-trial-0'"
    )[0]
    browser.get(ui_link(ui, f"experiments/{experiment.experiment_id}/runs/{trial.info.run_id}"))
    body = _text_appears(browser, ("lightgbm-trial-0", "Parent run", "mean_rank_ic"), timeout=60)
    browser.save_screenshot(str(shots / "mlflow_trial_run.png"))
    assert "lightgbm-trial-0" in body and "Parent run" in body
    assert "mean_rank_ic" in body and "fold_1_rank_ic" in body


def test_mlflow_compares_two_runs_side_by_side(servers, browser, shots, materialized):
    """The comparison a user makes between runs: two trials' parameters and metrics."""
    from urllib.parse import quote

    _, ui = servers
    client = mlflow.MlflowClient(load_settings(materialized.env).mlflow_uri)
    experiment = client.get_experiment_by_name("alphaforge")
    runs = [
        client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")[0]
        for name in ("lightgbm-trial-0", "lightgbm-trial-1")
    ]
    ids = quote(json.dumps([r.info.run_id for r in runs]))
    experiments = quote(json.dumps([experiment.experiment_id]))
    browser.get(ui_link(ui, f"compare-runs?runs={ids}&experiments={experiments}"))
    body = _text_appears(browser, ("Comparing 2 Runs", "lightgbm-trial-1", "mean_rank_ic"))
    browser.save_screenshot(str(shots / "mlflow_compare_runs.png"))
    assert "Comparing 2 Runs" in body and "mean_rank_ic" in body, body[:2000]
    assert all(p in body for p in runs[0].data.params), body[:2000]  # every tuned parameter


def test_registry_describes_the_model_and_shows_the_challenger(servers, browser, shots):
    _, ui = servers
    browser.get(ui_link(ui, "models/alphaforge-ensemble"))
    body = _text_appears(browser, ("alphaforge-ensemble", "challenger", "meta-learner"))
    browser.save_screenshot(str(shots / "mlflow_registry.png"))
    assert "challenger" in body and "Version 1" in body and "meta-learner" in body


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


def _column(browser, table, heading: str) -> list[str]:
    from selenium.webdriver.common.by import By

    headings = [th.text for th in table.find_elements(By.TAG_NAME, "th")]
    i = headings.index(heading)
    return [
        row.find_elements(By.TAG_NAME, "td")[i].text
        for row in table.find_elements(By.XPATH, "./tbody/tr")
    ]


def test_run_report_opens_in_mlflow_and_its_tables_sort(servers, browser, shots, materialized):
    """The report's link opens it in the MLflow UI (an artefact, shown in a frame); there its
    strategy table sorts on a click on a heading, by the unrounded value."""
    from selenium.webdriver.common.by import By

    link = _metadata(materialized, "run_report")["report_url"].value
    browser.get(link)
    _text_appears(browser, ("report.html",))
    frame = None
    deadline = time.monotonic() + 60
    while frame is None and time.monotonic() < deadline:
        frames = browser.find_elements(By.CSS_SELECTOR, "iframe.mlflow-html-iframe")
        frame = frames[0] if frames else time.sleep(1)
    assert frame is not None, "the MLflow UI showed no HTML artefact"
    browser.save_screenshot(str(shots / "mlflow_run_report.png"))
    browser.switch_to.frame(frame)
    try:
        body = _text_appears(browser, ("AlphaForge run report", "VaR backtest", "Explanations"))
        for needle in ("kupiec_p", "independence_p", "zone", "fhs_garch", "evt", "dsr", "pbo"):
            assert needle in body, needle
        table = browser.find_element(By.XPATH, "//section[@id='strategies']//table")
        heading = table.find_element(By.XPATH, ".//th[normalize-space()='sharpe']")
        heading.click()  # ascending
        heading.click()  # descending
        shown = _column(browser, table, "sharpe")
        strategies = _column(browser, table, "strategy")
    finally:
        browser.switch_to.default_content()
    frame_ = pl.read_parquet(materialized.home / "lake" / "strategy_table.parquet")
    assert strategies == frame_.sort("sharpe", descending=True)["strategy"].to_list()
    assert [float(v) for v in shown] == sorted((float(v) for v in shown), reverse=True)


def test_html_report_shows_the_var_backtest_and_the_shap_summary(materialized, browser, shots):
    page = materialized.home / "reports" / "latest" / "report.html"
    browser.get(page.resolve().as_uri())
    body = _text_appears(browser, ("AlphaForge run report", "VaR backtest", "Explanations"))
    assert "For the whole table: pbo" in body
    var = _figure_shown(browser, "99% VaR")
    browser.save_screenshot(str(shots / "report_var_backtest.png"))
    shap = _figure_shown(browser, "SHAP summary")
    browser.save_screenshot(str(shots / "report_shap_summary.png"))
    for shown in (var, shap):
        assert shown["complete"] and shown["displayed"] and shown["width"] > 500, shown
    equity = _figure_shown(browser, "Equity curves")
    browser.save_screenshot(str(shots / "report_equity_curves.png"))
    assert equity["complete"] and equity["width"] > 1000, equity
