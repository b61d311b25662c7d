"""RL parameter adjustment speed (not a test): env steps/s alone, and PPO training with 1 and with 4 envs.

Data: the real Binance BTC/USDT 1m year 2024 from the shared folder, or without it the bundled six-week sample,
read with ``read_bar_file`` and ``validate_bars``; one step = one UTC day. Predictions are the fake but plausible
ones of ``bench/policy_search.py`` (a noisy function of the future 15-bar return; vol = trailing realized vol).

One core: the process pins itself to one CPU, sets ``NUMBA_NUM_THREADS``/``OMP_NUM_THREADS`` to 1, and training
runs torch on one thread (as :func:`scalpbot.ml.rl_agent.train_agent` does). Reported, in env steps (windows)
per second: the env alone with random actions (first pass, which builds each day's evaluator, and warm), PPO
with 1 env and with 4 envs (``DummyVecEnv``), and as the peer measured in the same run PPO on a null env with the
same spaces that does no work (PPO's own ceiling), so the env's share of training time is visible. Last, the
agent trained with 4 envs against the static base params on the held-out last quarter of the data.

Usage: python bench/rl.py [--file PATH] [--timesteps N]
"""

from __future__ import annotations

# isort: off
import _single_core  # noqa: F401  (first: pins the process to one core before any import)

# isort: on
import argparse
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from _data import year_or_sample
from policy_search import fake_predictions
from scalpbot.adapters.marketdata.files import read_bar_file
from scalpbot.core.bars import validate_bars
from scalpbot.core.evaluation import PolicyWindow
from scalpbot.core.gate import GateRules
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.ml.rl_agent import compare_on_holdout, judge_on_holdout, train_agent
from scalpbot.ml.rl_env import ParamAdjustEnv

BASE = StrategyParams(entry_threshold=0.5)


class NullEnv(gym.Env[np.ndarray, np.ndarray]):
    """The spaces of ``ParamAdjustEnv`` and no work: zero observations and rewards, 30-step episodes."""

    def __init__(self, like: ParamAdjustEnv) -> None:
        self.observation_space = like.observation_space
        self.action_space = like.action_space
        self._zero = np.zeros(len(like.settings.observation_names()), dtype=np.float32)
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._zero, {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self._zero, 0.0, False, self._t >= 30, {}


def env_rate(env: ParamAdjustEnv, steps: int) -> float:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1.0, 1.0, (steps, len(env.bounds.names))).astype(np.float32)
    env.reset(seed=0)
    tick = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - tick)


def null_ppo_rate(like: ParamAdjustEnv, n_envs: int, timesteps: int) -> float:
    torch.set_num_threads(1)
    envs = DummyVecEnv([lambda: NullEnv(like) for _ in range(n_envs)])
    model = PPO(
        "MlpPolicy",
        envs,
        n_steps=64,
        batch_size=64,
        n_epochs=5,
        policy_kwargs={"net_arch": {"pi": [32, 32], "vf": [32, 32]}},
        seed=0,
        device="cpu",
    )
    tick = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    return model.num_timesteps / (time.perf_counter() - tick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, default=year_or_sample())
    parser.add_argument("--timesteps", type=int, default=8192)
    args = parser.parse_args()
    path = args.file
    tick = time.perf_counter()
    bars = validate_bars(read_bar_file(path), "1m", source=path.name)
    probs, vol = fake_predictions(bars["close"].to_numpy())
    window = PolicyWindow.from_frame(bars, probs, vol)
    volume = bars["volume"].to_numpy()
    print(
        f"data: {path.name}, {len(window):,} bars, {window.day_ends.shape[0]} days, loaded in "
        f"{time.perf_counter() - tick:.1f} s; cpu affinity {os.sched_getaffinity(0)}; torch {torch.__version__}"
    )
    bounds = ParamBounds.default()
    split = int(window.day_ends[int(window.day_ends.shape[0] * 0.75)]) + 1
    train_window, train_volume = window.slice(0, split), volume[:split]

    env = ParamAdjustEnv(train_window, BASE, bounds, volume=train_volume)
    n = env.n_windows
    cold = env_rate(env, n)
    warm = env_rate(env, 5000)
    print(f"env alone ({n} day windows): first pass {cold:,.0f} steps/s, warm {warm:,.0f} steps/s")

    rates: dict[int, float] = {}
    agent = None
    for n_envs in (1, 4):
        null = null_ppo_rate(env, n_envs, args.timesteps)
        tick = time.perf_counter()
        agent = train_agent(
            train_window, BASE, bounds, timesteps=args.timesteps, n_envs=n_envs, seed=0, volume=train_volume
        )
        rates[n_envs] = agent.timesteps / (time.perf_counter() - tick)
        print(
            f"PPO, {n_envs} env{'s' if n_envs > 1 else ' '}: {rates[n_envs]:,.0f} steps/s "
            f"({agent.timesteps:,} steps, env construction included); null env {null:,.0f} steps/s; "
            f"env share of training time {1 - rates[n_envs] / null:.0%}"
        )
    print(f"4 envs / 1 env: {rates[4] / rates[1]:.2f}x")

    assert agent is not None
    first = int(window.day_ends[int(window.day_ends.shape[0] * 0.75) - agent.settings.warmup]) + 1
    tick = time.perf_counter()
    result = compare_on_holdout(agent, window.slice(first, len(window)), BASE, bounds, volume=volume[first:])
    rl, static = result["rl"], result["static"]
    print(
        f"held-out {len(result['windows'])} days ({time.perf_counter() - tick:.2f} s): "
        f"RL {rl['total_return']:+.2%} (Sharpe {rl['sharpe'] or float('nan'):.2f}, {rl['trades']:,} trades), "
        f"static {static['total_return']:+.2%} (Sharpe {static['sharpe'] or float('nan'):.2f}, "
        f"{static['trades']:,} trades)"
    )
    print("gate:", judge_on_holdout(result, GateRules(min_trades=30)).reason)


if __name__ == "__main__":
    main()
