"""``alphaforge score``: a registered version scores the newest day (the bundled fast run's
@challenger: the gate promotes no @champion on it, and the default then says why); nothing but
our registry's URIs loads (a path, a run URI or a URL is refused before MLflow is touched)."""

import os
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipelines.serving import ModelRefused, check_model_uri

pytestmark = [pytest.mark.integration]


@pytest.mark.parametrize(
    "uri",
    [
        "/tmp/evil/model",
        "file:///tmp/evil/model",
        "runs:/0123456789abcdef/model",
        "https://example.com/model.pkl",
        "s3://bucket/model",
        "models:/someone-elses-model@champion",
        "models:/alphaforge-ensemble@champion/../../x",
        "models:/alphaforge-ensemble",
    ],
)
def test_only_our_registry_uris_are_accepted(uri):
    with pytest.raises(ModelRefused, match="refusing to load"):
        check_model_uri(uri)


def test_our_registry_uris_pass():
    for uri in ("models:/alphaforge-ensemble@champion", "models:/alphaforge-ensemble/3"):
        assert check_model_uri(uri) == uri


CHALLENGER = "models:/alphaforge-ensemble@challenger"


def test_score_without_a_champion_says_why(materialized, alphaforge_cli):
    """The default, @champion, when the gate promoted none (as on the bundled fast run; where it
    did, the alias is lifted for the test): the command says so, with the gate's reason for
    the latest version and how to score that one anyway."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{materialized.home / 'mlflow.db'}")
    champion = client.get_registered_model("alphaforge-ensemble").aliases.get("champion")
    if champion:
        client.delete_registered_model_alias("alphaforge-ensemble", "champion")
    try:
        done = alphaforge_cli("score", home=materialized.home)
    finally:
        if champion:
            client.set_registered_model_alias("alphaforge-ensemble", "champion", champion)
    latest = client.get_model_version_by_alias("alphaforge-ensemble", "challenger")
    assert done.returncode == 2 and done.stdout == ""
    assert (
        "no @champion version of alphaforge-ensemble: the champion gate (check_ensemble_model_champion_gate) has promoted none"
        in (done.stderr)
    )
    reason = f"was {latest.tags['promotion']}: {latest.tags['promotion_reason']}"
    assert reason in " ".join(done.stderr.split()), done.stderr  # the gate's own words
    assert f"--model {CHALLENGER}" in done.stderr


def test_score_ranks_the_newest_day_with_a_registered_model(materialized, tmp_path, alphaforge_cli):
    out = tmp_path / "scores.parquet"
    done = alphaforge_cli("score", "--model", CHALLENGER, "--out", str(out), home=materialized.home)
    assert done.returncode == 0, done.stderr
    scores = pl.read_parquet(out)
    features = pl.read_parquet(materialized.home / "lake" / "feature_matrix.parquet")
    newest = features.filter(pl.col("date") == features["date"].max())
    assert scores.height == newest.height and (scores["date"] == features["date"].max()).all()
    assert scores["rank"].to_list() == list(range(1, scores.height + 1))
    assert scores["score"].is_sorted(descending=True) and scores["score"].is_finite().all()
    assert "scored" in done.stdout and "ms)" in done.stdout


def test_score_refuses_a_hostile_model_argument_without_loading_anything(
    materialized, alphaforge_cli
):
    done = alphaforge_cli("score", "--model", "file:///tmp/evil/model", home=materialized.home)
    assert done.returncode == 2
    assert "refusing to load 'file:///tmp/evil/model'" in done.stderr


def _bars(home: Path, days: int, path: Path) -> list:
    """The last ``days`` days of the materialized prices as a bar file (close only)."""
    prices = pl.read_parquet(home / "lake" / "market_prices.parquet")
    last = prices["date"].unique().sort()[-days:]
    bars = prices.filter(pl.col("date").is_in(last.implode())).sort("date", "symbol")
    nulls = [pl.lit(None, dtype=pl.Float64).alias(c) for c in ("open", "high", "low", "volume")]
    bars.select("symbol", "date", *nulls[:3], "close", nulls[3]).write_csv(path)
    return last.to_list()


def test_incremental_features_equal_the_batch_feature_matrix(materialized, tmp_path):
    from models.features.streaming import IncrementalFeatures
    from pipelines.experiment import resolve
    from pipelines.streaming import days_from_lines, feature_builder

    home = materialized.home
    days = _bars(home, 5, tmp_path / "bars.csv")
    config = resolve(None, profile="fast", environ={}).run_config({"feature_matrix"})
    config = config["ops"]["feature_matrix"]["config"]
    build = feature_builder(config, pl.read_parquet(home / "lake" / "alt_data.parquet"), None)
    prices = pl.read_parquet(home / "lake" / "market_prices.parquet")
    features = IncrementalFeatures(prices.filter(pl.col("date") < days[0]), build)
    batch = pl.read_parquet(home / "lake" / "feature_matrix.parquet")
    with open(tmp_path / "bars.csv") as lines:
        for bars in days_from_lines(lines):
            streamed = features.update(bars).sort("symbol")
            expected = batch.filter(pl.col("date") == bars["date"][0]).sort("symbol")
            assert streamed.columns == expected.columns
            for column in expected.columns[2:]:
                a, b = streamed[column], expected[column]
                assert a.is_null().to_list() == b.is_null().to_list(), column
                assert (a.fill_null(0) - b.fill_null(0)).abs().max() < 1e-9, column
    assert features.days == days
    # the buffer holds the last 130 trading days, not the whole history
    assert features.history["date"].n_unique() == 130


def test_stream_scores_a_bar_file_with_latency_figures(materialized, tmp_path, alphaforge_cli):
    _bars(materialized.home, 5, tmp_path / "bars.csv")
    bars = str(tmp_path / "bars.csv")
    done = alphaforge_cli("stream", "--bars", bars, "--model", CHALLENGER, home=materialized.home)
    assert done.returncode == 0, done.stderr
    assert "5 days scored" in done.stdout and "p50" in done.stdout and "p99" in done.stdout
    alphaforge_cli(
        "score",
        "--model",
        CHALLENGER,
        "--out",
        str(tmp_path / "batch.parquet"),
        home=materialized.home,
    )
    best = pl.read_parquet(tmp_path / "batch.parquet")["symbol"][0]  # the batch's rank 1
    last_line = [line for line in done.stdout.splitlines() if "top:" in line][-1]
    assert last_line.split("top: ")[1].startswith(best)


def test_stream_reads_a_local_socket_and_refuses_a_remote_one(materialized, tmp_path):
    import socket
    import threading

    from pipelines.streaming import days_from_lines, lines_from_socket

    days = _bars(materialized.home, 3, tmp_path / "bars.csv")
    payload = (tmp_path / "bars.csv").read_bytes()
    server = socket.create_server(("127.0.0.1", 0))

    def feed():
        conn, _ = server.accept()
        with conn:
            conn.sendall(payload)

    threading.Thread(target=feed, daemon=True).start()
    port = server.getsockname()[1]
    received = list(days_from_lines(lines_from_socket(f"127.0.0.1:{port}")))
    server.close()
    assert [d["date"][0] for d in received] == days
    assert all(d.height == 20 for d in received)
    with pytest.raises(ValueError, match="local socket only"):
        next(lines_from_socket("203.0.113.5:9000"))


# --- a tampered model artifact is refused ---------------------------------------------------


def _copy_registry(home: Path, to: Path) -> Path:
    """The materialized home's MLflow store and registered models, copied to ``to`` (the
    stored paths rewritten), its lake linked read-only: the shared home stays untouched."""
    import shutil
    import sqlite3

    to.mkdir()
    shutil.copy(home / "mlflow.db", to / "mlflow.db")
    shutil.copytree(home / "mlartifacts" / "models", to / "mlartifacts" / "models")
    (to / "lake").symlink_to(home / "lake", target_is_directory=True)
    with sqlite3.connect(to / "mlflow.db") as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for _, name, kind, *_ in db.execute(f"pragma table_info('{table}')").fetchall():
                if kind.upper().startswith(("VARCHAR", "TEXT")):
                    sql = f'update "{table}" set "{name}" = replace("{name}", ?, ?)'
                    db.execute(sql, (str(home), str(to)))
    _promote_challenger(to)
    return to


def _promote_challenger(home: Path) -> None:
    """In a copied home only: @champion on the @challenger version when the gate promoted
    none (the bundled fast ensemble does not clear its evidence bar), so the loader's own
    checks are what the tampering tests meet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    try:
        client.get_model_version_by_alias("alphaforge-ensemble", "champion")
    except MlflowException:
        version = client.get_model_version_by_alias("alphaforge-ensemble", "challenger")
        client.set_registered_model_alias("alphaforge-ensemble", "champion", version.version)


