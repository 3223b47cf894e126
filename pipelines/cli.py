"""``alphaforge``: run the pipeline with a progress display, or start both UIs.

alphaforge run [--profile fast|full] [--select KEY ...] [--prices PATH]
alphaforge run --date YYYY-MM-DD          one daily partition, then everything downstream
alphaforge run --from YYYY-MM-DD --to YYYY-MM-DD   a backfill of daily partitions, one run
alphaforge score [--model models:/alphaforge-ensemble@champion] [--day YYYY-MM-DD] [--out FILE]
alphaforge stream (--bars FILE | --socket 127.0.0.1:PORT) [--model URI] [--top 5]
alphaforge ui [--dagster-port 3000] [--mlflow-port 5000]
alphaforge tune-worker PROBLEM.npz [--name NAME]   join a shared Optuna study (scale-out)
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipelines.experiment import ExperimentError, Resolved, mlflow_uri, resolve, show
from pipelines.lock import HomeBusy, RunLock, exclusive
from pipelines.resources import ui_link
from pipelines.sensors import innermost_error
from pipelines.serving import DEFAULT_MODEL, ModelRefused, NoSuchAlias, load_model, score_day
from pipelines.settings import ENV_VARS, Settings, load_settings, prepare_home

STEP_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "ASSET_CHECK_EVALUATION")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="alphaforge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize assets on the embedded Dagster instance")
    _experiment_args(run)
    run.add_argument(
        "--select", nargs="+", metavar="ASSET", help="materialize only these assets (default: all)"
    )
    run.add_argument("--date", help="ingest one trading day as a daily_prices partition")
    run.add_argument("--from", dest="start", help="first day of a backfill of daily partitions")
    run.add_argument("--to", dest="end", help="last day of a backfill (default: --from)")
    validate = sub.add_parser("validate", help="validate an experiment file; run nothing")
    _experiment_args(validate, positional=True)
    config = sub.add_parser("config", help="inspect the resolved experiment")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    _experiment_args(
        config_sub.add_parser("show", help="every key, its value and where it came from"),
        positional=True,
    )
    score = sub.add_parser("score", help="score the latest day with the registered champion")
    _experiment_args(score)
    score.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="registry URI, models:/alphaforge-<name>@<alias> or /<version> (nothing else loads)",
    )
    score.add_argument("--day", help="feature date to score (default: the newest)")
    score.add_argument("--out", help="also write the scores here (.csv or .parquet)")
    stream = sub.add_parser("stream", help="score daily bars as they arrive (file or socket)")
    _experiment_args(stream)
    feed = stream.add_mutually_exclusive_group(required=True)
    feed.add_argument("--bars", help="CSV of bars: symbol,date,open,high,low,close,volume")
    feed.add_argument("--socket", help="a local TCP feed of the same lines, host:port")
    stream.add_argument("--model", default=DEFAULT_MODEL, help="registry URI (as for score)")
    stream.add_argument("--top", type=int, default=5, help="signals printed per day")
    worker = sub.add_parser(
        "tune-worker",
        help="run queued trials of a shared Optuna study (storage and MLflow from the env)",
    )
    worker.add_argument("problem", help="the study's problem file, <lake>/tuning/<study>.npz")
    worker.add_argument("--name", help="worker name in MLflow tags (default host:pid)")
    ui = sub.add_parser("ui", help="start the Dagster UI and the MLflow UI on 127.0.0.1")
    ui.add_argument("--dagster-port", type=int, default=3000)
    ui.add_argument(
        "--mlflow-port",
        type=int,
        help="default: the port of ALPHAFORGE_MLFLOW_UI (5000), which the links in Dagster "
        "metadata point at; another one is refused unless that variable says it too",
    )
    args = parser.parse_args(argv)
    # A parent (a CI runner, nohup) may have left SIGTERM ignored; children inherit that, and
    # Dagster then cannot stop its log-capture processes. Restore the default for us and them.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    settings = load_settings()
    # MLflow prints a "View run" link on every run end against a tracking server: our progress
    # display and the Dagster metadata carry the links already
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if settings.prod:  # dagster.yaml reads these by name: give the unset ones their defaults
        for var in ("ALPHAFORGE_PG_HOST", "ALPHAFORGE_PG_PORT", "ALPHAFORGE_PG_USER"):
            os.environ.setdefault(var, ENV_VARS[var][0])
        os.environ.setdefault("ALPHAFORGE_PG_PASSWORD", "")
    if args.command == "tune-worker":
        from pipelines.tuning import run_worker

        ran = run_worker(
            Path(args.problem), settings.optuna_storage, settings.mlflow_uri, args.name
        )
        print(f"worker done: {ran} trials")
        return 0
    if args.command == "ui":
        try:
            port = mlflow_ui_port(settings, args.mlflow_port)
        except ValueError as err:
            print(f"✗ {err}", file=sys.stderr)
            return 2
        prepare_home(settings)
        os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
        return _ui(settings, args.dagster_port, port)
    try:
        resolved = _resolve(args, settings)
    except ExperimentError as err:
        print(err, file=sys.stderr)
        return 2
    if args.command == "validate":
        print(f"{args.config or 'defaults'}: valid ({resolved.experiment.profile} profile)")
        return 0
    if args.command == "config":
        print(show(resolved))
        return 0
    if args.command == "score":
        return _score(settings, resolved, args)
    if args.command == "stream":
        return _stream(settings, resolved, args)
    prepare_home(settings)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    if settings.prod:
        try:
            _export_experiment(args, resolved)
        except ExperimentError as err:
            print(err, file=sys.stderr)
            return 2
    start = args.date or args.start
    window = (start, args.end or start) if start else None
    return _run(settings, resolved, args.select, window)


def _experiment_args(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    if positional:
        parser.add_argument("config", nargs="?", help="experiment file (YAML)")
    else:
        parser.add_argument(
            "--config", help="experiment file (YAML); default: $ALPHAFORGE_CONFIG or none"
        )
    parser.add_argument(
        "--profile", choices=["fast", "full"], help="built-in profile under the file"
    )
    parser.add_argument(
        "--prices", help="path or glob of your own price files (sets data.source=files)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. models.n_trials=5",
    )


def _resolve(args: argparse.Namespace, settings: Settings) -> Resolved:
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ExperimentError(
                "command line", [f"--set {item!r}: expected KEY=VALUE, e.g. models.n_trials=5"]
            )
        overrides[key.strip()] = value
    if args.prices:
        overrides |= {"data.source": "files", "data.path": args.prices}
    # `alphaforge run` with no profile anywhere is a first run: the fast profile
    profile = args.profile or (
        None if os.environ.get("ALPHAFORGE_PROFILE") or args.config or settings.config else "fast"
    )
    return resolve(args.config or settings.config, profile=profile, overrides=overrides)


def _run(
    settings: Settings,
    resolved: Resolved,
    select: list[str] | None,
    window: tuple[str, str] | None = None,
) -> int:
    from dagster import AssetSelection, DagsterInstance
    from dagster._core.utils import make_new_run_id

    from pipelines.definitions import (
        DAILY_JOB,
        FULL_JOB,
        JOB,
        build_definitions,
        experiment_tags,
        freeze_heap,
        full_run_window,
        job_assets,
        partition_range_tags,
    )

    try:  # refuse at once, before the run is even created, if the home is busy
        probe = RunLock(settings.lake)
        probe.acquire("alphaforge run (starting)")
        # local: the run's IO manager takes the lock over; prod: its steps are processes of
        # their own, so this process holds it until the run ends
        if not settings.prod:
            probe.release()
    except HomeBusy as err:
        print(f"✗ {err}", file=sys.stderr)
        return 3
    defs = build_definitions(settings, resolved)
    freeze_heap()
    if window:  # a nightly day or a backfill: the daily partitions, then downstream
        job_name = DAILY_JOB
    else:  # everything; the daily partitions up to the data's last day, when there are any
        window = full_run_window(resolved)
        job_name = FULL_JOB if window else JOB
    job = defs.resolve_job_def(job_name)
    partition_tags = partition_range_tags(*window) if window else {}
    with exclusive(settings.home / ".init.lock"):  # a fresh home's schema is created once
        instance = DagsterInstance.get()
    run_id = make_new_run_id()
    config = resolved.run_config(job_assets(job)) | {
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}
    }
    graph = defs.resolve_asset_graph()
    # an asset computed together with others (market_prices + price_quarantine) runs with them
    selection = (
        sorted(AssetSelection.assets(*select).required_multi_asset_neighbors().resolve(graph))
        if select
        else None
    )
    keys = selection or job.asset_layer.selected_asset_keys
    steps = len({id(graph.get(k).assets_def) for k in keys})  # a multi-asset is one step
    profile = resolved.experiment.profile
    days = f", daily partitions {window[0]}..{window[1]}" if window else ""
    where = "PostgreSQL-backed instance" if settings.prod else f"home {settings.home}"
    named = "" if settings.prod else f", Dagster run {run_id}"  # prod: named when it starts
    print(f"AlphaForge: profile '{profile}'{days}, {where}{named}")

    outcome: dict[str, object] = {}
    tags = experiment_tags(resolved) | {"alphaforge/source": "cli"} | partition_tags
    if settings.prod:
        tags["alphaforge/cli_token"] = run_id

    def execute() -> None:
        try:
            if settings.prod:  # the job's own executor: steps in processes of their own
                outcome["result"] = _execute_job(job_name, instance, config, tags, selection)
            else:
                outcome["result"] = job.execute_in_process(
                    run_config=config,
                    instance=instance,
                    run_id=run_id,
                    asset_selection=selection,
                    raise_on_error=False,
                    tags=tags,
                )
        except BaseException as err:  # surfaced below, after the progress loop ends
            outcome["error"] = err

    worker = threading.Thread(target=execute, daemon=True)
    started = time.monotonic()
    worker.start()
    progress = _Progress(steps, started)
    cursor = None
    if settings.prod:  # execute_job names the run itself: find it by the tag set above
        run_id = _wait_for_run(instance, tags["alphaforge/cli_token"], worker)
        print(f"Dagster run {run_id}, steps in processes of their own")
    while True:
        alive = worker.is_alive()
        conn = instance.get_records_for_run(run_id, cursor=cursor) if run_id else None
        if conn is None:
            if not alive:
                break
            time.sleep(0.5)
            continue
        for record in conn.records:
            progress.show(record.event_log_entry)
        cursor = conn.cursor
        if not alive:
            break
        time.sleep(0.5)
    _reap_log_tails()
    probe.release()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    elapsed = time.monotonic() - started
    if not result.success:
        errors = [
            innermost_error(e.event_specific_data.error)
            for e in result.all_events
            if e.is_failure and getattr(e.event_specific_data, "error", None)
        ]
        if errors and errors[0]:
            print(f"\n✗ {errors[0].message.strip()}", file=sys.stderr)
        print(
            f"\n✗ run failed after {elapsed:.0f} s. Details: `make ui`, then the run {run_id} in the Dagster UI.",
            file=sys.stderr,
        )
        return 1
    print(f"\n✓ {len(keys)} assets materialized in {progress.done} steps, {elapsed:.0f} s")
    print(f"  report:     {settings.reports / 'latest' / 'report.html'}")
    print(f"  lake:       {settings.lake}")
    print("  Dagster UI: http://127.0.0.1:3000  (start both UIs with `make ui`)")
    print(
        f"  MLflow UI:  {ui_link(settings.mlflow_ui, 'experiments')}  "
        f"(experiment '{resolved.experiment.tracking.experiment}')"
    )
    return 0


def _execute_job(job_name: str, instance, config: dict, tags: dict, selection):
    """Run ``job_name`` with its own executor (prod: multiprocess). Step processes load the
    code location ``pipelines.definitions:defs`` from the environment, which the caller made
    say the same experiment (:func:`_export_experiment`)."""
    from dagster import execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    root = Path(__file__).resolve().parent.parent
    repo = ReconstructableRepository.for_module("pipelines.definitions", "defs", str(root))
    return execute_job(
        repo.get_reconstructable_job(job_name),
        instance,
        run_config=config,
        tags=tags,
        asset_selection=selection,
        raise_on_error=False,
    )


def _wait_for_run(instance, token: str, worker: threading.Thread) -> str | None:
    """The id of the run tagged ``alphaforge/cli_token=token``, once it exists."""
    from dagster import RunsFilter

    while True:
        runs = instance.get_run_records(RunsFilter(tags={"alphaforge/cli_token": token}), limit=1)
        if runs:
            return runs[0].dagster_run.run_id
        if not worker.is_alive():
            return None
        time.sleep(0.2)


def _export_experiment(args: argparse.Namespace, resolved: Resolved) -> None:
    """Put the command line's experiment choices into the environment, where processes that
    load the code location themselves (prod's step processes) find them; refuse if they would
    then resolve another experiment than this process did."""
    if args.profile or not os.environ.get("ALPHAFORGE_PROFILE"):
        os.environ["ALPHAFORGE_PROFILE"] = resolved.experiment.profile
    if args.config:
        os.environ["ALPHAFORGE_CONFIG"] = str(Path(args.config).resolve())
    if args.prices:
        os.environ["ALPHAFORGE_PRICES"] = args.prices
    for item in args.set:
        key, _, value = item.partition("=")
        os.environ["ALPHAFORGE__" + "__".join(k.upper() for k in key.strip().split("."))] = value
    again = resolve(os.environ.get("ALPHAFORGE_CONFIG"), environ=os.environ)
    if again.to_yaml() != resolved.to_yaml():
        raise ExperimentError(
            "command line", ["the experiment cannot be passed to step processes by environment"]
        )


def _reap_log_tails() -> None:
    """End the ``tail -F`` processes Dagster's compute-log capture started for this run.

    Dagster ends them when a step's capture closes; with an in-process run in a worker thread
    some were seen to outlive ``alphaforge run`` and hold its output pipes open (a caller reading
    them waits forever). Linux only: elsewhere there is no ``/proc`` and nothing to do.
    """
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()  # "pid (comm) state ppid ..."
            comm, rest = text.split("(", 1)[1].rsplit(")", 1)
            fields = rest.split()
        except (OSError, IndexError, ValueError):
            continue
        if fields[1:2] == [me] and comm == "tail":
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)  # tail holds no state to flush
            except ProcessLookupError:
                pass


class _Progress:
    """Prints one line per finished asset, check and in-asset progress message."""

    def __init__(self, total: int, started: float):
        self.total, self.started, self.done = total, started, 0
        self.step_started: dict[str, float] = {}

    def show(self, entry) -> None:
        stamp = f"{time.monotonic() - self.started:6.0f}s"
        if not entry.is_dagster_event:
            if entry.level >= 20 and entry.step_key:
                print(f"{stamp}     · {entry.user_message}")
            return
        event = entry.dagster_event
        kind = event.event_type_value
        if kind not in STEP_EVENTS:
            return
        step = entry.step_key or ""
        if kind == "STEP_START":
            self.step_started[step] = entry.timestamp
            print(f"{stamp}   ▶ {step}")
        elif kind == "STEP_SUCCESS":
            self.done += 1
            took = entry.timestamp - self.step_started.get(step, entry.timestamp)
            print(f"{stamp} [{self.done}/{self.total}] ✓ {step} ({took:.1f} s)")
        elif kind == "STEP_FAILURE":
            error = innermost_error(event.step_failure_data.error)
            print(
                f"{stamp}   ✗ {step} failed: {error.message.strip() if error else 'see the Dagster UI'}"
            )
        else:
            check = event.event_specific_data
            print(f"{stamp}   {'✓' if check.passed else '✗'} check {check.check_name}")


# MLflow 3's server starts a job runner and seven huey worker processes for its GenAI jobs
# (judges, trace roll-ups), each importing MLflow: nothing AlphaForge uses, so they stay off.
# Its UI would also ask (and try) to send usage data: a loopback UI sends nothing.
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def mlflow_ui_port(settings: Settings, asked: int | None) -> int:
    """The port ``alphaforge ui`` serves MLflow on: the one of ``ALPHAFORGE_MLFLOW_UI``, which
    every ``mlflow_run`` link in Dagster's metadata names, so each link answers from the UI it
    is shown beside. Another port would leave those links dead: refused, saying what to set."""
    from urllib.parse import urlsplit

    url = urlsplit(settings.mlflow_ui)
    configured = url.port or (443 if url.scheme == "https" else 80)
    local = url.hostname in ("127.0.0.1", "localhost")
    if asked is None or (local and asked == configured):
        return configured if local else 5000
    if not local:  # links point at a tracking server elsewhere: this UI is an extra one
        return asked
    raise ValueError(
        f"--mlflow-port {asked}: the links in Dagster metadata point at {settings.mlflow_ui} "
        f"(ALPHAFORGE_MLFLOW_UI); serve MLflow there (drop --mlflow-port), or set "
        f"ALPHAFORGE_MLFLOW_UI=http://127.0.0.1:{asked} for this command and the runs whose "
        "links should point at it (links of runs made before keep their port)"
    )


def ui_commands(settings: Settings, dagster_port: int, mlflow_port: int) -> list[list[str]]:
    """``dagster dev`` and ``mlflow server`` on 127.0.0.1 for the home in ``settings``."""
    root = Path(__file__).resolve().parent.parent
    bin_dir = Path(sys.executable).parent
    return [
        [
            str(bin_dir / "dagster"),
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            str(dagster_port),
            "-w",
            str(root / "workspace.yaml"),
        ],
        [
            str(bin_dir / "mlflow"),
            "server",
            "--backend-store-uri",
            settings.mlflow_uri,
            "--default-artifact-root",
            settings.mlflow_artifacts.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
        ],
    ]


def _ui(settings: Settings, dagster_port: int, mlflow_port: int) -> int:
    """Start ``dagster dev`` and ``mlflow server`` on 127.0.0.1, each in its own process group,
    and stop both (SIGTERM, then SIGKILL) when either exits or on Ctrl-C."""
    root = Path(__file__).resolve().parent.parent
    env = (
        os.environ
        | UI_ENV
        | {"DAGSTER_HOME": str(settings.dagster_home), "ALPHAFORGE_HOME": str(settings.home)}
    )
    commands = ui_commands(settings, dagster_port, mlflow_port)
    mlflow_ui = f"http://127.0.0.1:{mlflow_port}"
    if settings.prod:  # the tracking server is a service of its own (deploy/stack.sh, compose)
        commands, mlflow_ui = commands[:1], settings.mlflow_ui
    # the experiments list in the model-training view: the registry one click away
    mlflow_ui = ui_link(mlflow_ui, "experiments")
    # SIGTERM (from a supervisor, or `kill`) stops the UIs the same way Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    procs = [subprocess.Popen(c, cwd=root, env=env, start_new_session=True) for c in commands]
    print(
        f"Dagster UI: http://127.0.0.1:{dagster_port}   MLflow UI: {mlflow_ui}   (Ctrl-C stops both)"
    )
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop_groups(procs)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def stop_groups(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """SIGTERM each process group, SIGKILL what is left after ``timeout`` seconds."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _score(settings: Settings, resolved: Resolved, args: argparse.Namespace) -> int:
    from datetime import date

    import polars as pl

    uri = mlflow_uri(resolved, settings.mlflow_uri)
    try:
        day = date.fromisoformat(args.day) if args.day else None
        out = score_day(uri, settings.lake, args.model, day)
    except (ModelRefused, FileNotFoundError, ValueError) as err:
        print(f"✗ {err}", file=sys.stderr)
        return 2
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True):
        print(out.frame)
    print(
        f"scored {out.frame.height} symbols on {out.day} with {args.model} "
        f"(load {out.load_s:.2f} s, score {out.score_s * 1000:.1f} ms)"
    )
    if args.out:
        path = Path(args.out)
        if path.suffix == ".parquet":
            out.frame.write_parquet(path)
        else:
            out.frame.write_csv(path)
        print(f"written to {path}")
    return 0


