"""Train a PPO agent that adjusts ``StrategyParams`` per window, propose params with it, and judge it on held-out data.

The agent (stable-baselines3 PPO, ``MlpPolicy`` with two hidden layers of 32 for actor and critic, 5 epochs per
update, ``gamma`` 0.9 and ``gae_lambda`` 0.9: a window's params barely affect later windows) learns in
:class:`~scalpbot.ml.rl_env.ParamAdjustEnv` (observation, action and reward defined there) on a training window.
Its proposals go live only through the promotion gate: :func:`compare_on_holdout` replays it step by step, as
live, on held-out windows beside the static base params, and :func:`judge_on_holdout` weighs the result with
:func:`scalpbot.core.gate.judge`: RL must trade enough, over enough days, and beat static by more than noise
(stationary-bootstrap p-value of the per-window excess returns; its DSR is the PSR of one candidate).

Torch runs on one thread while training and predicting (faster on this project's small, shared machines); the
previous thread count is restored afterwards. Seeding PPO also seeds Python's, numpy's and torch's global
generators (stable-baselines3 does so).

An agent travels with its release as :meth:`TrainedAgent.save` bytes: a zip of ``agent.json`` (format, settings,
tuned field names, observation names, timesteps) and ``ppo.zip`` (stable-baselines3's own save). That inner zip
holds pickled objects: load only artifacts from your own release store, whose checksums the release verifies.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from scalpbot.core.backtest.enums import NO_FUNDING, NO_ORDER_RULES, OrderRules
from scalpbot.core.costs import TradingCosts
from scalpbot.core.evaluation import PolicyWindow
from scalpbot.core.gate import GateRules, GateVerdict, judge
from scalpbot.core.metrics import sharpe_ratio
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.errors import ConfigError, CorruptArtifactError, ModelError
from scalpbot.ml.evidence import TrialSelection, gate_statistics
from scalpbot.ml.rl_env import ParamAdjustEnv, RlSettings

__all__ = ["TrainedAgent", "compare_on_holdout", "judge_on_holdout", "propose", "train_agent"]

_FORMAT = 2
_META, _POLICY = "agent.json", "ppo.zip"
_NET_ARCH = {"pi": [32, 32], "vf": [32, 32]}
_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True, eq=False)
class TrainedAgent:
    """A trained PPO agent with the env settings and tuned fields (``bounds.names``) it was trained on."""

    model: PPO
    settings: RlSettings
    param_names: tuple[str, ...]
    timesteps: int

    def act(self, observation: np.ndarray) -> np.ndarray:
        """Return the deterministic action (the policy's mean, in ``[-1, 1]``) for one observation."""
        with _one_torch_thread():
            action, _ = self.model.predict(observation, deterministic=True)
        return np.asarray(action, dtype=np.float32)

    def save(self) -> bytes:
        """Return the agent as zip bytes (``agent.json`` + stable-baselines3's ``ppo.zip``) for the release."""
        policy = io.BytesIO()
        self.model.save(policy)
        meta = {
            "format": _FORMAT,
            "settings": self.settings.to_dict(),
            "param_names": list(self.param_names),
            "observation_names": list(self.settings.observation_names()),
            "timesteps": self.timesteps,
        }
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(zipfile.ZipInfo(_META, _EPOCH), json.dumps(meta, sort_keys=True))
            archive.writestr(zipfile.ZipInfo(_POLICY, _EPOCH), policy.getvalue())
        return out.getvalue()

    @classmethod
    def load(cls, data: bytes) -> TrainedAgent:
        """Return the agent ``save()`` wrote; ``CorruptArtifactError`` if the bytes are not such an agent."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                meta = json.loads(archive.read(_META))
                policy = archive.read(_POLICY)
        except (zipfile.BadZipFile, KeyError, ValueError) as e:
            raise CorruptArtifactError(f"RL agent artifact is not a scalpbot agent zip: {e}") from e
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise CorruptArtifactError(
                f"RL agent artifact has format {found!r}, not {_FORMAT}; retrain the agent"
            )
        try:
            settings = RlSettings.from_dict(meta["settings"])
            names = tuple(str(name) for name in meta["param_names"])
            timesteps = int(meta["timesteps"])
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise CorruptArtifactError(f"RL agent artifact's {_META} is invalid: {e}") from e
        try:
            with _one_torch_thread():
                model = PPO.load(io.BytesIO(policy), device="cpu")
        except Exception as e:  # stable-baselines3 raises many kinds on a damaged zip
            raise CorruptArtifactError(f"RL agent artifact's {_POLICY} cannot be loaded: {e}") from e
        if model.action_space.shape != (len(names),) or model.observation_space.shape != (
            len(settings.observation_names()),
        ):
            raise CorruptArtifactError("RL agent artifact's policy shapes do not match its agent.json")
        return cls(model, settings, names, timesteps)


def _env_factory(env: ParamAdjustEnv) -> Callable[[], ParamAdjustEnv]:
    return lambda: env


def train_agent(
    window: PolicyWindow,
    base: StrategyParams,
    bounds: ParamBounds,
    *,
    timesteps: int,
    n_envs: int = 4,
    seed: int = 0,
    fee: float = 0.0004,
    slippage: float = 0.0,
    rules: OrderRules = NO_ORDER_RULES,
    equity: float = 1.0,
    volume: np.ndarray | None = None,
    settings: RlSettings | None = None,
    n_steps: int = 64,
    funding: np.ndarray = NO_FUNDING,
    learning_rate: float = 3e-4,
) -> TrainedAgent:
    """Train PPO for at least ``timesteps`` env steps (windows) on ``window``; return the agent.

    ``n_envs`` copies of the env run in a ``DummyVecEnv``, each seeded from ``seed``; PPO collects ``n_steps``
    steps per env per update (so ``timesteps`` rounds up to a multiple of ``n_steps * n_envs``). ``fee`` is a
    fraction of notional per fill, ``slippage`` a fraction of price, ``rules`` the venue's order rules applied
    at ``equity`` (quote currency); ``volume`` one value per bar of ``window``; ``funding`` (perpetual swaps) the
    rate due at each bar's open of ``window`` (empty: none), charged in every episode.
    """
    if not (isinstance(timesteps, int) and timesteps >= 1):
        raise ConfigError(
            f"timesteps must be a whole number of env steps >= 1, e.g. 20000; got {timesteps!r}"
        )
    if not (isinstance(n_envs, int) and n_envs >= 1):
        raise ConfigError(f"n_envs must be a whole number >= 1, e.g. 4; got {n_envs!r}")
    if not (isinstance(n_steps, int) and n_steps >= 2):
        raise ConfigError(f"n_steps must be a whole number >= 2 (steps per env per update); got {n_steps!r}")
    if not (math.isfinite(learning_rate) and learning_rate > 0.0):
        raise ConfigError(f"learning_rate must be > 0, e.g. 3e-4; got {learning_rate!r}")
    settings = settings or RlSettings()
    envs = [
        ParamAdjustEnv(
            window,
            base,
            bounds,
            fee=fee,
            slippage=slippage,
            rules=rules,
            equity=equity,
            volume=volume,
            settings=settings,
            funding=funding,
        )
        for _ in range(n_envs)
    ]
    with _one_torch_thread():
        model = PPO(
            "MlpPolicy",
            DummyVecEnv([_env_factory(env) for env in envs]),
            n_steps=n_steps,
            batch_size=min(64, n_steps * n_envs),
            n_epochs=5,
            gamma=0.9,
            gae_lambda=0.9,
            learning_rate=learning_rate,
            policy_kwargs={"net_arch": _NET_ARCH},
            seed=seed,
            device="cpu",
            verbose=0,
        )
        model.learn(total_timesteps=timesteps)
    return TrainedAgent(model, settings, bounds.names, int(model.num_timesteps))


def _check_agent(agent: TrainedAgent, bounds: ParamBounds) -> None:
    if agent.param_names != bounds.names:
        raise ModelError(
            f"the RL agent adjusts {', '.join(agent.param_names)} but the bounds give ranges to "
            f"{', '.join(bounds.names) or 'nothing'}; use the bounds it was trained with, or retrain it"
        )


def propose(
    agent: TrainedAgent,
    recent_window: PolicyWindow,
    base: StrategyParams,
    bounds: ParamBounds,
    *,
    fee: float = 0.0004,
    slippage: float = 0.0,
    rules: OrderRules = NO_ORDER_RULES,
    equity: float = 1.0,
    volume: np.ndarray | None = None,
    funding: np.ndarray = NO_FUNDING,
) -> StrategyParams:
    """Return the params the agent chooses for the step window that follows ``recent_window``.

    The observation is taken after the last bar of ``recent_window`` (end it on a step boundary, e.g. a UTC
    midnight), with the base params' results on its last ``history`` windows as the recent results. It needs
    more than ``max(history, lookback)`` step windows. ``funding``: as :func:`train_agent`, over ``recent_window``.
    """
    _check_agent(agent, bounds)
    env = ParamAdjustEnv(
        recent_window,
        base,
        bounds,
        fee=fee,
        slippage=slippage,
        rules=rules,
        equity=equity,
        volume=volume,
        settings=agent.settings,
        funding=funding,
    )
    k = env.n_windows
    return env.params_for(agent.act(env.observe(k, *env.base_results(k))))


def _summary(returns: list[float], trades: list[int], periods_per_year: float) -> dict[str, Any]:
    equity = np.cumprod(1.0 + np.asarray(returns))
    peaks = np.maximum.accumulate(np.append(1.0, equity))[1:]
    return {
        "total_return": float(equity[-1] - 1.0),
        "sharpe": sharpe_ratio(np.asarray(returns), periods_per_year),
        "trades": int(sum(trades)),
        "max_drawdown": float(np.max(1.0 - equity / peaks)),
        "window_returns": [float(r) for r in returns],
        "window_trades": [int(t) for t in trades],
    }


def compare_on_holdout(
    agent: TrainedAgent,
    holdout_window: PolicyWindow,
    base: StrategyParams,
    bounds: ParamBounds,
    fee: float = 0.0004,
    slippage: float = 0.0,
    *,
    rules: OrderRules = NO_ORDER_RULES,
    equity: float = 1.0,
    volume: np.ndarray | None = None,
    funding: np.ndarray = NO_FUNDING,
) -> dict[str, Any]:
    """Replay the agent as live and the static base params on held-out windows; return both results.

    The first ``max(history, lookback)`` step windows of ``holdout_window`` only feed the first observation (they
    may overlap training); every later window is scored alone (flat start) for both, so the two are comparable.
    Returns JSON-serializable ``{"rl": ..., "static": ..., "windows": [...], "periods_per_year": ...}``; ``rl``
    and ``static`` hold ``total_return`` (compounded over the windows, fraction), ``sharpe`` (annualized over
    window returns, ``None`` if undefined), ``trades``, ``max_drawdown`` and per-window ``window_returns`` and
    ``window_trades``; ``windows`` gives each scored window's first and last bar (ISO UTC) and the RL params.
    ``funding``: as :func:`train_agent`, over ``holdout_window`` (both the agent's and the static params pay it).
    """
    _check_agent(agent, bounds)
    settings = replace(agent.settings, episode_steps=None)
    env = ParamAdjustEnv(
        holdout_window,
        base,
        bounds,
        fee=fee,
        slippage=slippage,
        rules=rules,
        equity=equity,
        volume=volume,
        settings=settings,
        funding=funding,
    )
    observation, _ = env.reset(options={"start": settings.warmup})
    rl_returns: list[float] = []
    rl_trades: list[int] = []
    static_returns: list[float] = []
    static_trades: list[int] = []
    windows: list[dict[str, Any]] = []
    done = False
    while not done:
        k = env.current_window
        action = agent.act(observation)
        observation, _, terminated, truncated, info = env.step(action)
        static = env.evaluate(k, env.base)
        rl_returns.append(info["window_return"])
        rl_trades.append(info["trades"])
        static_returns.append(static.total_return)
        static_trades.append(static.trades)
        start, stop = (int(x) for x in env.steps[k])
        index = holdout_window.index
        windows.append(
            {
                "first_bar": index[start].isoformat(),
                "last_bar": index[stop - 1].isoformat(),
                "rl_params": env.params_for(action).to_dict(),
            }
        )
        done = terminated or truncated
    return {
        "rl": _summary(rl_returns, rl_trades, env.periods_per_year),
        "static": _summary(static_returns, static_trades, env.periods_per_year),
        "windows": windows,
        "periods_per_year": env.periods_per_year,
        "fee": fee,
        "slippage": slippage,
    }


def judge_on_holdout(
    result: Mapping[str, Any], rules: GateRules, *, resamples: int = 2000, seed: int = 0
) -> GateVerdict:
    """Return the gate's verdict on the RL-adjusted params against the static ones on the held-out windows.

    ``result`` is :func:`compare_on_holdout`'s: each scored window's return (fraction, compounded within the
    window) of RL and static is one paired observation; the days are the windows' count times the days of one
    window (``365 / periods_per_year``). Scored at the costs ``result`` was computed with.
    """
    rl, static = result["rl"], result["static"]
    rl_returns = np.asarray(rl["window_returns"], dtype=np.float64)
    days = len(result["windows"]) * 365.0 / float(result["periods_per_year"])
    statistics = gate_statistics(
        window="held-out windows",
        rival="static params",
        challenger_returns=rl_returns,
        rival_returns=np.asarray(static["window_returns"], dtype=np.float64),
        total_return=float(rl["total_return"]),
        rival_return=float(static["total_return"]),
        trades=int(rl["trades"]),
        days=float(days),
        selection=TrialSelection.single(rl_returns, "held-out window"),
        costs=TradingCosts(float(result["fee"]), float(result["slippage"])),
        period="window",
        resamples=resamples,
        seed=seed,
    )
    return judge(statistics, rules)
