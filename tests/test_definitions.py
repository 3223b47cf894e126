"""Definitions load, the asset graph matches its snapshot, and the layering holds."""

import ast
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import build_schedule_context

from pipelines.definitions import definitions_from_env

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_snapshot() -> dict:
    defs = definitions_from_env({"ALPHAFORGE_HOME": "/nonexistent/alphaforge"})
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "owners": list(node.owners),
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in defs.schedules),
        "sensors": sorted(s.name for s in defs.sensors),
    }


def test_asset_graph_matches_snapshot():
    current = graph_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":  # after a deliberate change: review the diff
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "asset graph changed: UPDATE_SNAPSHOTS=1 pytest, then review"
    )


def test_asset_checks_and_which_block():
    defs = definitions_from_env({"ALPHAFORGE_HOME": "/nonexistent/alphaforge"})
    specs = [s for a in defs.resolve_asset_graph().assets_defs for s in a.check_specs]
    assert sorted((s.asset_key.to_user_string(), s.name, s.blocking) for s in specs) == [
        ("daily_prices", "check_daily_prices_contract", True),
        ("ensemble_model", "check_ensemble_model_champion_age", False),
        ("ensemble_model", "check_ensemble_model_champion_gate", False),
        ("lob_book", "check_lob_book_contract", True),
        ("lob_events", "check_lob_events_contract", True),
        ("market_prices", "check_market_prices_quality", False),
        ("oof_predictions", "check_oof_predictions_no_leakage", True),
        ("price_history", "check_price_history_contract", True),
        ("strategy_table", "check_strategy_table_plausible", False),
    ]


def test_every_asset_has_an_owner_and_a_code_version_of_its_module_and_the_library():
    defs = definitions_from_env({"ALPHAFORGE_HOME": "/nonexistent/alphaforge"})
    graph = defs.resolve_asset_graph()
    nodes = {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}
    assert all(n.owners and n.owners[0].startswith("team:") for n in nodes.values())
    versions = {name: n.code_version for name, n in nodes.items()}
    assert all(v and len(v) == 12 for v in versions.values())
    # one module, one version; another module, another
    assert versions["base_models"] == versions["ensemble_model"]  # assets/training.py
    assert versions["base_models"] != versions["feature_matrix"]  # assets/features.py


def test_nightly_schedule_targets_the_full_profile_after_the_us_close():
    defs = definitions_from_env({"ALPHAFORGE_HOME": "/nonexistent/alphaforge"})
    schedule = defs.get_schedule_def("daily_job_schedule")
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.cron_schedule == "30 18 * * 1-5"
    assert schedule.job_name == "daily_job"
    friday = datetime(2026, 11, 20, 18, 30, tzinfo=ZoneInfo("America/New_York"))
    (request,) = schedule.evaluate_tick(
        build_schedule_context(
            scheduled_execution_time=friday, repository_def=defs.get_repository_def()
        )
    ).run_requests
    assert request.partition_key == "2026-11-20"
    # the nightly job reports on the new day; the GAN scenarios are retrained weekly only
    from pipelines.definitions import job_assets

    nightly = job_assets(defs.resolve_job_def("daily_job"))
    assert {"var_backtest", "risk_report", "run_report"} <= nightly
    assert "stress_scenarios" not in nightly
    assert "stress_scenarios" in job_assets(defs.resolve_job_def("full_job"))
    weekly = defs.get_schedule_def("full_job_schedule")
    assert weekly.job_name == "full_job" and weekly.cron_schedule == "0 6 * * 6"
    saturday = datetime(2026, 11, 21, 6, 0, tzinfo=ZoneInfo("America/New_York"))
    (rebuild,) = weekly.evaluate_tick(
        build_schedule_context(
            scheduled_execution_time=saturday, repository_def=defs.get_repository_def()
        )
    ).run_requests
    # the bundled data's daily partitions: December 2022, up to its last day
    assert rebuild.tags["dagster/asset_partition_range_start"] == "2022-12-01"
    assert rebuild.tags["dagster/asset_partition_range_end"] == "2022-12-28"


