"""How much of a backtest's Sharpe ratio survives the search that found it.

* **Deflated Sharpe ratio** (Bailey & López de Prado 2014): the probability that the selected
  strategy's true Sharpe ratio is above the Sharpe ratio the best of ``n_trials`` skill-less
  trials would show by luck. skfolio implements both halves (``expected_max_sharpe_ratio`` and
  ``probabilistic_sharpe_ratio``); here they are only combined so that the trial count can
  include trials whose returns we do not have (Optuna trials of the models behind a signal).
* **Probability of backtest overfitting** by combinatorially symmetric cross-validation
  (Bailey, Borwein, López de Prado & Zhu 2015). No maintained library implements it (mlfinlab's
  public code is a stub, ``pypbo`` is unmaintained), so it is written here, vectorised over all
  ``C(S, S/2)`` splits at once from per-block sums.
"""

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import rankdata
from skfolio.measures import expected_max_sharpe_ratio, probabilistic_sharpe_ratio


def sharpe(returns: np.ndarray) -> np.ndarray:
    """Per-period (not annualised) Sharpe ratio of each column, rf = 0."""
    returns = np.asarray(returns, dtype=float)
    std = returns.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, returns.mean(axis=0) / std, np.nan)


def deflated_sharpe(
    returns: np.ndarray, trial_sharpes: np.ndarray, n_trials: int | None = None
) -> dict[str, float]:
    """The deflated Sharpe ratio of ``returns`` (the selected strategy, per period).

    Parameters
    ----------
    returns : per-period returns of the selected strategy
    trial_sharpes : per-period Sharpe ratios of every trial whose returns were measured; their
        standard deviation sets the spread of luck
    n_trials : every trial of the search, measured or not (at least ``len(trial_sharpes)``)

    Returns
    -------
    ``dsr`` (probability, significant at 0.95), ``sr0`` (the expected maximum Sharpe ratio of
    ``n_trials`` skill-less trials, per period), ``psr`` (probability that the true Sharpe
    ratio exceeds zero, no deflation), ``n_trials`` and ``trial_sharpe_std``.
    """
    trial_sharpes = np.asarray(trial_sharpes, dtype=float)
    trial_sharpes = trial_sharpes[np.isfinite(trial_sharpes)]
    n = max(int(n_trials or 0), len(trial_sharpes), 1)
    std = float(trial_sharpes.std(ddof=1)) if len(trial_sharpes) > 1 else 0.0
    sr0 = float(expected_max_sharpe_ratio(n, std))
    return {
        "dsr": float(probabilistic_sharpe_ratio(returns, benchmark_sharpe_ratio=sr0)),
        "psr": float(probabilistic_sharpe_ratio(returns)),
        "sr0": sr0,
        "n_trials": float(n),
        "trial_sharpe_std": std,
    }


@dataclass(frozen=True)
class PBO:
    pbo: float  # share of splits whose in-sample best ranks in the bottom half out of sample
    logits: np.ndarray  # lambda per split: log(w / (1 - w)), w the relative OOS rank
    is_sharpe: np.ndarray  # in-sample Sharpe of the selected trial, per split
    oos_sharpe: np.ndarray  # its out-of-sample Sharpe, per split
    prob_oos_loss: float  # share of splits where the selected trial loses out of sample
    degradation_slope: float  # OLS slope of OOS on IS Sharpe of the selected trials
    n_splits: int


def probability_of_backtest_overfitting(trial_returns: np.ndarray, n_blocks: int = 16) -> PBO:
    """CSCV estimate of the probability of backtest overfitting.

    ``trial_returns`` is ``(T, N)``: the per-period returns of ``N`` trials (strategy variants)
    over the same ``T`` periods. The rows are cut into ``n_blocks`` contiguous blocks of equal
    size (the oldest ``T mod n_blocks`` rows are dropped); every choice of half the blocks is
    an in-sample set and the other half its out-of-sample set. In each split the trial with the
    best in-sample Sharpe ratio is selected and its out-of-sample rank ``w`` in ``(0, 1)`` taken
    (``rank / (N + 1)``); PBO is the share of splits with ``log(w / (1 - w)) <= 0``, i.e. the
    selection does no better than the median trial out of sample.
    """
    M = np.asarray(trial_returns, dtype=float)
    if M.ndim != 2 or M.shape[1] < 2:
        raise ValueError("PBO needs a (periods, trials) matrix with at least two trials")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be even and >= 2, got {n_blocks}")
    if np.isnan(M).any():
        raise ValueError("trial returns contain NaN: align the trials on common periods first")
    size = len(M) // n_blocks
    if size < 2:
        raise ValueError(f"{len(M)} periods are too few for {n_blocks} blocks")
    blocks = M[len(M) - size * n_blocks :].reshape(n_blocks, size, M.shape[1])
    sums, squares = blocks.sum(axis=1), (blocks**2).sum(axis=1)  # (S, N)
    picks = list(combinations(range(n_blocks), n_blocks // 2))
    chosen = np.zeros((len(picks), n_blocks))
    chosen[np.repeat(np.arange(len(picks)), n_blocks // 2), np.ravel(picks)] = 1.0
    count = size * n_blocks // 2

    def split_sharpe(mask: np.ndarray) -> np.ndarray:  # (K, N) from the blocks in ``mask``
        total, total_sq = mask @ sums, mask @ squares
        mean = total / count
        var = (total_sq - count * mean**2) / (count - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(var > 0, mean / np.sqrt(np.maximum(var, 0.0)), 0.0)

    is_sr, oos_sr = split_sharpe(chosen), split_sharpe(1.0 - chosen)
    best = np.argmax(is_sr, axis=1)
    rows = np.arange(len(best))
    omega = rankdata(oos_sr, axis=1)[rows, best] / (M.shape[1] + 1)
    logits = np.log(omega / (1.0 - omega))
    x, y = is_sr[rows, best], oos_sr[rows, best]
    slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else np.nan
    return PBO(
        pbo=float(np.mean(logits <= 0)),
        logits=logits,
        is_sharpe=x,
        oos_sharpe=y,
        prob_oos_loss=float(np.mean(y < 0)),
        degradation_slope=slope,
        n_splits=len(picks),
    )
