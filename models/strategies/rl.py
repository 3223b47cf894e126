"""RL portfolio: a DQN (stable-baselines3, PyTorch) that chooses, every ``every`` days, a mix
of two books (the ML long-short book and the risk-parity book) and cash.

The environment (gymnasium's API) replays history: the state is each book's trailing 5-, 20-
and 60-day return and 20-day volatility at a decision day's close, plus the mix held; the
reward is the chosen mix's return over the next period, less a switching cost on the change of
mix. Walk-forward: the agent is retrained every ``refit_every`` days on the decisions whose
reward period had ended before, and acts, greedily, until the next refit. What it earns is then
measured by turning its decisions into weights (:func:`mix_books`) and running them through the
backtest with the full cost model, not by the environment's approximate rewards.
"""

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import polars as pl
from gymnasium import spaces
from numpy.lib.stride_tricks import sliding_window_view
from stable_baselines3 import DQN

from models.types import DATE, SYMBOL

# (ML long-short, risk parity) weights of each action; the rest is cash
ACTIONS: tuple[tuple[float, float], ...] = (
    (1.0, 0.0),
    (0.0, 1.0),
    (0.5, 0.5),
    (0.0, 0.5),
    (0.0, 0.0),
)
DEFAULT_ACTION = 1  # risk parity, held until the agent has enough decisions to learn from


def book_features(R: np.ndarray) -> np.ndarray:
    """``(days, 4 * books)``: each book's trailing 5-, 20- and 60-day compounded return and
    20-day volatility up to and including each day (NaN before 60 days)."""
    growth = np.vstack([np.zeros(R.shape[1]), np.cumsum(np.log1p(R), axis=0)])
    out = np.full((len(R), 4 * R.shape[1]), np.nan)
    for i, n in enumerate((5, 20, 60)):
        out[n - 1 :, i * R.shape[1] : (i + 1) * R.shape[1]] = growth[n:] - growth[:-n]
    if len(R) >= 20:
        out[19:, 3 * R.shape[1] :] = sliding_window_view(R, 20, axis=0).std(axis=2, ddof=1)
    out[:59] = np.nan
    return out


class BookMixEnv(gym.Env):
    """One episode walks through the decisions in order. Observation: the decision day's
    (standardised) book features and a one-hot of the mix held; action: an index of
    ``ACTIONS``; reward: the mix's return over the period less ``switch_cost`` per unit of mix
    changed."""

    def __init__(self, features: np.ndarray, period_returns: np.ndarray, switch_cost: float):
        self.features = features.astype(np.float32)
        self.period_returns = period_returns
        self.switch_cost = switch_cost
        self.mixes = np.array(ACTIONS)
        self.observation_space = spaces.Box(
            -np.inf, np.inf, (features.shape[1] + len(ACTIONS),), np.float32
        )
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.t, self.held = 0, len(ACTIONS) - 1

    def _observation(self) -> np.ndarray:
        onehot = np.zeros(len(ACTIONS), np.float32)
        onehot[self.held] = 1.0
        return np.concatenate([self.features[self.t], onehot])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.held = 0, len(ACTIONS) - 1  # start in cash
        return self._observation(), {}

    def step(self, action):
        action = int(action)
        change = np.abs(self.mixes[action] - self.mixes[self.held]).sum()
        reward = float(self.mixes[action] @ self.period_returns[self.t] - self.switch_cost * change)
        self.held = action
        self.t += 1
        done = self.t >= len(self.features)
        if done:
            self.t -= 1  # the terminal observation repeats the last day's
        return self._observation(), reward * 100.0, done, False, {}


