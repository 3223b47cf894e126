"""Short-horizon mid-price models on order-book features, split strictly in time.

The split (:func:`time_split`): the sessions in time order, the first ``train_fraction`` of
their trading time trains, the rest tests; a training row whose label reads past the first
test event is purged (per horizon), and the last ``valid_fraction`` of the training time is a
validation block (purged the same way) for early stopping. Nothing in a test row's label was
seen in training; features only look back.

Models, per horizon, each a three-class classifier (down / stationary / up):

- ``majority``: the training period's most frequent class (scikit-learn's DummyClassifier);
- ``persistence``: the class of the last label that has ended (the move over the previous k
  events, smoothed the same way, or over the previous T seconds);
- ``cks_ofi``: the Cont-Kukanov-Stoikov linear regression of the return on multi-level
  order-flow imbalance; its forecasts become classes at the training forecasts' quantiles that
  reproduce the training class shares (a regression never forecasts beyond a dead zone often);
- ``lightgbm``: LightGBM on every order-book feature, class-balanced, early-stopped;
- ``deeplob``: a DeepLOB-style CNN + inception + LSTM (Zhang, Zohren & Roberts 2019) on the
  last 100 book snapshots, one net with a head per horizon (smaller than the paper's, to train
  on two CPU cores in a minute or two).
"""

import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from torch import nn

from models.microstructure.labels import CLASSES, DOWN, FLAT, UP
from models.microstructure.reader import TICK, book_ticks

MODEL_NAMES = ("majority", "persistence", "cks_ofi", "lightgbm", "deeplob")
# the models the tick-by-tick scorer can run from its incremental features
REPLAYABLE = ("cks_ofi", "lightgbm")