def _champion_dir(home: Path) -> Path:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    version = client.get_model_version_by_alias("alphaforge-ensemble", "champion")
    uri = client.get_model_version_download_uri("alphaforge-ensemble", version.version)
    return Path(uri.removeprefix("file://"))


def _swap_coefficients(model_dir: Path) -> None:
    """The champion with its meta-learner's weights changed: every type still trusted."""
    import skops.io

    path = model_dir / "model.skops"
    model = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    model.final_estimator_.coef_ = model.final_estimator_.coef_[::-1] * 3
    skops.io.dump(model, path)


def _evil_loader(model_dir: Path) -> None:
    """MLmodel rewritten to load through a module of the artifact's own code folder."""
    marker = model_dir.parent / "pwned"
    (model_dir / "code").mkdir(exist_ok=True)  # registered without code: planted here
    (model_dir / "code" / "evil_loader.py").write_text(
        f"open({str(marker)!r}, 'w').write('code from the artifact ran')\n"
        "def _load_pyfunc(path):\n    raise RuntimeError('evil')\n"
    )
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["loader_module"] = "evil_loader"
    mlmodel["flavors"]["python_function"]["code"] = "code"
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def _untrusted_type(model_dir: Path) -> None:
    """A skops file holding a function outside the trusted list, the MLmodel's own list and
    the recorded digest both edited to match (someone who can write the registry too)."""
    import hashlib

    import mlflow
    import skops.io

    path = model_dir / "model.skops"
    skops.io.dump({"predict": os.system}, path)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["skops_trusted_types"] += ["posix.system", "builtins.dict"]
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    home = model_dir.parents[3]
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    version = client.get_model_version_by_alias("alphaforge-ensemble", "champion").version
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    client.set_model_version_tag("alphaforge-ensemble", version, "model_sha256", digest)


