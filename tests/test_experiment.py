"""The experiment file: validation catalogue, precedence, origins, env references, compilation."""

import json
from pathlib import Path

import pytest
import yaml

from assets.portfolio import PortfolioConfig
from assets.training import TrainingConfig
from pipelines.experiment import Experiment, ExperimentError, resolve, resolve_env_refs, show

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def problems(tmp_path, text: str, environ=None) -> list[str]:
    with pytest.raises(ExperimentError) as err:
        resolve(write(tmp_path, text), environ=environ or {})
    return err.value.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: {n_trials: many}", "models.n_trials: Input should be a valid integer"),
        ("modles: {n_trials: 3}", "modles: unknown key; did you mean 'models'?"),
        ("data: {sorce: files}", "data.sorce: unknown key; did you mean 'source'?"),
        ("data: {source: files}", "data.path: required when data.source is 'files'"),
        (
            "data: {source: files, path: /nonexistent/*.csv}",
            "data.path: no file matches '/nonexistent/*.csv'",
        ),
        (
            "cv: {outer_splits: 900}",
            "cv.outer_splits: test blocks of ~5 trading days are not longer than the purge",
        ),
        (
            "labels: {horizon: 600}",
            "cv.inner_splits: test blocks of ~538 trading days are not longer than the purge (labels.horizon = 600)",
        ),
        (
            "data: {start_date: 2020-01-01, end_date: 2019-06-30}",
            "data.end_date: 2019-06-30 is not after data.start_date 2020-01-01",
        ),
        (
            "models: {names: [lightgbm, xgbost]}",
            "models.names: unknown model 'xgbost'; expected one of ['arima', 'double_ensemble', 'elastic_net', "
            "'garch', 'hybrid', 'lightgbm', 'lstm', 'mlp', 'random_forest', 'ridge', 'svr', 'tcn', "
            "'transformer', 'xgboost']; did you mean 'xgboost'?",
        ),
        ("explain: {model: ridge}", "explain.model: 'ridge' is not among models.names"),
        (
            "models: {dask_scheduler: 'tcp://10.0.0.5:8786'}",
            "models.dask_scheduler: only used by models.engine: dask (now 'local')",
        ),
        ("models: {engine: spark}", "models.engine: Input should be 'local' or 'dask'"),
        ("risk: {levels: [0.95, 1.5]}", "risk.levels: levels must lie strictly between 0.5 and 1"),
        (
            "risk: {strategy: momentum}",
            "risk.strategy: Input should be 'ml_top_k', 'ml_long_short', 'topk_dropout', "
            "'ml_hold_buffer', 'mean_variance', 'mean_variance_long_short', 'mean_variance_tc', "
            "'mean_variance_long_short_tc', 'risk_parity', 'hrp', 'equal_weight' or 'buy_and_hold'",
        ),
        ("schedule: {cron: every night}", "schedule.cron: not a valid cron expression"),
        ("schedule: {timezone: Mars/Olympus}", "schedule.timezone: not a known IANA timezone"),
        (
            "ensemble: {meta_learner: xgb}",
            "ensemble.meta_learner: Input should be 'positive_linear', 'ridge' or 'lightgbm'",
        ),
        (
            "tracking: {mlflow_uri: 'postgresql://me:hunter2@db/mlflow'}",
            "tracking.mlflow_uri: holds a password",
        ),
        ("profile: medium", "profile: 'medium' is not a profile"),
        ("- just\n- a list", "top level must be a mapping"),
        ("data: [unclosed", "not valid YAML"),
    ],
)
def test_broken_config_gives_one_clear_message(tmp_path, text, expected):
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found
    assert len(found) == 1, found


def test_all_problems_are_reported_at_once(tmp_path):
    found = problems(
        tmp_path,
        "modles: {}\nmodels: {names: [lgbm], n_trials: -1}\ndata: {start_date: 2021-01-01, end_date: 2020-01-01}\n",
    )
    assert len(found) == 4
    assert found[0].startswith("models.n_trials") or any(
        p.startswith("models.n_trials") for p in found
    )
    assert any("did you mean 'lightgbm'" in p for p in found)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ExperimentError, match="file not found"):
        resolve(tmp_path / "nope.yaml", environ={})