@dataclass
class Split:
    """Row positions of one horizon's training, validation and test rows."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    boundary_ns: int  # first test time (epoch ns)
    valid_start_ns: int
    purged: int  # training and validation rows dropped because their label reached past


def session_boundary(ts_ns: np.ndarray, day: np.ndarray, fraction: float) -> int:
    """The epoch-ns time at which ``fraction`` of the sessions' trading time (first to last
    event of each day, days in order) has passed."""
    days = np.unique(day)
    spans = [(ts_ns[day == d].min(), ts_ns[day == d].max()) for d in days]
    total = sum(b - a for a, b in spans)
    target = fraction * total
    for a, b in spans:
        if target <= b - a:
            return int(a + target)
        target -= b - a
    return int(spans[-1][1])


def time_split(
    ts_ns: np.ndarray,
    day: np.ndarray,
    end_ns: np.ndarray,
    labelled: np.ndarray,
    train_fraction: float = 0.6,
    valid_fraction: float = 0.2,
) -> Split:
    """Train on the first ``train_fraction`` of the sessions' time, test on the rest; purge
    every training row whose label ends at or after the test start, and every validation...
    the validation block is the last ``valid_fraction`` of the training time, and training
    rows whose labels reach into it are purged too. ``labelled`` masks rows with a label."""
    boundary = session_boundary(ts_ns, day, train_fraction)
    valid_start = session_boundary(ts_ns, day, train_fraction * (1 - valid_fraction))
    before = labelled & (ts_ns < boundary)
    valid = before & (ts_ns >= valid_start) & (end_ns < boundary)
    train = before & (ts_ns < valid_start) & (end_ns < valid_start)
    test = labelled & (ts_ns >= boundary)
    purged = int(before.sum() - valid.sum() - train.sum())
    return Split(
        np.flatnonzero(train),
        np.flatnonzero(valid),
        np.flatnonzero(test),
        boundary,
        valid_start,
        purged,
    )


def dead_zone(returns: np.ndarray, stationary_share: float = 1 / 3) -> float:
    """The dead zone (bp) that makes ``stationary_share`` of ``returns`` (training rows only)
    stationary: the quantile of their absolute value (0, and more of them stationary, when
    that many returns are exactly 0)."""
    r = np.abs(returns[np.isfinite(returns)])
    return float(np.quantile(r, stationary_share) * 1e4) if len(r) else 0.0


def classes(returns: np.ndarray, dead_zone_bp: float) -> np.ndarray:
    alpha = dead_zone_bp * 1e-4
    return np.where(returns > alpha, UP, np.where(returns < -alpha, DOWN, FLAT)).astype(np.int64)


def scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(
            f1_score(y, pred, average="macro", labels=list(CLASSES), zero_division=0)
        ),
    }


def majority() -> DummyClassifier:
    return DummyClassifier(strategy="most_frequent")


class OFIRegressionClassifier(ClassifierMixin, BaseEstimator):
    """The CKS regression of the return on order-flow imbalance, as a classifier.

    ``fit(X, y, returns=...)``: ordinary least squares of ``returns`` on the standardized OFI
    columns ``X``; then the thresholds on the in-sample forecasts that give the training
    class shares of ``y`` (the lowest forecasts down, the highest up). Missing OFI (the first
    events of a day) counts as 0, no flow."""

    def __init__(self):
        pass

    def fit(self, X, y, returns=None):
        X = np.nan_to_num(np.asarray(X, dtype=float))
        y = np.asarray(y)
        target = np.asarray(returns if returns is not None else y, dtype=float)
        self.regression_ = make_pipeline(StandardScaler(), LinearRegression()).fit(X, target)
        fitted = self.regression_.predict(X)
        down, up = np.mean(y == DOWN), np.mean(y == UP)
        self.lower_ = float(np.quantile(fitted, down)) if down > 0 else -np.inf
        self.upper_ = float(np.quantile(fitted, 1 - up)) if up > 0 else np.inf
        self.classes_ = np.array(CLASSES)
        return self

    def forecast(self, X) -> np.ndarray:
        check_is_fitted(self, "regression_")
        return self.regression_.predict(np.nan_to_num(np.asarray(X, dtype=float)))

    def predict(self, X) -> np.ndarray:
        f = self.forecast(X)
        return np.where(f <= self.lower_, DOWN, np.where(f >= self.upper_, UP, FLAT))

    def linear(self) -> tuple[np.ndarray, float]:
        """The fitted forecast as one weight vector and intercept on the raw OFI columns
        (the scaler folded in), for a scorer that evaluates it row by row."""
        check_is_fitted(self, "regression_")
        scaler, ols = self.regression_[0], self.regression_[-1]
        w = ols.coef_ / scaler.scale_
        return w, float(ols.intercept_ - w @ scaler.mean_)

    def predict_proba(self, X) -> np.ndarray:
        """One-hot on the predicted class (a regression gives no class probabilities)."""
        pred = self.predict(X)
        return (pred[:, None] == self.classes_[None, :]).astype(float)


def lightgbm(seed: int = 0, n_jobs: int = 2, n_estimators: int = 200):
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        n_estimators=n_estimators,
        learning_rate=0.1,
        num_leaves=31,
        max_bin=63,
        min_child_samples=200,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        class_weight="balanced",
        random_state=seed,
        n_jobs=n_jobs,
        verbose=-1,
    )


def fit_lightgbm(X, y, X_valid, y_valid, seed: int = 0, n_jobs: int = 2):
    """LightGBM early-stopped on the validation block's multi-class log loss."""
    import lightgbm as lgb

    model = lightgbm(seed, n_jobs)
    model.fit(
        X,
        y,
        eval_set=[(X_valid, y_valid)] if len(y_valid) else None,
        callbacks=[lgb.early_stopping(20, verbose=False)] if len(y_valid) else None,
    )
    return model


@dataclass
class LobModel:
    """What ``alphaforge-lob`` holds: a fitted classifier, the features it reads in order and
    how to rebuild them (``feature_params``), the horizon and dead zone its classes mean."""

    estimator: object
    features: list[str]
    horizon: str
    dead_zone_bp: float
    feature_params: dict
    kind: str
    symbol: str = ""
    levels: int = 0
    classes: list[int] = field(default_factory=lambda: list(CLASSES))

    def predict_proba(self, X) -> np.ndarray:
        return self.estimator.predict_proba(np.asarray(X, dtype=float))

    def predict(self, X) -> np.ndarray:
        return np.asarray(self.classes)[np.argmax(self.predict_proba(X), axis=1)]

    def booster(self):
        """The LightGBM booster, for the single-row scorer (None for other kinds)."""
        return getattr(self.estimator, "booster_", None)


# --- DeepLOB ---------------------------------------------------------------------------


