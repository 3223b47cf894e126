"""A fake of our own tracking port (``assets.ports.Tracker``), not of MLflow: it keeps what an
asset logs in memory, so a test can call an asset function directly and read what it tracked."""

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FakeRun:
    """What one asset run (or a nested one) logged."""

    run_id: str
    name: str
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    artifacts: list = field(default_factory=list)  # (name or path, folder)
    children: list = field(default_factory=list)

    def log_params(self, params: dict) -> None:
        clash = {k for k in params if k in self.params and self.params[k] != params[k]}
        assert not clash, f"params logged twice with other values: {clash}"  # MLflow refuses it
        self.params |= params

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self.metrics |= metrics

    def log_metric(self, key: str, value: float) -> None:
        self.metrics[key] = value

    def log_artifact(self, path, folder: str | None = None) -> None:
        assert Path(path).is_file(), path
        self.artifacts.append((str(path), folder))

    def log_table(self, frame, name: str) -> None:
        self.artifacts.append((name, None))

    def log_png(self, png: bytes, name: str) -> None:
        assert png.startswith(b"\x89PNG"), name
        self.artifacts.append((name, None))

    def log_figure(self, figure, name: str) -> None:
        self.artifacts.append((name, None))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags |= tags

    @contextmanager
    def nested(self, name: str, tags: dict[str, str] | None = None):
        child = FakeRun(f"{self.run_id}/{name}", name, tags=dict(tags or {}))
        self.children.append(child)
        yield child


class FakeTracker:
    """Every asset run in ``runs``, by asset name; headline metrics in ``headlines``."""

    def __init__(self):
        self.runs: dict[str, FakeRun] = {}
        self.headlines: dict[str, dict[str, float]] = {}

    @contextmanager
    def asset_run(self, context):
        name = context.asset_key.to_user_string()
        run = FakeRun(f"run-{len(self.runs)}", name)
        self.runs[name] = run
        yield run

    def registry(self):
        raise NotImplementedError("the fake tracks runs; registry tests use MLflow's")

    def trial_logger(self, log, model, n_trials, parent_run_id, **kwargs):
        class Logger:
            def __call__(self, study, trial) -> None:
                pass

            def close(self) -> None:
                pass

        return Logger()

    def run_url(self, run_id: str) -> str:
        return f"http://127.0.0.1/fake/runs/{run_id}"

    def model_url(self, name: str, version: str) -> str:
        return f"http://127.0.0.1/fake/models/{name}/{version}"

    def artifact_url(self, run_id: str, path: str) -> str:
        return f"http://127.0.0.1/fake/runs/{run_id}/{path}"

    def log_headline(self, context, metrics: dict[str, float]) -> None:
        self.headlines[context.asset_key.to_user_string()] = dict(metrics)
