"""Training at scale: peak memory and wall time per step, against the bare libraries.

    python -m benchmarks.scale [--quick] [--part run|growth|all]

* **run** (issue 22's acceptance run): ``alphaforge run`` on ``benchmarks/sp500_alpha158.yaml``
  (Alpha158 on every readable ticker of the shared S&P 500 set, 2000-01-01 to 2021-04-21, 2.4 M
  rows; LightGBM and XGBoost, 4 Optuna trials, 3 inner / 5 outer folds) up to ``signals``, in
  a child process whose resident memory (the whole process tree) is sampled; then each step's
  wall time and peak (``peak_rss_mib`` in its Dagster metadata); then, in this process on the
  same lake, the first and last trial of each study refitted by the bare library on exactly
  the folds it ran (``lightgbm.train`` / ``xgboost.train`` on a Dataset / QuantileDMatrix built
  from the fold's rows, and the prediction of its test rows) against the trial's own fit
  seconds. Targets: peak RSS <= 8 GB, a trial's fits within 10 % of the bare library's.
* **growth**: the default feature set at 1.2 M rows (every second ticker of the shared set),
  2.4 M (all of it) and a synthetic 10 M (2,000 symbols x 5,000 days), each size in a child
  process: features, the dataset, one LightGBM and one XGBoost fit (fixed parameters, 100
  trees, the first 70 % of dates) through the training path, with each step's time and peak;
  the growth exponent of each between sizes (time ~ rows^k, as the feature benchmark reports).

Without the shared set, ``run`` is skipped (saying so) and ``growth`` runs the synthetic sizes.
``--quick``: a 50-ticker slice and small synthetic sizes, nothing judged.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.__main__ import SHARED

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "sp500_alpha158.yaml"
UP_TO_SIGNALS = ["+signals"]  # signals and everything upstream of it
PEAK_TARGET_MIB = 8 * 1024
FIT_TARGET = 0.10
KILL_MIB = 20 * 1024  # a shared 24 GiB machine: stop a run before it takes the others down


def run_measured(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``; sample the resident memory of its whole process tree every 0.2 s."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak, killed = [0.0], [False]

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in tree) / 2**20
            except psutil.Error:
                continue
            peak[0] = max(peak[0], rss)
            if rss > KILL_MIB:
                killed[0] = True
                proc.kill()
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out = proc.communicate()[0]
    thread.join()
    return {
        "rc": proc.returncode,
        "wall_s": time.perf_counter() - started,
        "peak_mib": peak[0],
        "killed": killed[0],
        "output": out,
    }


def step_table(home: Path) -> list[dict]:
    """Each step of the home's latest run: wall seconds (start to success) and the peak RSS of
    its metadata."""
    from dagster import AssetKey, DagsterEventType, DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster")))
    run = instance.get_runs(limit=1)[0]
    starts, ends = {}, {}
    for record in instance.all_logs(
        run.run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    ):
        event = record.dagster_event
        target = starts if event.event_type == DagsterEventType.STEP_START else ends
        target[event.step_key] = record.timestamp
    rows = []
    for name in sorted(starts, key=starts.get):  # every step of the run, in the order it ran
        event = instance.get_latest_materialization_event(AssetKey(name))
        meta = event.asset_materialization.metadata if event else {}
        seconds = ends.get(name, np.nan) - starts[name]
        peaks = {k: v.value for k, v in meta.items() if k.startswith("peak_rss_mib")}
        rows.append({"step": name, "seconds": seconds, **peaks})
    return rows


def bare_fits(home: Path, settings_env: dict[str, str]) -> list[dict]:
    """The first and last trial of each study, refitted by the bare library on the folds it
    ran (a Dataset / QuantileDMatrix built from the fold's rows each time, as a bare script
    would), against the trial's own ``fit_seconds``."""
    import lightgbm as lgb
    import optuna
    import polars as pl
    import xgboost as xgb

    from models.learning.dataset import assemble
    from models.learning.estimators import get_spec
    from models.learning.folds import lightgbm_params, xgboost_params
    from models.learning.training import inner_splits, model_inputs, tuning_window
    from models.learning.tuning import open_storage
    from pipelines.experiment import resolve
    from pipelines.io_managers import LakeIOManager

    lake = home / "lake"
    base = LakeIOManager(base_dir=str(lake)).read_pickle(lake / "base_models.pkl")

    cfg = resolve(CONFIG, environ=settings_env).run_config({"base_models"})["ops"]
    cfg = cfg["base_models"]["config"]
    ds = assemble(
        pl.read_parquet(lake / "feature_matrix.parquet"),
        pl.read_parquet(lake / "labels.parquet"),
        base.target,
    )
    _, mask = tuning_window(ds, cfg["tune_fraction"])
    splits = inner_splits(ds, mask, cfg["inner_splits"], cfg["cv_scheme"])
    storage = open_storage(f"journal://{home / 'optuna.journal'}")
    rows = []
    for name, study_name in base.studies.items():
        spec, X, y = get_spec(name), model_inputs(ds, name), ds.y
        study = optuna.load_study(study_name=study_name, storage=storage)
        trials = [t for t in study.trials if t.user_attrs.get("fold_scores")]
        for trial in (trials[0], trials[-1]):
            est = spec.build(trial.params, base.seed, base.n_jobs)
            bare = 0.0
            for train, test in splits[: len(trial.user_attrs["fold_scores"])]:
                started = time.perf_counter()
                if spec.library == "lightgbm":
                    native, rounds = lightgbm_params(est)
                    booster = lgb.train(native, lgb.Dataset(X[train], y[train]), rounds)
                    booster.predict(X[test], num_threads=base.n_jobs)
                else:
                    native, rounds = xgboost_params(est)
                    matrix = xgb.QuantileDMatrix(X[train], y[train], nthread=base.n_jobs)
                    xgb.train(native, matrix, rounds).inplace_predict(X[test])
                bare += time.perf_counter() - started
            ours = trial.user_attrs["fit_seconds"]
            rows.append(
                {
                    "model": name,
                    "trial": trial.number,
                    "folds": len(trial.user_attrs["fold_scores"]),
                    "orchestrated_s": ours,
                    "bare_s": bare,
                    "ratio": ours / bare - 1,
                }
            )
            print(
                f"  {name} trial {trial.number}: orchestrated fits {ours:.1f} s, bare library "
                f"{bare:.1f} s ({ours / bare - 1:+.1%})",
                flush=True,
            )
        del X
    return rows