def test_a_broken_config_starts_no_run(tmp_path, alphaforge_cli):
    home = tmp_path / "home"
    bad = write(tmp_path, "models: {n_trials: many}\n")
    out = alphaforge_cli("run", "--config", str(bad), home=home, extra={"ALPHAFORGE_PROFILE": None})
    assert out.returncode == 2
    assert "models.n_trials" in out.stderr and "nothing was run" in out.stderr
    assert not home.exists()


def test_precedence_profile_file_env_cli(tmp_path):
    path = write(tmp_path, "profile: fast\nmodels: {n_trials: 7, seed: 1}\nportfolio: {top_k: 3}\n")
    env = {"ALPHAFORGE__MODELS__N_TRIALS": "9", "ALPHAFORGE__PORTFOLIO__COST_BPS": "25"}
    resolved = resolve(path, environ=env, overrides={"models.n_trials": "11"})
    exp = resolved.experiment
    assert (exp.models.n_trials, exp.models.seed, exp.portfolio.top_k, exp.portfolio.cost_bps) == (
        11,
        1,
        3,
        25.0,
    )
    assert exp.data.start_date.isoformat() == "2007-01-01"  # from the fast profile
    origins = resolved.origins
    assert origins["models.n_trials"] == "command line"
    assert origins["portfolio.cost_bps"] == "environment"
    assert origins["models.seed"] == f"file {path}"
    assert origins["data.start_date"] == "profile fast"
    assert origins["labels.horizon"] == "default"
    listing = show(resolved)
    assert "models.n_trials" in listing and "(command line)" in listing


def test_env_prices_and_tracking_variables_map_to_keys(tmp_path):
    (tmp_path / "p.csv").write_text("symbol,date,close\nA,2020-01-02,1\n")
    resolved = resolve(
        None,
        environ={
            "ALPHAFORGE_PRICES": str(tmp_path / "p.csv"),
            "ALPHAFORGE_MLFLOW_URI": "sqlite:///x.db",
        },
    )
    assert resolved.experiment.data.source == "files"
    # the variable by name: its value may hold a password, and the experiment is logged
    assert resolved.experiment.tracking.mlflow_uri == "${env:ALPHAFORGE_MLFLOW_URI}"
    # the prices' folder is their data root: nothing outside it is read
    assert resolved.experiment.data.root == str(tmp_path)


def test_secrets_are_references_resolved_only_at_run_time(tmp_path):
    path = write(
        tmp_path, "tracking: {mlflow_uri: 'postgresql://ml:${env:DB_PASSWORD}@db/mlflow'}\n"
    )
    resolved = resolve(path, environ={})
    assert "${env:DB_PASSWORD}" in resolved.to_yaml()  # logged as a reference, never the value
    uri = resolve_env_refs(
        resolved.experiment.tracking.mlflow_uri, "tracking.mlflow_uri", {"DB_PASSWORD": "s3cret"}
    )
    assert uri == "postgresql://ml:s3cret@db/mlflow"
    with pytest.raises(
        ExperimentError,
        match="tracking.mlflow_uri: references \\$\\{env:DB_PASSWORD\\}, but DB_PASSWORD is not set",
    ):
        resolve_env_refs(resolved.experiment.tracking.mlflow_uri, "tracking.mlflow_uri", {})


def test_schema_defaults_are_the_asset_config_defaults():
    exp = Experiment()
    assert exp.models.n_trials == TrainingConfig.model_fields["n_trials"].default
    assert exp.portfolio.top_k == PortfolioConfig.model_fields["top_k"].default
    ops = resolve(None, environ={}).run_config()["ops"]
    assert ops["base_models"]["config"]["models"] == ["lightgbm", "xgboost"]
    assert "backtest" not in ops  # it trades under the cost_model asset's settings
    assert ops["cost_model"]["config"] == {
        "cost_bps": 10.0,
        "lag": 1,
        "fill": "close",
        "impact_coef": 1.0,
        "capital": 1e7,
        "borrow_bps": 50.0,
        "sell_cost_bps": None,
        "costs": "edge",
        "spread_floor_bps": 1.0,
        "spread_cap_bps": 50.0,
        "no_trade_band": 0.0,
    }


def test_bundled_example_spells_out_exactly_the_full_profile():
    bundled = resolve(EXAMPLES / "bundled.yaml", environ={}).experiment
    assert bundled == resolve(None, profile="full", environ={}).experiment
    listed = set(yaml.safe_load((EXAMPLES / "bundled.yaml").read_text()))
    assert listed == set(Experiment.model_fields)