def snapshot_inputs(book_ticks: np.ndarray, levels: int, tick: int) -> np.ndarray:
    """``(n, 4 * levels)`` float32 inputs of the net from the integer book (LOBSTER columns:
    ask price, ask size, bid price, bid size per level): prices as ticks from the row's mid
    (an empty level at 0 ticks with size 0), sizes as log(1 + shares)."""
    x = book_ticks[:, : 4 * levels].astype(np.float64)
    ask1, bid1 = x[:, 0], x[:, 2]
    mid = np.where((np.abs(ask1) < 9e9) & (np.abs(bid1) < 9e9), (ask1 + bid1) / 2, np.nan)
    mid = _ffill(mid)
    out = np.empty_like(x, dtype=np.float32)
    for j in range(4 * levels):
        col = x[:, j]
        if j % 2 == 0:  # a price
            rel = (col - mid) / tick
            out[:, j] = np.where(np.abs(col) < 9e9, rel, 0.0)
        else:
            out[:, j] = np.log1p(col)
    return np.nan_to_num(out)


def _ffill(x: np.ndarray) -> np.ndarray:
    idx = np.where(np.isnan(x), 0, np.arange(len(x)))
    np.maximum.accumulate(idx, out=idx)
    out = x[idx]
    return np.where(np.isnan(out), np.nanmean(x) if np.isfinite(x).any() else 0.0, out)


class _DeepLOBNet(nn.Module):
    """Conv blocks that pair price with size, then levels, then the whole book; an inception
    module over time; an LSTM; one 3-class head per horizon."""

    def __init__(self, levels: int, horizons: int, channels: int = 16, hidden: int = 32):
        super().__init__()
        c = channels
        act = nn.LeakyReLU(0.01)
        # width 4L (ask price, ask size, bid price, bid size per level) -> 2L (price with size)
        # -> L (ask with bid) -> 1 (all levels); each followed by a convolution over time
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, (1, 2), (1, 2)),
            act,
            nn.Conv2d(c, c, (4, 1)),  # over time, unpadded: 100 -> 91 steps
            act,
            nn.Conv2d(c, c, (1, 2), (1, 2)),
            act,
            nn.Conv2d(c, c, (4, 1)),  # over time, unpadded: 100 -> 91 steps
            act,
            nn.Conv2d(c, c, (1, levels)),
            act,
            nn.Conv2d(c, c, (4, 1)),  # over time, unpadded: 100 -> 91 steps
            act,
        )
        self.branches = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(c, c, 1), act, nn.Conv2d(c, c, (3, 1), padding="same"), act),
                nn.Sequential(nn.Conv2d(c, c, 1), act, nn.Conv2d(c, c, (5, 1), padding="same"), act),
                nn.Sequential(nn.MaxPool2d((3, 1), 1, (1, 0)), nn.Conv2d(c, c, 1), act),
            ]
        )  # fmt: skip
        self.lstm = nn.LSTM(3 * c, hidden, batch_first=True)
        self.heads = nn.Linear(hidden, 3 * horizons)
        self.horizons = horizons

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, time, 4 * levels)
        z = self.conv(x.unsqueeze(1))  # (batch, c, time, 1)
        z = torch.cat([b(z) for b in self.branches], dim=1).squeeze(-1).transpose(1, 2)
        out, _ = self.lstm(z)
        return self.heads(out[:, -1]).view(-1, self.horizons, 3)


