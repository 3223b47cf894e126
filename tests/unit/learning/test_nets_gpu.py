"""The nets on a CUDA device when one is present (skipped otherwise; CI has none).

Run by hand on a GPU machine: ``pytest --noconftest tests/unit/learning/test_nets_gpu.py -s``.
"""

import time

import numpy as np
import pytest
import torch

from models.learning.nets import ARCHITECTURES, TorchRegressor

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _data(n: int = 200_000, window: int = 10, features: int = 40):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, window * features)).astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan
    y = 0.1 * np.nan_to_num(X[:, -features]) + rng.normal(size=n)
    return X, y.astype(np.float32)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_net_trains_on_the_gpu_and_repeats_closely(arch):
    X, y = _data()
    window = 1 if arch == "mlp" else 10
    X = X[:, -window * 40 :]
    timings = {}
    preds = {}
    for device in ("cuda", "cuda", "cpu"):
        started = time.perf_counter()
        model = TorchRegressor(arch=arch, window=window, epochs=2, random_state=3, device=device)
        model.fit(X, y)
        timings.setdefault(device, time.perf_counter() - started)
        assert model.device_ == device
        preds.setdefault(device, []).append(model.predict(X[-20_000:]))
    gpu_a, gpu_b = preds["cuda"]
    assert np.isfinite(gpu_a).all()
    repeat = float(np.abs(gpu_a - gpu_b).max())
    vs_cpu = float(np.corrcoef(gpu_a, preds["cpu"][0])[0, 1])
    print(
        f"{arch}: GPU fit {timings['cuda']:.1f} s vs CPU {timings['cpu']:.1f} s; "
        f"GPU repeat max |diff| {repeat:.2e}; corr(GPU, CPU predictions) {vs_cpu:.4f}"
    )
    assert repeat < 1e-3  # cuDNN kernels are not bit-deterministic; close, not identical
    assert vs_cpu > 0.9
