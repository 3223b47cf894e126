"""Killing a tuning run mid-study and running it again resumes the same Optuna study (the
default journal file, the pipeline's own study naming) without losing a finished trial."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from models.learning.tuning import open_storage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np, polars as pl
    sys.path.insert(0, {tests!r})
    from conftest import random_walk_panel
    from models.learning.dataset import assemble
    from models.features import build_feature_matrix
    from models.learning.labels import forward_returns
    from models.learning.training import inner_splits, tune_and_fit, tuning_window

    panel = random_walk_panel(n_symbols=8, n_days=600, seed=2)
    alt = pl.DataFrame(schema={{"series": pl.String, "kind": pl.String, "date": pl.Date,
                               "available_date": pl.Date, "value": pl.Float64}})
    features = build_feature_matrix(panel.lazy(), alt.lazy(), feature_set="minimal").collect()
    ds = assemble(features, forward_returns(panel.lazy(), 5).collect())
    _, mask = tuning_window(ds, 0.6)
    splits = inner_splits(ds, mask, 3)

    def slow(study, trial):  # a trial's worth of time, so the kill lands mid-study
        print("finished", trial.number, flush=True)
        time.sleep({pause})

    _, _, _, study = tune_and_fit(
        ds, "lightgbm", splits=splits, fit_rows=np.arange(len(ds.y)), n_trials=12, seed=1,
        n_jobs=1, storage={storage!r}, callbacks=[slow],
    )
    print("STUDY", study.study_name, len(study.trials), flush=True)
    """
)


def _run(storage: str, pause: float) -> subprocess.Popen:
    code = SCRIPT.format(
        tests=str(Path(__file__).resolve().parents[1]), pause=pause, storage=storage
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_killed_study_resumes_without_losing_trials(tmp_path):
    """On the local default, the journal file (an RDB storage with a killed worker is
    ``tests/scaleout/test_postgres.py``)."""
    url = f"journal://{tmp_path / 'optuna.journal'}"
    storage = open_storage(url)
    first = _run(url, pause=0.5)
    finished = 0
    deadline = time.monotonic() + 120
    while finished < 4 and time.monotonic() < deadline:
        line = first.stdout.readline()
        finished += line.startswith("finished")
    time.sleep(0.3)  # inside the next trial (or its pause)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert finished >= 4

    (name,) = optuna.study.get_all_study_names(storage)
    before = {
        t.number: (t.params, t.value)
        for t in optuna.load_study(study_name=name, storage=storage).trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    }
    assert 4 <= len(before) < 12

    second = _run(url, pause=0.0)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    assert f"STUDY {name}" in out  # the same study, found by its derived name
    study = optuna.load_study(study_name=name, storage=storage)
    after = {t.number: t for t in study.trials}
    for number, (params, value) in before.items():  # every finished trial kept as it was
        assert after[number].params == params and after[number].value == value
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 12
    # a trial the kill left RUNNING is marked FAIL, not left dangling
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert optuna.study.get_all_study_names(storage) == [name]

    # and it sampled what an uninterrupted study samples: same trials, same order, same scores
    clean_url = url.replace("optuna.", "clean.")
    clean = _run(clean_url, pause=0.0)
    out, _ = clean.communicate(timeout=300)
    assert clean.returncode == 0, out

    def finished(s):
        return [
            (t.params, t.value)
            for t in s.trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        ]

    assert finished(study) == finished(
        optuna.load_study(study_name=name, storage=open_storage(clean_url))
    )
