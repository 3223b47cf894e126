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
import faulthandler
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipelines.experiment import ExperimentError, Resolved, mlflow_uri, resolve, show
from pipelines.lock import HomeBusy, PgRunLock, RunLock, exclusive
from pipelines.resources import ui_link
from pipelines.sensors import innermost_error
from pipelines.serving import DEFAULT_MODEL, ModelRefused, score_day, write_scores
from pipelines.settings import (
    ENV_VARS,
    PG_DATABASES,
    Settings,
    load_settings,
    postgres_params,
    prepare_home,
)

STEP_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "ASSET_CHECK_EVALUATION")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="alphaforge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize assets on the embedded Dagster instance")
    _experiment_args(run)
    run.add_argument(
        "--select",
        nargs="+",
        metavar="ASSET",
        help="materialize only these assets (default: all); +ASSET: it and everything upstream",
    )
    run.add_argument(
        "--group",
        choices=["microstructure"],
        help="run only this group (the order books of data.lob, every ticker-day partition)",
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
    stream = sub.add_parser(
        "stream",
        help="score daily bars as they arrive (file or socket), or replay LOBSTER order books "
        "tick by tick (--lob)",
    )
    _experiment_args(stream)
    feed = stream.add_mutually_exclusive_group(required=True)
    feed.add_argument("--bars", help="CSV of bars: symbol,date,open,high,low,close,volume")
    feed.add_argument("--socket", help="a local TCP feed of the same lines, host:port")
    feed.add_argument(
        "--lob",
        nargs="+",
        metavar="FILES",
        help="LOBSTER message files (their order-book partners beside them; a folder or glob "
        "works too): every event replayed and scored with alphaforge-lob@champion",
    )
    stream.add_argument(
        "--model",
        default=None,
        help=f"registry URI (default {DEFAULT_MODEL}; with --lob models:/alphaforge-lob@champion)",
    )
    stream.add_argument("--top", type=int, default=5, help="signals printed per day")
    stream.add_argument(
        "--speed",
        type=float,
        default=None,
        help="--lob: pace the replay at this multiple of real time (default: as fast as possible)",
    )
    stream.add_argument(
        "--out", help="--lob: write every event's probabilities here (.parquet or .csv)"
    )
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

        # `kill -USR1 <pid>` prints every thread's stack to the worker's output: how a worker
        # that stops making progress (a hung storage or tracking call) says where it is
        faulthandler.register(signal.SIGUSR1, all_threads=True)

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
    # a full run (not a nightly day or a selection) is refused before it starts, as validate
    full_run = args.command == "run" and not (args.date or args.start or args.select)
    if args.command == "validate" or full_run:
        problems = data_problems(resolved)
        if problems:
            print(ExperimentError(args.config or "experiment", problems), file=sys.stderr)
            return 2
    if args.command == "validate":
        print(f"{args.config or 'defaults'}: valid ({resolved.experiment.profile} profile)")
        return 0
    if args.command == "config":
        print(show(resolved))
        return 0
    if args.command == "score":
        return _score(settings, resolved, args)
    if args.command == "stream" and args.lob:
        return _stream_lob(settings, resolved, args)
    if args.command == "stream":
        args.model = args.model or DEFAULT_MODEL
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
    return _run(settings, resolved, args.select, window, args.group)


def data_problems(resolved: Resolved) -> list[str]:
    """CV settings the data cannot hold, judged on the dates the source really has (files and
    the bundled set are read; a vendor's API is not called): the number of dates with a label
    is the source's dates in range less the label horizon and the universe's minimum history."""
    from datetime import date as day

    import polars as pl

    from models.learning.training import cv_problems
    from pipelines.definitions import price_source

    exp = resolved.experiment
    if exp.data.source == "http":
        return []
    start, end = exp.data.start_date, exp.data.end_date
    try:
        frame = price_source(resolved).load_prices(start, end).frame
    except (OSError, ValueError):
        return []  # the run names what cannot be read, file by file
    if "date" not in frame.columns or frame.is_empty():
        return []
    dates = frame["date"]
    if dates.dtype == pl.String:
        dates = dates.str.slice(0, 10).str.to_date(strict=False)
    dates = dates.cast(pl.Date, strict=False).drop_nulls()
    dates = dates.filter(dates.is_between(start, end or day.max))
    warm_up = exp.labels.horizon + getattr(getattr(exp, "universe", None), "min_history", 0)
    return cv_problems(
        max(dates.n_unique() - warm_up, 0),
        horizon=exp.labels.horizon,
        tune_fraction=exp.cv.tune_fraction,
        inner_splits=exp.cv.inner_splits,
        outer_splits=exp.cv.outer_splits,
        test_days=exp.cv.test_days,
        scheme=exp.cv.scheme,
    )


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
    group: str | None = None,
) -> int:
    """Materialize what was asked: the daily pipeline, and the microstructure group's job
    (its own partitions: ticker-days) when ``data.lob`` is set, first, so the run report
    shows its pictures. Without ``data.lob`` the group is skipped and says why."""
    from dagster import AssetSelection, DagsterInstance

    from pipelines.definitions import (
        DAILY_JOB,
        FULL_JOB,
        JOB,
        LOB_JOB,
        build_definitions,
        freeze_heap,
        full_run_window,
        lob_source,
        partition_range_tags,
    )
    from pipelines.lob import LOB_PARTITIONS, register_partitions

    try:  # refuse at once, before the run is even created, if the lake is busy; the run
        # takes the lock over (local: its IO manager; prod: its executor), so the probe keeps
        # the line of a killed run before it for the run to find
        probe = (
            PgRunLock(postgres_params(os.environ, PG_DATABASES["dagster"]), settings.lake)
            if settings.prod
            else RunLock(settings.lake)
        )
        probe.acquire("alphaforge run (starting)")
        probe.release()
    except HomeBusy as err:
        print(f"✗ {err}", file=sys.stderr)
        return 3
    try:
        defs = build_definitions(settings, resolved)
        freeze_heap()
        with exclusive(settings.home / ".init.lock"):  # a fresh home's schema is created once
            instance = DagsterInstance.get()
        graph = defs.resolve_asset_graph()
        micro = {
            k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "microstructure"
        }
        # an asset computed together with others (market_prices + price_quarantine) runs with them
        chosen = None
        if select:
            plain = AssetSelection.assets(*(s for s in select if not s.startswith("+")))
            upstream = AssetSelection.assets(*(s[1:] for s in select if s.startswith("+")))
            chosen = set(
                (plain | upstream.upstream()).required_multi_asset_neighbors().resolve(graph)
            )
        runs = []
        asked = group == "microstructure" or bool(chosen and chosen & micro)
        if group == "microstructure" or (chosen and chosen & micro) or (not chosen and not window):
            data = resolved.experiment.data
            source = lob_source(resolved)
            keys = register_partitions(instance, source) if data.lob else []
            if not data.lob or not keys:
                reason = (
                    "data.lob is not set (order-book files: see examples/lobster.yaml)"
                    if not data.lob
                    else f"no LOBSTER message/order-book pair under {data.lob}"
                )
                print(f"microstructure: skipped, {reason}")
                if asked:
                    print("✗ nothing to run for the microstructure group", file=sys.stderr)
                    return 2
            else:
                every = instance.get_dynamic_partitions(LOB_PARTITIONS.name)
                runs.append(
                    (
                        LOB_JOB,
                        sorted(chosen & micro) if chosen else None,
                        partition_range_tags(every[0], every[-1]),
                        f", order-book partitions {', '.join(keys)}",
                    )
                )
        if group is None and (not chosen or chosen - micro):
            if window:  # a nightly day or a backfill: the daily partitions, then downstream
                job_name = DAILY_JOB
            else:  # everything; the daily partitions up to the data's last day, when any
                window = full_run_window(resolved)
                job_name = FULL_JOB if window else JOB
            days = f", daily partitions {window[0]}..{window[1]}" if window else ""
            runs.append(
                (
                    job_name,
                    sorted(chosen - micro) if chosen else None,
                    partition_range_tags(*window) if window else {},
                    days,
                )
            )
        for job_name, selection, partition_tags, what in runs:
            code = _run_job(
                settings, resolved, defs, instance, job_name, selection, partition_tags, what
            )
            if code:
                return code
        return 0
    finally:
        probe.release()


