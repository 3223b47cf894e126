"""Crash harness: kill the fast-profile run with SIGKILL at random moments, rerun, compare.

    python -m benchmarks.chaos [--trials 10] [--seed 0]        (make chaos)

1. A reference run, undisturbed, in a fresh home (``alphaforge run --profile fast``).
2. Each trial: a fresh home; the same run started and SIGKILLed after a seeded random time
   between 2 s and the reference's duration (so kills land in ingest, features, training,
   registration and reports); then the same command again, to completion.
3. After each rerun: it must succeed; every parquet in the lake must hold exactly the reference's
   rows (a content hash per file); no ``.tmp-*`` file may be left anywhere in the home; no MLflow
   run may be left RUNNING; the backtest's metrics must equal the reference's.

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
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

CLI = [str(Path(sys.executable).parent / "alphaforge"), "run", "--profile", "fast"]
STEP = re.compile(r"▶ (\S+)")


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


def orphans(home: Path) -> list[Path]:
    return sorted(home.rglob(".tmp-*"))


def run(home: Path, kill_after: float | None = None) -> tuple[int, str, float]:
    """The CLI in its own process group; SIGKILLed (the whole group) after ``kill_after`` s."""
    env = {**os.environ, "ALPHAFORGE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("DAGSTER_HOME", None)
    log = home.parent / f"{home.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.Popen(
            CLI, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, log.read_text(), time.perf_counter() - started


@dataclass
class Trial:
    kill_after: float
    step: str
    rerun_ok: bool
    identical: bool
    metrics_equal: bool
    orphan_files: int
    stuck: int


def trial(root: Path, i: int, kill_after: float, reference: dict, metrics: dict) -> Trial:
    home = root / f"trial{i:02d}"
    _, text, _ = run(home, kill_after)
    steps = STEP.findall(text)
    step = steps[-1] if steps else "(before the first step)"
    code, text, _ = run(home)
    ok = code == 0
    hashes = lake_hashes(home) if ok else {}
    return Trial(
        kill_after=kill_after,
        step=step,
        rerun_ok=ok,
        identical=ok and hashes == reference,
        metrics_equal=ok and backtest_metrics(home) == metrics,
        orphan_files=len(orphans(home)),
        stuck=stuck_runs(home),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None, help="where the homes go")
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="alphaforge_chaos_"))
    code, text, reference_s = run(root / "reference")
    if code != 0:
        print(text[-3000:])
        return 2
    reference = lake_hashes(root / "reference")
    metrics = backtest_metrics(root / "reference")
    print(f"reference run: {reference_s:.0f} s, {len(reference)} parquet files; homes in {root}")
    rng = random.Random(args.seed)
    results = []
    for i in range(args.trials):
        kill_after = round(rng.uniform(2.0, reference_s), 1)
        t = trial(root, i, kill_after, reference, metrics)
        results.append(t)
        print(
            f"trial {i + 1:2d}: killed after {t.kill_after:5.1f} s in {t.step:<20} rerun "
            f"{'ok' if t.rerun_ok else 'FAILED'}, lake {'identical' if t.identical else 'DIFFERS'}, "
            f"metrics {'equal' if t.metrics_equal else 'DIFFER'}, orphan files {t.orphan_files}, "
            f"stuck MLflow runs {t.stuck}",
            flush=True,
        )
    summary = {
        "trials": len(results),
        "reruns_ok": sum(t.rerun_ok for t in results),
        "reruns_identical": sum(t.identical and t.metrics_equal for t in results),
        "orphan_files": sum(t.orphan_files for t in results),
        "stuck_mlflow_runs": sum(t.stuck for t in results),
        "steps_hit": sorted({t.step for t in results}),
    }
    print(
        f"\n{summary['trials']} trials: {summary['reruns_ok']}/{summary['trials']} reruns "
        f"succeeded, {summary['reruns_identical']}/{summary['trials']} identical to the "
        f"undisturbed run, {summary['orphan_files']} orphan files, "
        f"{summary['stuck_mlflow_runs']} stuck MLflow runs"
    )
    print(json.dumps(summary))
    good = summary["reruns_identical"] == summary["trials"]
    return 0 if good and not summary["orphan_files"] and not summary["stuck_mlflow_runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