class DeepLOBClassifier(ClassifierMixin, BaseEstimator):
    """The DeepLOB-style net on windows of book snapshots, one head per horizon.

    ``fit(inputs, rows, Y, valid_rows, Y_valid)``: ``inputs`` is the ``(n, 4 * levels)``
    snapshot matrix of :func:`snapshot_inputs` (all events, time order), ``rows`` the positions
    of the training rows (each needs ``window - 1`` earlier snapshots of its own day), ``Y``
    their classes per horizon (``(len(rows), horizons)``, -1/0/+1; NaN = no label). Inputs are
    standardized with the training rows' statistics. Early stopping on the validation loss."""

    def __init__(
        self,
        levels: int = 10,
        window: int = 100,
        channels: int = 16,
        hidden: int = 32,
        epochs: int = 3,
        batch_size: int = 64,
        lr: float = 1e-3,
        max_train_windows: int = 30_000,
        threads: int = 2,
        random_state: int = 0,
    ):
        self.levels = levels
        self.window = window
        self.channels = channels
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_train_windows = max_train_windows
        self.threads = threads
        self.random_state = random_state

    def _windows(self, inputs: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        idx = rows[:, None] + np.arange(-self.window + 1, 1)[None, :]
        return torch.from_numpy((inputs[idx] - self.mean_) / self.std_)

    def fit(self, inputs, rows, Y, valid_rows=None, Y_valid=None, log=None):
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._fit(inputs, rows, Y, valid_rows, Y_valid, log)
        finally:
            torch.set_num_threads(previous)

    def _fit(self, inputs, rows, Y, valid_rows, Y_valid, log):
        rng = np.random.default_rng(self.random_state)
        torch.manual_seed(self.random_state)
        Y = np.asarray(Y, dtype=float)
        if len(rows) > self.max_train_windows:  # spread over the training period
            keep = np.sort(rng.choice(len(rows), self.max_train_windows, replace=False))
            rows, Y = rows[keep], Y[keep]
        cap = max(1, self.max_train_windows // 4)  # the validation pass each epoch, bounded
        if valid_rows is not None and len(valid_rows) > cap:
            keep = np.sort(rng.choice(len(valid_rows), cap, replace=False))
            valid_rows, Y_valid = valid_rows[keep], np.asarray(Y_valid)[keep]
        sample = inputs[rows]
        self.mean_ = sample.mean(axis=0).astype(np.float32)
        self.std_ = (sample.std(axis=0) + 1e-6).astype(np.float32)
        self.n_horizons_ = Y.shape[1]
        self.classes_ = np.array(CLASSES)
        # class weights per horizon, balanced on the training labels
        target = torch.from_numpy(np.nan_to_num(Y + 1, nan=-100).astype(np.int64))  # 0, 1, 2
        weights = []
        for h in range(Y.shape[1]):
            counts = np.bincount(target[:, h][target[:, h] >= 0].numpy(), minlength=3)
            weights.append(
                torch.tensor(counts.sum() / (3 * np.maximum(counts, 1)), dtype=torch.float32)
            )
        net = _DeepLOBNet(self.levels, Y.shape[1], self.channels, self.hidden)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(self.random_state)
        losses = [nn.CrossEntropyLoss(weight=w, ignore_index=-100) for w in weights]
        best, best_state, self.history_ = np.inf, None, []
        started = time.perf_counter()
        for epoch in range(self.epochs):
            net.train()
            for batch in torch.randperm(len(rows), generator=gen).split(self.batch_size):
                x = self._windows(inputs, rows[batch.numpy()])
                out = net(x)
                loss = sum(losses[h](out[:, h], target[batch, h]) for h in range(Y.shape[1]))
                opt.zero_grad()
                loss.backward()
                opt.step()
            val = (
                self._loss(net, inputs, valid_rows, Y_valid, losses)
                if valid_rows is not None and len(valid_rows)
                else float(loss)
            )
            self.history_.append(val)
            if log:
                log(
                    f"deeplob epoch {epoch + 1}/{self.epochs}: validation loss {val:.4f} ({time.perf_counter() - started:.0f} s)"
                )
            if val < best:
                best, best_state = val, {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(best_state)
        self.net_ = net.eval()
        self.train_seconds_ = time.perf_counter() - started
        return self

    def _loss(self, net, inputs, rows, Y, losses) -> float:
        target = torch.from_numpy(
            np.nan_to_num(np.asarray(Y, dtype=float) + 1, nan=-100).astype(np.int64)
        )
        total, n = 0.0, 0
        net.eval()
        with torch.no_grad():
            for batch in torch.arange(len(rows)).split(1024):
                out = net(self._windows(inputs, rows[batch.numpy()]))
                total += float(
                    sum(losses[h](out[:, h], target[batch, h]) for h in range(out.shape[1]))
                ) * len(batch)
                n += len(batch)
        return total / max(n, 1)

    def predict_proba(self, inputs, rows) -> np.ndarray:
        """``(len(rows), horizons, 3)`` class probabilities (down, stationary, up)."""
        check_is_fitted(self, "net_")
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                parts = [
                    torch.softmax(self.net_(self._windows(inputs, rows[b.numpy()])), dim=-1)
                    for b in torch.arange(len(rows)).split(2048)
                ]
        finally:
            torch.set_num_threads(previous)
        return torch.cat(parts).numpy() if parts else np.zeros((0, self.n_horizons_, 3))

    def predict(self, inputs, rows) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(inputs, rows), axis=-1)]


# --- all models, all horizons ----------------------------------------------------------


@dataclass
class LobData:
    """Every labelled event of the training ticker's days, in time order."""

    X: np.ndarray  # (n, features) float, NaN = missing
    feature_names: list[str]
    ts_ns: np.ndarray  # epoch ns
    day: np.ndarray  # int day code, in time order
    pos_in_day: np.ndarray  # 0-based event index within its day
    returns: dict[str, np.ndarray]  # horizon -> label return (NaN = none)
    past_returns: dict[str, np.ndarray]  # horizon -> the last ended label's return
    ends_ns: dict[str, np.ndarray]  # horizon -> epoch ns of the last event the label reads
    snapshots: np.ndarray | None = None  # (n, 4 * levels) float32 net inputs


@dataclass
class LobResults:
    table: list[dict]  # model, horizon, accuracy, macro_f1, n_train, n_test, dead_zone_bp, ...
    fitted: dict[tuple[str, str], object]  # (model, horizon) -> fitted estimator
    dead_zones: dict[str, float]
    splits: dict[str, Split]
    test_predictions: dict[tuple[str, str], np.ndarray]
    seconds: dict[str, float]


OFI_PREFIX = "ofi_"


def assemble(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    book: pl.DataFrame | None,
    names: list[str],
    horizons: list[str],
    levels: int,
    tick: int = TICK,
) -> LobData:
    """:class:`LobData` from the ``lob_features``, ``lob_labels`` and ``lob_book`` rows of one
    ticker's days (each with ``lob_partition`` and ``seq``); ``book`` None skips the net's
    snapshots."""
    keys = ["lob_partition", "seq"]
    frame = features.join(labels.drop("ts"), on=keys, how="inner").sort(
        "ts", "lob_partition", "seq"
    )
    day = frame["lob_partition"].rank("dense").to_numpy().astype(np.int64)
    snapshots = None
    if book is not None:
        ordered = frame.select(keys).join(book, on=keys, how="left", maintain_order="left")
        snapshots = snapshot_inputs(book_ticks(ordered.drop(keys), levels).to_numpy(), levels, tick)
    return LobData(
        X=frame.select(names).cast(pl.Float64).fill_null(np.nan).to_numpy(),
        feature_names=names,
        ts_ns=frame["ts"].dt.epoch("ns").to_numpy(),
        day=day,
        pos_in_day=(frame["seq"].to_numpy() - 1),
        returns={h: frame[f"ret_{h}"].fill_null(np.nan).to_numpy() for h in horizons},
        past_returns={h: frame[f"past_{h}"].fill_null(np.nan).to_numpy() for h in horizons},
        ends_ns={h: frame[f"end_{h}"].dt.epoch("ns").to_numpy() for h in horizons},
        snapshots=snapshots,
    )


def fit_models(
    data: LobData,
    horizons: list[str],
    models: tuple[str, ...] = MODEL_NAMES,
    *,
    train_fraction: float = 0.6,
    valid_fraction: float = 0.2,
    stationary_share: float = 1 / 3,
    dead_zones_bp: dict[str, float] | None = None,
    window: int = 100,
    deeplob: dict | None = None,
    seed: int = 0,
    n_jobs: int = 2,
    log=None,
) -> LobResults:
    """Fit every model of ``models`` for every horizon on the training rows of
    :func:`time_split` and score all of them on the same test rows (those with a label and
    ``window - 1`` earlier events in their day, so every model, the net included, is scored on
    the same rows). Dead zones come from ``dead_zones_bp`` or, where absent, from the training
    rows (``stationary_share`` of them stationary)."""
    log = log or (lambda message: None)
    table, fitted, zones, splits, preds, seconds = [], {}, {}, {}, {}, {}
    ofi = [i for i, n in enumerate(data.feature_names) if n.startswith(OFI_PREFIX)]
    deep_rows: dict[str, tuple] = {}
    for h in horizons:
        ret = data.returns[h]
        labelled = np.isfinite(ret) & (data.pos_in_day >= window - 1)
        split = time_split(
            data.ts_ns, data.day, data.ends_ns[h], labelled, train_fraction, valid_fraction
        )
        splits[h] = split
        zone = (dead_zones_bp or {}).get(h)
        zones[h] = dead_zone(ret[split.train], stationary_share) if zone is None else float(zone)
        y = classes(np.nan_to_num(ret), zones[h])
        tr, va, te = split.train, split.valid, split.test
        deep_rows[h] = (tr, va, te, y)
        for name in models:
            if name == "deeplob":
                continue
            started = time.perf_counter()
            if name == "majority":
                model = majority().fit(data.X[tr], y[tr])
                pred = model.predict(data.X[te])
            elif name == "persistence":
                model = None
                pred = classes(np.nan_to_num(data.past_returns[h][te]), zones[h])
            elif name == "cks_ofi":
                model = OFIRegressionClassifier().fit(data.X[tr][:, ofi], y[tr], returns=ret[tr])
                pred = model.predict(data.X[te][:, ofi])
            elif name == "lightgbm":
                model = fit_lightgbm(data.X[tr], y[tr], data.X[va], y[va], seed=seed, n_jobs=n_jobs)
                pred = model.predict(data.X[te])
            else:
                raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
            took = time.perf_counter() - started
            if model is not None:
                fitted[(name, h)] = model
            preds[(name, h)] = pred
            table.append(_row(name, h, y[te], pred, len(tr), zones[h], took, split))
            log(f"{name} {h}: macro-F1 {table[-1]['macro_f1']:.3f} ({took:.1f} s)")
    if "deeplob" in models and data.snapshots is not None:
        started = time.perf_counter()
        train = np.unique(np.concatenate([deep_rows[h][0] for h in horizons]))
        valid = np.unique(np.concatenate([deep_rows[h][1] for h in horizons]))
        Y = _targets(train, {h: (deep_rows[h][0], deep_rows[h][3]) for h in horizons})
        Yv = _targets(valid, {h: (deep_rows[h][1], deep_rows[h][3]) for h in horizons})
        levels = data.snapshots.shape[1] // 4
        net = DeepLOBClassifier(levels=levels, window=window, random_state=seed, **(deeplob or {}))
        net.fit(data.snapshots, train, Y, valid, Yv, log=log)
        fitted[("deeplob", "all")] = net
        seconds["deeplob_train"] = net.train_seconds_
        tests = np.unique(np.concatenate([deep_rows[h][2] for h in horizons]))
        proba = net.predict_proba(data.snapshots, tests)  # one pass for every horizon
        for j, h in enumerate(horizons):
            tr, _, te, y = deep_rows[h]
            pred = net.classes_[np.argmax(proba[np.searchsorted(tests, te), j], axis=-1)]
            preds[("deeplob", h)] = pred
            took = time.perf_counter() - started
            table.append(_row("deeplob", h, y[te], pred, len(tr), zones[h], took, splits[h]))
            log(f"deeplob {h}: macro-F1 {table[-1]['macro_f1']:.3f}")
    return LobResults(table, fitted, zones, splits, preds, seconds)


def _targets(rows: np.ndarray, by_horizon: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Classes per horizon for ``rows``; NaN where the row is not in that horizon's set."""
    Y = np.full((len(rows), len(by_horizon)), np.nan)
    for j, (kept, y) in enumerate(by_horizon.values()):
        inside = np.isin(rows, kept)
        Y[inside, j] = y[rows[inside]]
    return Y


def _row(model, horizon, y, pred, n_train, zone, seconds, split: Split) -> dict:
    shares = {
        f"share_{c}": float(np.mean(y == v)) if len(y) else np.nan
        for c, v in (("down", DOWN), ("flat", FLAT), ("up", UP))
    }
    return {
        "model": model,
        "horizon": horizon,
        **(scores(y, pred) if len(y) else {"accuracy": np.nan, "macro_f1": np.nan}),
        "n_train": int(n_train),
        "n_test": int(len(y)),
        "purged": split.purged,
        "dead_zone_bp": zone,
        **shares,
        "fit_seconds": round(float(seconds), 2),
    }