def _run_job(
    settings: Settings,
    resolved: Resolved,
    defs,
    instance,
    job_name: str,
    selection: list | None,
    partition_tags: dict[str, str],
    what: str,
) -> int:
    """One Dagster run of ``job_name`` (all its assets, or ``selection``) with the progress
    display; 0 when it succeeded."""
    from dagster._core.utils import make_new_run_id

    from pipelines.definitions import experiment_tags, job_assets

    job = defs.resolve_job_def(job_name)
    graph = defs.resolve_asset_graph()
    run_id = make_new_run_id()
    config = resolved.run_config(job_assets(job)) | {
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}
    }
    keys = selection or job.asset_layer.selected_asset_keys
    steps = len({id(graph.get(k).assets_def) for k in keys})  # a multi-asset is one step
    profile = resolved.experiment.profile
    where = "PostgreSQL-backed instance" if settings.prod else f"home {settings.home}"
    named = "" if settings.prod else f", Dagster run {run_id}"  # prod: named when it starts
    print(f"AlphaForge: profile '{profile}'{what}, {where}{named}")

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
        out = score_day(uri, settings.lake, args.model, day, _artifact_root(settings))
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
        path = write_scores(out.frame, Path(args.out))
        print(f"written to {path}")
    return 0


def _artifact_root(settings: Settings) -> Path | None:
    """Where registered models' files must lie: the home's store (prod: the tracking server's)."""
    return None if settings.prod else settings.mlflow_artifacts