@pytest.mark.parametrize(
    "tamper, refusal",
    [
        (_swap_coefficients, "its SHA-256 differs from the one recorded"),
        (_untrusted_type, "posix.system"),
    ],
    ids=["changed-weights", "untrusted-type"],
)
def test_a_tampered_model_artifact_is_refused(
    materialized, tmp_path, alphaforge_cli, tamper, refusal
):
    home = _copy_registry(materialized.home, tmp_path / "home")
    tamper(_champion_dir(home))
    done = alphaforge_cli("score", home=home)
    assert done.returncode == 2, done.stdout
    assert "refusing alphaforge-ensemble version" in done.stderr and refusal in done.stderr


def test_the_artifact_says_nothing_about_how_it_is_loaded(materialized, tmp_path, alphaforge_cli):
    """An MLmodel that names a loader of the artifact's own code is not followed: the model
    loads by our loader, as registered, and no code of the artifact runs."""
    home = _copy_registry(materialized.home, tmp_path / "home")
    model_dir = _champion_dir(home)
    _evil_loader(model_dir)
    done = alphaforge_cli("score", home=home)
    assert not (model_dir.parent / "pwned").exists()
    assert done.returncode == 0 and "scored" in done.stdout, done.stderr


def test_a_version_whose_files_lie_outside_the_registry_is_refused(
    materialized, tmp_path, alphaforge_cli
):
    import shutil

    import mlflow

    home = _copy_registry(materialized.home, tmp_path / "home")
    elsewhere = tmp_path / "elsewhere" / "model"
    shutil.copytree(_champion_dir(home), elsewhere)  # a loadable copy, outside the store
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    version = client.create_model_version("alphaforge-ensemble", elsewhere.as_uri())
    champion = client.get_model_version_by_alias("alphaforge-ensemble", "champion")
    for key, value in champion.tags.items():  # the same digest: only the place differs
        client.set_model_version_tag("alphaforge-ensemble", version.version, key, value)
    client.set_registered_model_alias("alphaforge-ensemble", "champion", version.version)
    done = alphaforge_cli("score", home=home)
    assert done.returncode == 2 and "lie outside the registry's artifact store" in done.stderr