def _stream(settings: Settings, resolved: Resolved, args: argparse.Namespace) -> int:
    import mlflow
    import polars as pl

    from models.streaming import IncrementalFeatures
    from pipelines.serving import check_model_uri
    from pipelines.streaming import (
        days_from_lines,
        feature_builder,
        latency_summary,
        lines_from_socket,
        score_stream,
    )

    try:
        check_model_uri(args.model)
    except ModelRefused as err:
        print(f"✗ {err}", file=sys.stderr)
        return 2
    lake = settings.lake
    if not (lake / "feature_matrix.parquet").is_file():
        print(f"✗ no feature matrix in {lake}: run `alphaforge run` first", file=sys.stderr)
        return 2
    config = resolved.run_config({"feature_matrix"})["ops"]["feature_matrix"]["config"]
    sectors = pl.read_parquet(lake / "sector_map.parquet") if config["sector_neutral"] else None
    build = feature_builder(config, pl.read_parquet(lake / "alt_data.parquet"), sectors)
    columns = [
        c
        for c in pl.read_parquet_schema(lake / "feature_matrix.parquet")
        if c not in ("symbol", "date")
    ]
    mlflow.set_tracking_uri(mlflow_uri(resolved, settings.mlflow_uri))
    try:
        model = load_model(args.model)
    except NoSuchAlias as err:
        print(f"✗ {err}", file=sys.stderr)
        return 2
    lines = open(args.bars, encoding="utf-8") if args.bars else lines_from_socket(args.socket)  # noqa: SIM115
    days = days_from_lines(lines)
    first = next(days, None)
    if first is None:
        print("✗ the stream held no bars", file=sys.stderr)
        return 2
    prices = pl.read_parquet(lake / "market_prices.parquet")
    history = prices.filter(pl.col("date") < first["date"][0])
    features = IncrementalFeatures(history, build)

    def all_days():
        yield first
        yield from days

    latencies = []
    for scored in score_stream(all_days(), features, model, columns):
        latencies.append(scored.latency_s)
        top = ", ".join(
            f"{r['symbol']} {r['score']:+.4f}" for r in scored.signals.head(args.top).to_dicts()
        )
        print(f"{scored.day}  {scored.latency_s * 1000:6.1f} ms  top: {top}", flush=True)
    summary = latency_summary(latencies)
    print(
        f"{summary['days']} days scored; latency per day (features + scoring): "
        f"p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