def _stream(settings: Settings, resolved: Resolved, args: argparse.Namespace) -> int:
    import polars as pl

    from models.features.streaming import IncrementalFeatures
    from pipelines.serving import check_model_uri, load_model
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
    try:
        model = load_model(
            mlflow_uri(resolved, settings.mlflow_uri), args.model, _artifact_root(settings)
        )
    except ModelRefused as err:
        print(f"✗ {err}", file=sys.stderr)
        return 2
    columns = list(getattr(model, "features_", None) or columns)
    lines = open(args.bars, encoding="utf-8") if args.bars else lines_from_socket(args.socket)  # noqa: SIM115
    days = days_from_lines(lines)
    try:
        first = next(days, None)
    except ValueError as err:
        print(f"✗ {args.bars or args.socket}: {err}", file=sys.stderr)
        return 2
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
    try:
        for scored in score_stream(all_days(), features, model, columns):
            latencies.append(scored.latency_s)
            top = ", ".join(
                f"{r['symbol']} {r['score']:+.4f}" for r in scored.signals.head(args.top).to_dicts()
            )
            print(f"{scored.day}  {scored.latency_s * 1000:6.1f} ms  top: {top}", flush=True)
    except ValueError as err:  # a line that is not a bar: named, the days before it scored
        print(f"✗ {args.bars or args.socket}: {err}", file=sys.stderr)
        return 2
    summary = latency_summary(latencies)
    print(
        f"{summary['days']} days scored; latency per day (features + scoring): "
        f"p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms"
    )
    return 0


LOB_MODEL = "models:/alphaforge-lob@champion"


def _stream_lob(settings: Settings, resolved: Resolved, args: argparse.Namespace) -> int:
    """Replay each LOBSTER pair in event order (paced by ``--speed``, else as fast as possible),
    update the features incrementally, score every event with the registered model, and print
    throughput and the per-event latency percentiles (feature update + score)."""
    import numpy as np
    import polars as pl

    from data_contracts import ContractViolation
    from models.microstructure.reader import TICK
    from pipelines.lob import FileLobSource, latency_summary, load_day, replay_day
    from pipelines.serving import check_model_uri, load_model

    uri = args.model or LOB_MODEL
    try:
        check_model_uri(uri)
    except ModelRefused as err:
        print(f"✗ {err}", file=sys.stderr)
        return 2
    if args.speed is not None and args.speed <= 0:
        print("✗ --speed must be positive (1 = real time)", file=sys.stderr)
        return 2
    pairs = []
    for path in args.lob:
        pairs += [p for p in FileLobSource(path=path).all_pairs() if _named(p, path)]
    pairs = list({(p.message, p.book): p for p in pairs}.values())
    if not pairs:
        print(f"✗ no LOBSTER message/order-book pair in {' '.join(args.lob)}", file=sys.stderr)
        return 2
    try:  # through the registry's checks (digest, trusted types), not MLflow's own loader
        model = load_model(mlflow_uri(resolved, settings.mlflow_uri), uri, _artifact_root(settings))
    except ModelRefused as err:
        print(f"✗ cannot load {uri}: {err}", file=sys.stderr)
        return 2
    print(
        f"{uri}: {model.kind} on {model.symbol} ({model.levels} levels), horizon {model.horizon}, "
        f"{len(model.features)} features"
    )
    tick = round(resolved.experiment.microstructure.tick * 10_000) or TICK
    outputs = []
    for pair in pairs:
        if pair.levels < model.levels:
            print(
                f"✗ {pair.message}: {pair.levels} levels, but the model reads {model.levels}",
                file=sys.stderr,
            )
            return 2
        try:
            events, book = load_day(FileLobSource(), pair, tick)
        except ContractViolation as err:
            print(f"✗ {err}", file=sys.stderr)
            return 2
        pace = f"{args.speed:g}x real time" if args.speed else "as fast as possible"
        print(f"{pair.ticker} {pair.day}: replaying {len(events):,} events, {pace}")
        out = replay_day(events, book, model, args.speed)
        summary = latency_summary(out["latency_ns"], out["wall_s"])
        p = out["probabilities"]
        print(
            f"  {summary['events']:,} events scored in {summary['wall_s']:.2f} s "
            f"({summary['events_per_s']:,.0f} events/s); per event (feature update + score): "
            f"p50 {summary['p50_us']:.1f} us, p90 {summary['p90_us']:.1f} us, "
            f"p99 {summary['p99_us']:.1f} us, max {summary['max_us'] / 1000:.1f} ms"
        )
        calls = np.bincount(np.argmax(p, axis=1), minlength=3)
        print(
            f"  calls ({model.horizon}): down {calls[0]:,}, stationary {calls[1]:,}, up {calls[2]:,}"
        )
        outputs.append(
            events.select("seq", "ts").with_columns(
                symbol=pl.lit(pair.ticker), p_down=p[:, 0], p_stationary=p[:, 1], p_up=p[:, 2]
            )
        )
    if args.out:
        frame = pl.concat(outputs)
        path = Path(args.out)
        if path.suffix == ".parquet":
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
        print(f"written to {path}")
    return 0


def _named(pair, path: str) -> bool:
    """A pair the user named: any pair of a folder or glob, else the named file's own."""
    if Path(path).is_dir() or any(c in path for c in "*?["):
        return True
    return str(Path(path)) in (pair.message, pair.book)


if __name__ == "__main__":
    sys.exit(main())
