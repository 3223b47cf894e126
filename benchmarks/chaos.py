"""Crash harness: kill the fast-profile run with SIGKILL at random moments, rerun, compare.

    python -m benchmarks.chaos [--trials 10] [--seed 0]        (make chaos)

1. A reference run, undisturbed, in a fresh home (``alphaforge run --profile fast``).
2. Each trial: a fresh home; the same run started and SIGKILLed at a seeded random moment inside
   one stage (ingest, features, training, registration, reports, taken in turn, so every stage
   gets kills however short it is): a step of the stage drawn in proportion to its duration in
   the reference run, and a moment inside that duration, timed from the step's own start line
   (``▶ step``) in the killed run's output; then the same command again, to completion.
3. After each rerun: it must succeed; every parquet in the lake must hold exactly the reference's
   rows (a content hash per file); no ``.tmp-*`` file may be left anywhere in the home; no MLflow
   run may be left RUNNING; the backtest's metrics must equal the reference's; the killed
   attempt's Dagster run must read FAILURE and its MLflow parent run KILLED or FAILED.

Prints one line per trial and the totals: trials, reruns identical, orphan files, stuck runs.
"""

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

CLI = [str(Path(sys.executable).parent / "alphaforge"), "run", "--profile", "fast"]
STEP = re.compile(r"(▶|\] ✓) (\S+)")  # "   ▶ step" when it starts, "[i/n] ✓ step" when done
# The stages a kill should reach, by the asset steps that make them up (matched as prefixes).
STAGES = {
    "ingest": (
        "price_history",
        "daily_prices",
        "market_prices",
        "alt_data",
        "news_sentiment",
        "sector_map",
    ),
    "features": ("feature_matrix", "labels"),
    "training": ("base_models", "oof_predictions"),
    "registration": ("ensemble_model",),
    "reports": (
        "signals",
        "portfolio_weights",
        "seed_strategies",
        "cost_model",
        "backtest",
        "strategy_table",
        "var_backtest",
        "stress_scenarios",
        "correlation_forecasts",
        "risk_report",
        "shap_explanations",
        "return_anomalies",
        "run_report",
    ),
}


def stage_of(step: str) -> str | None:
    return next((name for name, steps in STAGES.items() if step.startswith(steps)), None)


def step_spans(
    timeline: list[tuple[float, str, str]], total: float
) -> dict[str, tuple[float, float]]:
    """``step -> (start, end)`` in seconds since the process started."""
    spans: dict[str, list[float]] = {}
    for at, event, step in timeline:
        span = spans.setdefault(step, [at, total])
        if event != "▶":
            span[1] = at
    return {step: (a, b) for step, (a, b) in spans.items()}


def stage_spans(spans: dict[str, tuple[float, float]]) -> dict[str, list[tuple[float, float]]]:
    """The time intervals, in the reference run, during which each stage's steps ran."""
    out: dict[str, list[tuple[float, float]]] = {}
    for step, span in sorted(spans.items(), key=lambda item: item[1]):
        if (stage := stage_of(step)) is not None:
            out.setdefault(stage, []).append(span)
    return dict(sorted(out.items(), key=lambda item: item[1][0][0]))


def draw(
    rng: random.Random, spans: dict[str, tuple[float, float]], stage: str
) -> tuple[str, float]:
    """A kill target in ``stage``: one of its steps, drawn in proportion to its duration in the
    reference run, and a moment inside it (each step at least 0.2 s wide, so steps that finish
    in a blink still get hit)."""
    steps = [(step, max(b - a, 0.2)) for step, (a, b) in spans.items() if stage_of(step) == stage]
    pick = rng.uniform(0.0, sum(width for _, width in steps))
    for step, width in steps:
        if pick <= width:
            return step, round(pick, 2)
        pick -= width
    return steps[-1][0], 0.0


