"""Test doubles, the one copy of each: a fake of our own tracking port
(``assets.ports.Tracker``, not of MLflow: it keeps what an asset logs in memory, so a test can
call an asset function directly and read what it tracked), and HTTP stubs on loopback of the
outside services the pipeline talks to (a vendor's price API, an alert webhook)."""

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


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


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]):
    """``handler`` served on a free loopback port for the block; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def vendor_stub(bodies: dict[str, bytes], key: str):
    """A vendor's price API: ``GET <any path>?symbol=S&apikey=K`` answers ``bodies[S]`` (200),
    404 for a symbol it has not, 401 for another key. Yields the base URL and the list of
    every request's parsed query, in order."""
    queries: list[dict[str, list[str]]] = []

    class Vendor(_Quiet):
        def do_GET(self):  # noqa: N802 (http.server's name)
            query = parse_qs(urlparse(self.path).query)
            queries.append(query)
            if query.get("apikey") != [key]:
                status, body = 401, b""
            else:
                body = bodies.get(query.get("symbol", [""])[0], b"")
                status = 200 if body else 404
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

    with http_server(Vendor) as url:
        yield url, queries


@contextmanager
def webhook_stub(decode=None):
    """An alert webhook: every ``POST`` is answered 204 and kept as ``(path, body)``, or as
    ``decode(body)`` when given (``json.loads``). Yields the base URL and that list."""
    received: list = []

    class Hook(_Quiet):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body) if decode is None else decode(body))
            self.send_response(204)
            self.end_headers()

    with http_server(Hook) as url:
        yield url, received