def _imported_modules(package: str) -> set[str]:
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_models_and_contracts_import_neither_dagster_nor_mlflow():
    for package in ("models", "data_contracts"):
        assert not _imported_modules(package) & {"dagster", "mlflow", "pipelines", "assets"}, (
            package
        )
    # transitively, too: importing every module must not pull them in
    code = (
        "import pkgutil, importlib, sys, models, data_contracts\n"
        "for pkg in (models, data_contracts):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "import data_contracts.suite as v; import polars as pl\n"
        "v.validate(pl.DataFrame({'symbol': ['A'], 'date': [None], 'close': [1.0], 'days_after_run_date': [0], 'repeats_of_symbol_date': [0]}), 'market_prices')\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'dagster', 'mlflow'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_assets_do_not_import_pipelines():
    assert "pipelines" not in _imported_modules("assets")


def test_no_asset_module_imports_another():
    """Each group's module stands alone: shared pieces live in the helper modules (``_meta``
    for metadata, ``_config`` for the settings several groups read, ``ports`` for the
    protocols), domain logic in ``models/``."""
    helpers = {"assets._meta", "assets._config", "assets.ports"}
    for path in (ROOT / "assets").glob("*.py"):
        if f"assets.{path.stem}" in helpers or path.stem == "__init__":
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        assert not {m for m in imported if m.startswith("assets.")} - helpers, path.name


def test_assets_track_through_the_port_and_never_import_mlflow():
    """Runs, trials, figures and the registry go through ``assets/ports.py``'s ``Tracker``
    (``pipelines/resources.py`` and ``pipelines/registry.py`` hold the MLflow code)."""
    assert "mlflow" not in _imported_modules("assets")


def test_no_installed_package_shadows_our_top_level_modules():
    import importlib.util

    for name in ("assets", "models", "pipelines", "data_contracts"):
        spec = importlib.util.find_spec(name)
        assert Path(spec.origin).resolve().parent == ROOT / name, (name, spec.origin)


SECRETS = {
    "VENDOR_KEY": "sk-vendor-0b1d3c",
    "ALPHAFORGE_PG_PASSWORD": "pg-pass-7e2a91",
    "ALPHAFORGE_ALERT_WEBHOOK": "https://hooks.example.com/T00/B00/hook-5c8f40",
    "ALPHAFORGE_MLFLOW_URI": "postgresql+psycopg2://ml:track-3d9e77@db:5432/mlflow",
}


def test_resources_hold_secret_references_never_their_values(tmp_path):
    """What the Dagster UI and GraphQL show of the resources: names of variables, not values
    (``dagster.EnvVar``); the values are read inside the run."""
    from pipelines.definitions import build_resources, experiment_tags
    from pipelines.experiment import resolve
    from pipelines.settings import load_settings

    overrides = {
        "data.source": "http",
        "data.url": "https://vendor.example.com/q?symbol={symbol}&apikey={api_key}",
        "data.api_key": "${env:VENDOR_KEY}",
        "data.universe": "[AAA, BBB, CCC, DDD, EEE, FFF, GGG, HHH, III, JJJ, KKK]",
    }
    for deployment in ("local", "prod"):
        env = SECRETS | {"ALPHAFORGE_HOME": str(tmp_path), "ALPHAFORGE_DEPLOYMENT": deployment}
        resolved = resolve(None, environ=env, overrides=overrides)
        resources = build_resources(load_settings(env), resolved, env)
        shown = json.dumps({k: r.model_dump() for k, r in resources.items()}, default=repr)
        shown += repr(resources) + json.dumps(experiment_tags(resolved))
        leaked = [name for name, value in SECRETS.items() if value in shown]
        assert leaked == [], (deployment, leaked)
        assert "VENDOR_KEY" in shown and "ALPHAFORGE_ALERT_WEBHOOK" in shown
        assert "ALPHAFORGE_MLFLOW_URI" in shown