def running_at(timeline: list[tuple[float, str, str]]) -> str:
    """The steps a killed run had started and not finished, or the last one it finished."""
    started = [step for _, event, step in timeline if event == "▶"]
    done = {step for _, event, step in timeline if event != "▶"}
    running = [step for step in started if step not in done]
    if running:
        return "+".join(running)
    return f"after {started[-1]}" if started else "(before the first step)"


def lake_hashes(home: Path) -> dict[str, str]:
    """A content hash of every parquet file in the lake (row order as written)."""
    out = {}
    for path in sorted((home / "lake").rglob("*.parquet")):
        frame = pl.read_parquet(path)
        digest = hashlib.sha256(frame.write_ipc(None).getvalue()).hexdigest()[:16]
        out[str(path.relative_to(home / "lake"))] = digest
    return out


def backtest_metrics(home: Path) -> dict[str, float]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("alphaforge")
    runs = client.search_runs(
        [experiment.experiment_id],
        "attributes.run_name = 'backtest' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return dict(runs[0].data.metrics)


def stuck_runs(home: Path) -> int:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("alphaforge")
    if experiment is None:
        return 0
    return len(client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"))


def killed_attempts(home: Path) -> tuple[list[str], list[str]]:
    """The Dagster status of every run before the last (the killed attempts) and the MLflow
    status of their parent runs."""
    import mlflow
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster"))) as instance:
        runs = sorted(
            instance.get_runs(),
            key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp,
        )
        killed = runs[:-1]
        dagster = [r.status.value for r in killed]
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("alphaforge")
    statuses = []
    for run in killed if experiment else []:
        parents = client.search_runs(
            [experiment.experiment_id],
            f"tags.`dagster.run_id` = '{run.run_id}' and tags.`alphaforge.parent` = 'true'",
        )
        statuses += [p.info.status for p in parents]
    return dagster, statuses


def orphans(home: Path) -> list[Path]:
    return sorted(home.rglob(".tmp-*"))


@dataclass
class Outcome:
    code: int
    text: str
    seconds: float
    timeline: list[tuple[float, str, str]]  # (seconds since start, "▶" or "] ✓", step)


def run(home: Path, target: tuple[str, float] | None = None) -> Outcome:
    """The CLI in its own process group; with ``target = (step, seconds)``, SIGKILLed (the whole
    group) that many seconds after the step starts. The kill is timed from the step's own start
    line, not from the process start, so it lands in the step however fast the machine is.
    Output goes to ``<home>.log``; each step's start and end are timestamped as they arrive."""
    env = {**os.environ, "ALPHAFORGE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("DAGSTER_HOME", None)
    log = home.parent / f"{home.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    timeline: list[tuple[float, str, str]] = []
    deadline: list[float] = []
    started = time.perf_counter()
    proc = subprocess.Popen(
        CLI, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )

    def pump() -> None:
        with open(log, "ab") as out:
            for line in proc.stdout:
                out.write(line)
                if match := STEP.search(line.decode(errors="replace")):
                    now = time.perf_counter()
                    timeline.append((now - started, *match.groups()))
                    if target and match.groups() == ("▶", target[0]) and not deadline:
                        deadline.append(now + target[1])

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while proc.poll() is None:
        if deadline and time.perf_counter() >= deadline[0]:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.01)
    reader.join(timeout=30)  # ends when the last writer of the pipe (the group) is gone
    return Outcome(proc.returncode, log.read_text(), time.perf_counter() - started, timeline)


@dataclass
class Trial:
    target: str  # "<step> +<seconds>"
    killed: bool  # False: the run ended before the kill came (counted, reported)
    stage: str
    step: str
    rerun_ok: bool
    identical: bool
    metrics_equal: bool
    orphan_files: int
    stuck: int
    differs: list[str]  # lake files whose content differs from the reference's
    dagster_status: list[str]  # of the killed attempt(s): each must be FAILURE
    mlflow_status: list[str]  # of their MLflow parent runs: each KILLED or FAILED

    @property
    def statuses_ok(self) -> bool:
        return all(s == "FAILURE" for s in self.dagster_status) and all(
            s in ("KILLED", "FAILED") for s in self.mlflow_status
        )


def trial(root: Path, i: int, target: tuple[str, float], reference: dict, metrics: dict) -> Trial:
    home = root / f"trial{i:02d}"
    killed = run(home, target)
    step = running_at(killed.timeline)
    ok = run(home).code == 0
    hashes = lake_hashes(home) if ok else {}
    dagster_status, mlflow_status = killed_attempts(home)
    return Trial(
        target=f"{target[0]} +{target[1]:.2f} s",
        killed=killed.code == -signal.SIGKILL,
        stage=stage_of(step.removeprefix("after ")) or "startup",
        step=step,
        rerun_ok=ok,
        identical=ok and hashes == reference,
        metrics_equal=ok and backtest_metrics(home) == metrics,
        orphan_files=len(orphans(home)),
        stuck=stuck_runs(home),
        differs=sorted(
            k for k in set(hashes) | set(reference) if hashes.get(k) != reference.get(k)
        ),
        dagster_status=dagster_status,
        mlflow_status=mlflow_status,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None, help="where the homes go")
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="alphaforge_chaos_"))
    first = run(root / "reference")
    if first.code != 0:
        print(first.text[-3000:])
        return 2
    reference = lake_hashes(root / "reference")
    metrics = backtest_metrics(root / "reference")
    spans = step_spans(first.timeline, first.seconds)
    windows = stage_spans(spans)
    print(f"reference run: {first.seconds:.0f} s, {len(reference)} parquet files; homes in {root}")
    print(
        "stages: " + ", ".join(f"{k} {sum(b - a for a, b in v):.1f} s" for k, v in windows.items())
    )
    rng = random.Random(args.seed)
    stages = list(windows)
    results = []
    for i in range(args.trials):
        target = draw(rng, spans, stages[i % len(stages)])
        t = trial(root, i, target, reference, metrics)
        results.append(t)
        print(
            f"trial {i + 1:2d}: kill at {t.target:<28} "
            f"{'killed in' if t.killed else 'ENDED FIRST'} {t.stage:<12} ({t.step:<22}) rerun "
            f"{'ok' if t.rerun_ok else 'FAILED'}, lake {'identical' if t.identical else 'DIFFERS'}, "
            f"metrics {'equal' if t.metrics_equal else 'DIFFER'}, orphan files {t.orphan_files}, "
            f"stuck MLflow runs {t.stuck}, killed attempt Dagster {'/'.join(t.dagster_status) or '-'} "
            f"MLflow {'/'.join(t.mlflow_status) or '-'}"
            + (f"; differs: {', '.join(t.differs)}" if t.differs else ""),
            flush=True,
        )
    summary = {
        "trials": len(results),
        "killed": sum(t.killed for t in results),
        "reruns_ok": sum(t.rerun_ok for t in results),
        "reruns_identical": sum(t.identical and t.metrics_equal for t in results),
        "orphan_files": sum(t.orphan_files for t in results),
        "stuck_mlflow_runs": sum(t.stuck for t in results),
        "killed_marked": sum(t.statuses_ok for t in results),
        "stages_hit": sorted({t.stage for t in results}),
        "steps_hit": sorted({t.step for t in results}),
    }
    print(
        f"\n{summary['trials']} trials, {summary['killed']} killed mid-run: "
        f"{summary['reruns_ok']}/{summary['trials']} reruns "
        f"succeeded, {summary['reruns_identical']}/{summary['trials']} identical to the "
        f"undisturbed run, {summary['orphan_files']} orphan files, "
        f"{summary['stuck_mlflow_runs']} stuck MLflow runs, {summary['killed_marked']}/"
        f"{summary['trials']} killed attempts FAILURE in Dagster and KILLED/FAILED in MLflow"
    )
    print(json.dumps(summary))
    good = summary["reruns_identical"] == summary["killed_marked"] == summary["trials"]
    return 0 if good and not summary["orphan_files"] and not summary["stuck_mlflow_runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
