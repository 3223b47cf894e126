"""A newcomer's first run: `make run` (``alphaforge run --profile fast``) in a fresh home, timed
from the Dagster run's own event log: seconds per step and in all, against the one minute the
README promises on two idle cores.

    python -m benchmarks.first_run [--keep HOME] [--target 60]

The run is the CLI's own (in this process, so the ~15 s of imports before it are counted in
the wall time but not in the Dagster run). The load average when it starts is printed: on a
busy machine the figures say little (two CPU-heavy jobs slow each other 3x or more).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def step_seconds(instance, run_id: str) -> tuple[dict[str, float], float]:
    """Each step's seconds (start to success or failure) and the run's (start to end), from the
    run's event log."""
    from dagster import DagsterEventType

    starts: dict[str, float] = {}
    steps: dict[str, float] = {}
    begun = ended = None
    ends = (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE)
    for record in instance.get_records_for_run(run_id, limit=1_000_000).records:
        entry = record.event_log_entry
        kind = entry.dagster_event_type
        if kind == DagsterEventType.RUN_START:
            begun = entry.timestamp
        elif kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
            ended = entry.timestamp
        elif kind == DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif kind in ends and entry.step_key in starts:
            steps[entry.step_key] = entry.timestamp - starts[entry.step_key]
    if begun is None or ended is None:
        raise RuntimeError(f"run {run_id} has no start or end event")
    return steps, ended - begun


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="run in this (new) home and keep it")
    parser.add_argument("--target", type=float, default=60.0, help="seconds of Dagster run")
    args = parser.parse_args(argv)
    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="alphaforge-first-"))
    if args.keep and home.exists() and any(home.iterdir()):
        print(f"{home} is not empty: a first run needs a fresh home", file=sys.stderr)
        return 2
    load = os.getloadavg()
    for key in [k for k in os.environ if k.startswith(("ALPHAFORGE", "DAGSTER_", "MLFLOW_"))]:
        del os.environ[key]
    os.environ |= {"ALPHAFORGE_HOME": str(home), "ALPHAFORGE_PROFILE": "fast"}
    started = time.monotonic()
    try:
        from dagster import DagsterInstance

        from pipelines.cli import main as alphaforge

        code = alphaforge(["run", "--profile", "fast"])
        wall = time.monotonic() - started
        if code != 0:
            print(f"the run failed (exit {code})", file=sys.stderr)
            return code
        with DagsterInstance.from_config(str(home / "dagster")) as instance:
            (run,) = instance.get_run_records(limit=1)
            steps, total = step_seconds(instance, run.dagster_run.run_id)
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(f"\nfirst run (fast profile, fresh home), {os.cpu_count()} cores, load {load[0]:.2f}")
    print(f"{'step':<28}{'seconds':>9}")
    for step, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"{step:<28}{seconds:>9.1f}")
    verdict = "within" if total <= args.target else "OVER"
    print(f"{'Dagster run':<28}{total:>9.1f}   {verdict} the {args.target:.0f} s target")
    print(f"{'wall (imports included)':<28}{wall:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
