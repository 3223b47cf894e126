"""PyTorch regressors with the scikit-learn contract: MLP, LSTM, TCN and Transformer.

Every net takes the flattened look-back windows that ``models.learning.dataset.window_inputs`` builds:
``X`` of shape ``(n, window * n_features)``, oldest lag first, today's features last, and
reshapes them to ``(n, window, n_features)``. The MLP reads today's features only.

Why hand-written: skorch would wrap the training loop, but it is one more dependency for a loop
of twenty lines, and it hides what we need to control for reproducibility (the generator that
shuffles batches, deterministic kernels, NaN handling learnt on the training rows only).

Runs on the GPU when one is present (``device="auto"``) and on the CPU otherwise. On the CPU,
with the same seed and thread count, two fits give bit-identical predictions (tested).
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from models.learning.dataset import check_sample_weight

ARCHITECTURES = ("mlp", "lstm", "tcn", "transformer")


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the block, then as it was (the setting is process-wide).

    For the small nets (VaR, correlation, the seed strategies): their tensors are a few
    thousand rows, too small to split, and two threads on two cores that other work also uses
    only wait for each other. Measured on the neural VaR fit (3,000 days, 100 epochs) beside
    another busy process: 0.38 s on one thread, 2.3 s on two.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_device(device: str) -> torch.device:
    """``auto`` picks CUDA when a GPU is present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _MLP(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        blocks: list[nn.Module] = []
        width = n_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*blocks, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, window, features)
        return self.body(x[:, -1, :]).squeeze(-1)


class _LSTM(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.rnn = nn.LSTM(
            n_features,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1, :]).squeeze(-1)


class _CausalBlock(nn.Module):
    """A dilated causal convolution with a residual connection (Bai et al., 2018)."""

    def __init__(self, channels: int, dilation: int, kernel: int, dropout: float):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels, time)
        y = self.conv(nn.functional.pad(x, (self.pad, 0)))
        return x + self.drop(torch.relu(y))


class _TCN(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float, kernel: int = 3):
        super().__init__()
        self.inp = nn.Conv1d(n_features, hidden, 1)
        self.blocks = nn.Sequential(
            *(_CausalBlock(hidden, 2**i, kernel, dropout) for i in range(layers))
        )
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.inp(x.transpose(1, 2)))
        return self.head(h[:, :, -1]).squeeze(-1)


class _Transformer(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float, window: int):
        super().__init__()
        heads = 4 if hidden % 4 == 0 else 1
        self.inp = nn.Linear(n_features, hidden)
        self.position = nn.Parameter(torch.zeros(1, window, hidden))
        layer = nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=2 * hidden, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.inp(x) + self.position[:, -x.shape[1] :, :])
        return self.head(h[:, -1, :]).squeeze(-1)