def part_run(quick: bool, home: Path | None = None) -> dict:
    if not SHARED.is_dir():
        print(f"run: skipped, the shared set is not at {SHARED}")
        return {}
    again = home is not None  # a finished run's home: its tables only, nothing rerun
    home = home or Path(tempfile.mkdtemp(prefix="alphaforge_scale_"))
    env = os.environ | {"ALPHAFORGE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("ALPHAFORGE_PROFILE", None)
    if quick:  # the first 50 tickers, for a look at the machinery
        names = sorted(p.name.removesuffix(".csv.gz") for p in SHARED.glob("*.csv.gz"))[:50]
        env["ALPHAFORGE__DATA__UNIVERSE"] = json.dumps([n for n in names if n != "BF.B"])
    command = [
        str(Path(sys.executable).parent / "alphaforge"),
        "run",
        "--config",
        str(CONFIG),
        "--select",
        *UP_TO_SIGNALS,
    ]
    print(f"run: {' '.join(command[1:4])} up to signals, home {home}", flush=True)
    if again:
        result = json.loads((home / "scale_run.json").read_text())
    else:
        result = run_measured(command, env)
        (home / "scale_run.log").write_text(result["output"])
        (home / "scale_run.json").write_text(
            json.dumps({k: v for k, v in result.items() if k != "output"} | {"output": ""})
        )
    if result["rc"] != 0:
        print(result["output"][-4000:])
        print(f"run: FAILED (exit {result['rc']}, killed for memory: {result['killed']})")
        return {"failed": True, **{k: v for k, v in result.items() if k != "output"}}
    steps = step_table(home)
    print(
        f"run: {result['wall_s']:.0f} s, peak RSS of the process tree {result['peak_mib']:,.0f} MiB"
    )
    print(f"  {'step':<16} {'seconds':>8}  peak RSS MiB (step, parts)")
    for row in steps:
        parts = ", ".join(
            f"{k.removeprefix('peak_rss_mib_')} {v:,.0f}"
            for k, v in row.items()
            if k.startswith("peak_rss_mib_")
        )
        print(
            f"  {row['step']:<16} {row['seconds']:8.1f}  {row.get('peak_rss_mib', float('nan')):8,.0f}"
            + (f"  ({parts})" if parts else "")
        )
    fits = bare_fits(home, env)
    return {
        "wall_s": result["wall_s"],
        "peak_mib": result["peak_mib"],
        "steps": steps,
        "fits": fits,
    }


GROWTH_CHILD = """
import json, sys, time
import numpy as np, polars as pl
from assets._meta import measure_peak
from benchmarks.__main__ import read_shared, synthetic
from models.learning.dataset import assemble, compact_floats
from models.features import ENGINE, build_feature_matrix
from models.features.alternative import empty_alt
from models.learning.folds import fold_fits
from models.learning.labels import forward_returns

kind, arg = sys.argv[1], int(sys.argv[2])
if kind == "shared":
    prices = read_shared(["open", "high", "low", "close", "volume"], "close")
    keep = prices["symbol"].unique().sort().gather_every(arg)
    prices = prices.filter(pl.col("symbol").is_in(keep.implode()))
else:
    prices = synthetic(arg, int(sys.argv[3]))
out, peaks = {"rows": len(prices)}, {}
t = time.perf_counter()
with measure_peak(peaks, "features"):
    features = build_feature_matrix(prices.lazy(), empty_alt().lazy()).collect(engine=ENGINE)
    features, _ = compact_floats(features)
    labels = forward_returns(prices.lazy(), 5).collect()
out["features_s"] = time.perf_counter() - t
del prices
t = time.perf_counter()
with measure_peak(peaks, "dataset"):
    ds = assemble(features, labels)
    del features, labels
out["dataset_s"] = time.perf_counter() - t
dates = np.unique(ds.dates)
cut = dates[int(len(dates) * 0.7)]
split = [(np.flatnonzero(ds.label_end < cut), np.flatnonzero(ds.dates >= cut))]
params = {
    "lightgbm": {"n_estimators": 100, "learning_rate": 0.05, "num_leaves": 31,
                 "min_child_samples": 500, "subsample": 0.8, "colsample_bytree": 0.8,
                 "reg_lambda": 1.0},
    "xgboost": {"n_estimators": 100, "learning_rate": 0.05, "max_depth": 6,
                "min_child_weight": 10.0, "subsample": 0.8, "colsample_bytree": 0.8,
                "reg_lambda": 1.0},
}
for model in ("lightgbm", "xgboost"):
    t = time.perf_counter()
    with measure_peak(peaks, model):
        fits = fold_fits(model, ds.X, ds.y, split, seed=0, n_jobs=2)
        pred = fits.predict(params[model], 0)
        fits.close()
    out[f"{model}_s"] = time.perf_counter() - t
out.update({f"{k}_peak_mib": v for k, v in peaks.items()})
out["features"] = len(ds.feature_names)
out["train_rows"] = len(split[0][0])
print(json.dumps(out))
"""


def part_growth(quick: bool) -> dict:
    sizes = []
    if SHARED.is_dir() and not quick:
        sizes += [("1.2 M (every 2nd shared ticker)", ["shared", "2"])]
        sizes += [("2.4 M (the shared set)", ["shared", "1"])]
    elif SHARED.is_dir():
        sizes += [("shared, every 10th ticker", ["shared", "10"])]
    sizes += [("10 M synthetic (2,000 x 5,000)", ["synthetic", "2000", "5000"])]
    if quick:
        sizes[-1] = ("synthetic 200 x 2,000", ["synthetic", "200", "2000"])
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    results = []
    for label, args in sizes:
        out = run_measured([sys.executable, "-c", GROWTH_CHILD, *args], env)
        if out["rc"] != 0:
            print(out["output"][-3000:])
            print(f"growth {label}: FAILED (killed for memory: {out['killed']})")
            return {"failed": True}
        r = json.loads(out["output"].strip().splitlines()[-1])
        r.update(label=label, wall_s=out["wall_s"], peak_mib=out["peak_mib"])
        results.append(r)
        print(
            f"growth {label}: {r['rows']:,} rows x {r['features']} features; features "
            f"{r['features_s']:.1f} s ({r['features_peak_mib']:,.0f} MiB), dataset "
            f"{r['dataset_s']:.1f} s ({r['dataset_peak_mib']:,.0f} MiB), LightGBM "
            f"{r['lightgbm_s']:.1f} s ({r['lightgbm_peak_mib']:,.0f} MiB), XGBoost "
            f"{r['xgboost_s']:.1f} s ({r['xgboost_peak_mib']:,.0f} MiB) on "
            f"{r['train_rows']:,} training rows; peak RSS {r['peak_mib']:,.0f} MiB",
            flush=True,
        )
    exponents = {}
    for a, b in zip(results, results[1:], strict=False):
        for step in ("features", "dataset", "lightgbm", "xgboost"):
            k = np.log(b[f"{step}_s"] / a[f"{step}_s"]) / np.log(b["rows"] / a["rows"])
            m = np.log(b[f"{step}_peak_mib"] / a[f"{step}_peak_mib"]) / np.log(
                b["rows"] / a["rows"]
            )
            exponents[f"{step} {a['rows']:,}->{b['rows']:,}"] = (k, m)
            print(
                f"  {step:<9} {a['rows']:>12,} -> {b['rows']:>12,} rows: time ~ rows^{k:.2f}, peak ~ rows^{m:.2f}"
            )
    return {"sizes": results, "exponents": exponents}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    parser.add_argument("--quick", action="store_true", help="small data, targets not judged")
    parser.add_argument("--part", choices=["run", "growth", "all"], default="all")
    parser.add_argument("--home", type=Path, help="report on this finished run's home instead")
    args = parser.parse_args(argv)
    run = part_run(args.quick, args.home) if args.part in ("run", "all") else {}
    growth = part_growth(args.quick) if args.part in ("growth", "all") else {}
    if args.quick:
        return 0
    checks = {}
    if run:
        checks["the Alpha158 run completes"] = not run.get("failed")
        if not run.get("failed"):
            checks["peak RSS <= 8 GB"] = run["peak_mib"] <= PEAK_TARGET_MIB
            checks["every step's peak in its metadata"] = all(
                "peak_rss_mib" in s for s in run["steps"]
            )
            checks["trial fits within 10 % of the bare library"] = all(
                f["ratio"] <= FIT_TARGET for f in run["fits"]
            )
    if growth:
        checks["10 M rows train with LightGBM and XGBoost"] = not growth.get("failed")
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