def test_every_example_validates(tmp_path):
    checked = [resolve(p, environ={}, check_files=False) for p in sorted(EXAMPLES.glob("*.yaml"))]
    assert len(checked) == 4  # alphavantage_csvs, bundled, fast, lobster: a new one counts here


def test_resolved_yaml_round_trips(tmp_path):
    resolved = resolve(EXAMPLES / "fast.yaml", environ={}, overrides={"portfolio.top_k": "4"})
    again = resolve(write(tmp_path, resolved.to_yaml()), environ={})
    assert again.experiment == resolved.experiment
    assert again.run_config() == resolved.run_config()


# --- secrets: only references, parsed as URLs, never logged resolved --------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tracking: {mlflow_uri: 'postgresql://ml:pa$$w0rd@db/mlflow'}", "holds a password"),
        ("tracking: {mlflow_uri: 'postgresql://ml:{pw}x@db/mlflow'}", "holds a password"),
        ("tracking: {optuna_storage: 'postgresql://:hunter2@db/optuna'}", "holds a password"),
        ("tracking: {optuna_storage: 'postgresql://ml@db/o?password=hunter2'}", "holds a password"),
        ("tracking: {mlflow_uri: 'postgresql://ml:x${env:PW}@db/m'}", "holds a password"),
        ("data: {api_key: sk-live-1234}", "data.api_key: must be a reference ${env:VAR}"),
        (
            "data: {source: http, universe: [A, B], "
            "url: 'https://v.example/q?symbol={symbol}&apikey=ABC123'}",
            "data.url: holds a key (apikey=…)",
        ),
        (
            "data: {source: http, universe: [A, B], api_key: '${env:K}', "
            "url: 'http://v.example/q?symbol={symbol}&apikey={api_key}'}",
            "data.url: would send data.api_key over plain http",
        ),
    ],
)
def test_a_secret_typed_in_clear_is_refused(tmp_path, text, expected):
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found
    assert not any(s in " ".join(found) for s in ("hunter2", "pa$$w0rd", "sk-live-1234", "ABC123"))


def test_references_in_urls_pass():
    for uri in ("postgresql://ml:${env:PW}@db/m", "postgresql+psycopg2://ml@db/m", "${env:URI}"):
        resolve(None, environ={}, overrides={"tracking.mlflow_uri": uri})


def test_env_supplied_uris_are_logged_as_references_never_resolved():
    from pipelines.definitions import experiment_tags

    secret_uri = "postgresql://ml:hunter2@db:5432/mlflow"
    environ = {"ALPHAFORGE_MLFLOW_URI": secret_uri, "ALPHAFORGE_OPTUNA_STORAGE": secret_uri + "x"}
    resolved = resolve(None, environ=environ)
    tracking = resolved.experiment.tracking
    assert tracking.mlflow_uri == "${env:ALPHAFORGE_MLFLOW_URI}"
    assert tracking.optuna_storage == "${env:ALPHAFORGE_OPTUNA_STORAGE}"
    logged = [
        resolved.to_yaml(),
        json.dumps(resolved.flat()),
        json.dumps(experiment_tags(resolved)),
    ]
    assert not [text for text in logged if "hunter2" in text]


# --- the data root: always set for files, checked by validate ---------------------------------


def test_every_data_file_must_lie_inside_the_data_root(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir(), outside.mkdir()
    (outside / "p.csv").write_text("symbol,date,close\nA,2020-01-02,1\n")
    (outside / "news.csv").write_text("date,ticker,text\n2020-01-02,A,up\n")
    (data / "p.csv").symlink_to(outside / "p.csv")
    (data / "news.csv").symlink_to(outside / "news.csv")
    text = (
        f"data: {{source: files, path: '{data}/*.csv', root: '{data}', texts: '{data}/news.csv'}}"
    )
    found = problems(tmp_path, text)
    assert any(p.startswith("data.path: ") and "resolve outside data.root" in p for p in found)
    assert any(p.startswith("data.texts: ") and "resolve outside data.root" in p for p in found)
    # without a root, the folder of data.path is the root
    (data / "real.csv").write_text("symbol,date,close\nA,2020-01-02,1\n")
    resolved = resolve(
        None, environ={}, overrides={"data.source": "files", "data.path": str(data / "real.csv")}
    )
    assert resolved.experiment.data.root == str(data)
    assert resolved.origins["data.root"] == "derived from data.path"