class TorchRegressor(RegressorMixin, BaseEstimator):
    """A small neural regressor over look-back windows of features.

    Parameters
    ----------
    arch : {"mlp", "lstm", "tcn", "transformer"}
    window : int
        Time steps in each input row (``X`` has ``window * n_features`` columns).
    hidden, layers, dropout : network size.
    lr, weight_decay, epochs, batch_size : AdamW training.
    random_state : int
        Seeds the weights, dropout and batch order.
    device : str
        ``auto`` (GPU when present), ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        arch: str = "mlp",
        window: int = 1,
        hidden: int = 32,
        layers: int = 2,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        epochs: int = 5,
        batch_size: int = 1024,
        random_state: int = 0,
        device: str = "auto",
    ):
        self.arch = arch
        self.window = window
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing input becomes the training mean
        return tags

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        """Standardise with the training rows' statistics; a missing (or infinite) value becomes
        the mean."""
        z = (np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_
        z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.from_numpy(z.reshape(len(z), self.window, -1))

    def _network(self, n_features: int) -> nn.Module:
        if self.arch == "mlp":
            return _MLP(n_features, self.hidden, self.layers, self.dropout)
        if self.arch == "lstm":
            return _LSTM(n_features, self.hidden, self.layers, self.dropout)
        if self.arch == "tcn":
            return _TCN(n_features, self.hidden, self.layers, self.dropout)
        if self.arch == "transformer":
            return _Transformer(n_features, self.hidden, self.layers, self.dropout, self.window)
        raise ValueError(f"unknown architecture {self.arch!r}; known: {ARCHITECTURES}")

    def fit(self, X, y, sample_weight=None) -> "TorchRegressor":
        """Minimise the (sample-weighted, when weights are given) mean squared error."""
        # infinities pass: a ratio over a zero (volume, say) is read as missing, like NaN
        X, y = validate_data(
            self, X, y, dtype=[np.float32, np.float64], ensure_all_finite=False, y_numeric=True
        )
        X = X.astype(np.float32, copy=False)
        if X.shape[1] % self.window:
            raise ValueError(f"X has {X.shape[1]} columns, not a multiple of window={self.window}")
        torch.manual_seed(self.random_state)
        generator = torch.Generator().manual_seed(self.random_state)
        device = pick_device(self.device)
        self.device_ = device.type
        with np.errstate(invalid="ignore"):
            if np.isinf(X).any():  # a ratio over a zero (volume, say): missing, like NaN
                X = np.where(np.isinf(X), np.float32(np.nan), X)
            self.mean_ = np.nan_to_num(np.nanmean(X, axis=0, dtype=np.float64)).astype(np.float32)
            std = np.nan_to_num(np.nanstd(X, axis=0, dtype=np.float64)).astype(np.float32)
        self.scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        # the whole training set moves to the device once; batches are gathered there
        inputs = self._tensor(X).to(device)
        target = torch.as_tensor(np.asarray(y, dtype=np.float32)).to(device)
        weight = None
        if sample_weight is not None:
            w = check_sample_weight(sample_weight, len(X))
            # scaled to mean 1, so the learning rate means the same with and without weights
            weight = torch.as_tensor((w / w.mean()).astype(np.float32)).to(device)
        net = self._network(inputs.shape[2]).to(device)
        optimiser = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n_batches = math.ceil(len(inputs) / self.batch_size)
        self.loss_curve_: list[float] = []
        net.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(inputs), generator=generator).to(device)
            total = torch.zeros((), device=device)
            for b in range(n_batches):
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                optimiser.zero_grad()
                if weight is None:
                    loss = nn.functional.mse_loss(net(inputs[idx]), target[idx])
                else:
                    loss = (weight[idx] * (net(inputs[idx]) - target[idx]) ** 2).mean()
                loss.backward()
                optimiser.step()
                total += loss.detach() * len(idx)
            self.loss_curve_.append(float(total) / len(inputs))  # one sync per epoch
        self.net_ = net.to("cpu").eval()
        return self

    def __getstate__(self) -> dict:
        """Plain arrays instead of the torch module, so skops (MLflow's safe format) can save
        and load the fitted net without trusting any torch type."""
        state = self.__dict__.copy()
        net = state.pop("net_", None)
        if net is not None:
            state["net_weights_"] = {k: v.numpy().copy() for k, v in net.state_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        weights = state.pop("net_weights_", None)
        self.__dict__.update(state)
        if weights is not None:
            net = self._network(self.n_features_in_ // self.window)
            net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
            self.net_ = net.eval()

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "net_")
        X = validate_data(  # no rows in, none out (a day nothing is scored on)
            self,
            X,
            reset=False,
            dtype=[np.float32, np.float64],
            ensure_all_finite=False,
            ensure_min_samples=0,
        )
        if not len(X):
            return np.empty(0)
        inputs = self._tensor(X)
        with torch.no_grad():
            out = [self.net_(inputs[i : i + 8192]) for i in range(0, len(inputs), 8192)]
        return torch.cat(out).numpy().astype(np.float64)