def dqn_decisions(
    book_returns: np.ndarray,
    dates: np.ndarray,
    *,
    every: int = 5,
    lag: int = 1,
    switch_cost: float = 0.001,
    refit_every: int = 252,
    min_train_decisions: int = 48,
    timesteps: int = 3000,
    seed: int = 0,
) -> pl.DataFrame:
    """``[date, action, ls, rp]``: the agent's mix on each decision day (every ``every`` days;
    the risk-parity book until ``min_train_decisions`` past decisions with 60 days of history
    have rewards to learn from).

    ``book_returns`` is ``(days, 2)``: the daily net returns of the ML long-short and the
    risk-parity books on ``dates``. A decision at day ``t``'s close is traded ``lag`` days later
    and earns the ``every`` days after that.
    """
    R = np.nan_to_num(book_returns)
    features = book_features(R)
    decide = np.arange(0, len(R) - lag - 1, every)
    usable = ~np.isnan(features[decide]).any(axis=1)
    growth = np.vstack([np.zeros(R.shape[1]), np.cumsum(np.log1p(R), axis=0)])
    ends = np.minimum(decide + lag + every, len(R) - 1)
    period = np.expm1(growth[ends + 1] - growth[decide + lag + 1])
    rows, model, fitted_at, held = [], None, None, len(ACTIONS) - 1
    for i, t in enumerate(decide):
        if model is None or t - fitted_at >= refit_every:
            # rewards already realised at day t, on days with 60 days of history
            known = np.flatnonzero((ends[:i] <= t) & usable[:i])
            if len(known) >= min_train_decisions:
                mean = features[decide[known]].mean(axis=0)
                scale = features[decide[known]].std(axis=0) + 1e-9
                env = BookMixEnv(
                    (features[decide[known]] - mean) / scale, period[known], switch_cost
                )
                model = DQN(
                    "MlpPolicy",
                    env,
                    learning_rate=1e-3,
                    buffer_size=10_000,
                    learning_starts=min(200, timesteps // 4),
                    batch_size=64,
                    gamma=0.9,
                    target_update_interval=250,
                    exploration_fraction=0.3,
                    policy_kwargs={"net_arch": [32, 32]},
                    seed=seed,
                    device="cpu",
                )
                model.learn(total_timesteps=timesteps)
                fitted_at = t
        if model is None:  # not enough history to learn from yet: hold the risk-parity book
            held = DEFAULT_ACTION
            rows.append((t, held))
            continue
        onehot = np.zeros(len(ACTIONS), np.float32)
        onehot[held] = 1.0
        obs = np.concatenate([((features[t] - mean) / scale).astype(np.float32), onehot])
        held = int(model.predict(obs, deterministic=True)[0])
        rows.append((t, held))
    at, actions = (
        (np.array(x, dtype=np.int64) for x in zip(*rows, strict=True))
        if rows
        else (np.empty(0, np.int64),) * 2
    )
    mixes = np.array(ACTIONS)[actions].reshape(-1, 2)
    return pl.DataFrame(
        {DATE: dates[at], "action": actions, "ls": mixes[:, 0], "rp": mixes[:, 1]}
    ).with_columns(pl.col(DATE).cast(pl.Date))


def mix_books(decisions: pl.DataFrame, books: Sequence[tuple[str, pl.DataFrame]]) -> pl.DataFrame:
    """``[date, symbol, weight]`` on each decision day: the sum over ``books`` (``(column of
    decisions, [date, symbol, weight] targets)``) of the book's latest targets on or before the
    day times its share in the decision."""
    parts = []
    for column, weights in books:
        latest = (
            decisions.select(DATE, column)
            .sort(DATE)
            .join_asof(
                weights.select(pl.col(DATE).alias("target_date"), DATE).unique().sort(DATE),
                on=DATE,
                strategy="backward",
            )
            .join(weights.rename({DATE: "target_date"}), on="target_date")
        )
        parts.append(
            latest.select(DATE, SYMBOL, (pl.col("weight") * pl.col(column)).alias("weight"))
        )
    # an all-cash decision keeps its (zero-weight) rows, so the backtest sells everything;
    # a day before any book's first target has nothing to hold and needs none
    return pl.concat(parts).group_by(DATE, SYMBOL).agg(pl.col("weight").sum()).sort(DATE, SYMBOL)
