"""A gymnasium environment in which an agent adjusts ``StrategyParams`` window by window over the backtest kernel.

**Steps.** The :class:`~scalpbot.core.evaluation.PolicyWindow` is cut into consecutive step windows taken in time
order: UTC calendar days (``RlSettings.bars_per_step=None``, the default) or blocks of ``bars_per_step`` bars from
the window's first bar; windows of fewer than 2 bars are dropped. The action for window ``k`` is chosen at the
close of the bar before it; window ``k`` is then scored alone by a
:class:`~scalpbot.core.evaluation.PolicyEvaluator` (starting flat with equity 1, an open position marked at the
window's last close), net of ``fee`` and ``slippage``.

**Observation** (float32, clipped to ``[-OBS_LIMIT, OBS_LIMIT]``, names in :meth:`RlSettings.observation_names`),
computed from bars **before** window ``k`` only:

* ``log_vol_bps``: log of the realized volatility (std, ddof 0) of window ``k-1``'s bar-to-bar log returns, in
  basis points per bar;
* ``vol_ratio``: log of that volatility over its mean across the ``lookback`` windows before ``k``;
* ``trend``: window ``k-1``'s log return (last close over first open) in units of its volatility times
  sqrt(its bars): a t-statistic;
* ``volume_z``: z-score of window ``k-1``'s relative volume among the ``lookback`` windows before ``k``, where a
  window's relative volume is ``log1p(m / (0.1 * M))``, ``m`` its mean volume per bar and ``M`` the mean of the
  ``lookback`` windows' ``m`` (as the model's features read volume): in no unit of volume, and finite for a
  window that traded nothing (0 without volume, when none of the windows traded, or when all are equal);
* for the ``history`` windows before ``k``, most recent first: ``return_i`` (the window's return, in percent) and
  ``trades_i`` (log1p of its closed trades); then ``drawdown``: the drawdown, in percent, of equity compounded
  over those windows' returns from the peak (at least the starting 1).

At the start of an episode (and in :func:`~scalpbot.ml.rl_agent.propose`) the recent results are those of the
base params on the ``history`` windows before the start; afterwards they are those of the params the agent chose.

**Action**: a Box in ``[-1, 1]^k``, one component per name of ``bounds.names`` (out-of-range values are clipped,
non-finite ones read as 0). Each component moves its field piecewise linearly from the base value (clipped into
the bounds) at 0 to ``high`` at +1 and ``low`` at -1; ``max_hold`` is rounded to whole bars; the other fields keep
the base's values. The zero action is the base params.

**Reward**: ``100 * (r_k - drawdown_penalty * max(0, dd_k - dd_{k-1}))``: window ``k``'s return in percent, less a
penalty on any deepening of the episode's drawdown (``dd``: 1 - equity / peak of the equity compounded over the
episode's windows). Always finite.

**Episode**: ``episode_steps`` consecutive windows (``None``: to the last window) from a start drawn uniformly
from ``[warmup, n_windows - episode_steps]`` by the env's seeded generator (``reset(seed=...)``), or given as
``reset(options={"start": k})``; ``warmup = max(history, lookback)`` windows feed the first observation. Episodes
end truncated; terminated only if the compounded equity reaches 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from scalpbot.core.backtest.enums import NO_FUNDING, NO_ORDER_RULES, OrderRules
from scalpbot.core.evaluation import Evaluation, PolicyEvaluator, PolicyWindow
from scalpbot.core.features import VOLUME_FLOOR_SHARE
from scalpbot.core.metrics import PERIODS_PER_YEAR_24_7
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.errors import ConfigError, DataError

__all__ = ["OBS_LIMIT", "REGIME_NAMES", "ParamAdjustEnv", "RlSettings", "step_windows"]

OBS_LIMIT = 10.0
REGIME_NAMES = ("log_vol_bps", "vol_ratio", "trend", "volume_z")
_TINY = 1e-12
_SECONDS_PER_YEAR = 365.0 * 86_400.0


@dataclass(frozen=True)
class RlSettings:
    """How the environment cuts, observes and rewards windows; an agent keeps the settings it was trained with.

    ``bars_per_step``: bars per step window, ``None`` for UTC days; ``history``: past windows whose results are
    observed; ``lookback``: past windows the regime is compared against; ``episode_steps``: windows per training
    episode (``None``: to the end); ``drawdown_penalty``: weight of a deepening drawdown in the reward.
    """

    bars_per_step: int | None = None
    history: int = 3
    lookback: int = 7
    episode_steps: int | None = 30
    drawdown_penalty: float = 0.5

    def __post_init__(self) -> None:
        if self.bars_per_step is not None and not (
            isinstance(self.bars_per_step, int) and self.bars_per_step >= 2
        ):
            raise ConfigError(
                f"bars_per_step must be a whole number >= 2, or None for UTC days; got {self.bars_per_step!r}"
            )
        if not (isinstance(self.history, int) and self.history >= 1):
            raise ConfigError(f"history must be a whole number of windows >= 1, e.g. 3; got {self.history!r}")
        if not (isinstance(self.lookback, int) and self.lookback >= 2):
            raise ConfigError(
                f"lookback must be a whole number of windows >= 2, e.g. 7; got {self.lookback!r}"
            )
        if self.episode_steps is not None and not (
            isinstance(self.episode_steps, int) and self.episode_steps >= 1
        ):
            raise ConfigError(
                f"episode_steps must be a whole number >= 1, or None; got {self.episode_steps!r}"
            )
        if not (math.isfinite(self.drawdown_penalty) and self.drawdown_penalty >= 0.0):
            raise ConfigError(
                f"drawdown_penalty must be a finite number >= 0, e.g. 0.5; got {self.drawdown_penalty!r}"
            )

    @property
    def warmup(self) -> int:
        """Return how many windows must precede the first step (for the regime and the recent results)."""
        return max(self.history, self.lookback)

    def observation_names(self) -> tuple[str, ...]:
        """Return the name of each observation component, in order."""
        recent = [f"{what}_{i}" for i in range(1, self.history + 1) for what in ("return", "trades")]
        return (*REGIME_NAMES, *recent, "drawdown")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serializable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RlSettings:
        """Return settings from a dict such as ``to_dict()``'s."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"RlSettings has no field '{unknown[0]}'; allowed: {', '.join(sorted(known))}")
        return cls(**data)


def step_windows(window: PolicyWindow, bars_per_step: int | None) -> np.ndarray:
    """Return ``(n, 2)`` bar positions ``[start, stop)`` of the step windows, in time order (UTC days if None)."""
    n = len(window)
    if bars_per_step is None:
        stops = window.day_ends.astype(np.int64) + 1
    else:
        stops = np.append(np.arange(bars_per_step, n, bars_per_step, dtype=np.int64), n)
    starts = np.append(0, stops[:-1])
    bounds = np.column_stack([starts, stops])
    kept: np.ndarray = bounds[stops - starts >= 2]
    return kept


def _regime_table(
    window: PolicyWindow, steps: np.ndarray, volume: np.ndarray | None, lookback: int
) -> np.ndarray:
    """Return ``(n_windows + 1, 4)`` regime features: row ``k`` reads windows ``k - lookback .. k - 1`` only.

    Rows before ``lookback`` are NaN (not observable).
    """
    log_close = np.log(window.close)
    n = steps.shape[0]
    vol, log_return, mean_volume = np.empty(n), np.empty(n), np.zeros(n)
    for j, (start, stop) in enumerate(steps):
        vol[j] = float(np.std(np.diff(log_close[start:stop])))
        log_return[j] = log_close[stop - 1] - math.log(window.open[start])
        if volume is not None:
            mean_volume[j] = float(np.mean(volume[start:stop]))
    bars = steps[:, 1] - steps[:, 0]
    table = np.full((n + 1, len(REGIME_NAMES)), np.nan)
    for k in range(lookback, n + 1):
        past = slice(k - lookback, k)
        last = max(vol[k - 1], _TINY)
        table[k] = (
            math.log(last * 1e4),
            math.log(last / max(float(np.mean(vol[past])), _TINY)),
            log_return[k - 1] / (vol[k - 1] * math.sqrt(bars[k - 1])) if vol[k - 1] > 0.0 else 0.0,
            _relative_volume_z(mean_volume[past]),
        )
    table[lookback:] = np.nan_to_num(table[lookback:])
    clipped: np.ndarray = np.clip(table, -OBS_LIMIT, OBS_LIMIT)
    return clipped


class ParamAdjustEnv(gym.Env[np.ndarray, np.ndarray]):
    """Adjust the base params each window of ``window`` (definitions in the module docstring).

    ``volume``: traded volume per bar of ``window`` (the :class:`PolicyWindow` carries none), for ``volume_z``.
    ``base`` is clipped into ``bounds``. ``steps``: the ``(n_windows, 2)`` bar positions ``[start, stop)``.
    ``info`` of each step: ``window`` (its index), ``window_return`` (fraction) and ``trades`` (closed trades).
    ``fee``/``slippage``/``rules``: the venue's costs and order rules, applied to windows that each start flat
    with ``equity`` (quote currency; steps and minimums are absolute), as :class:`PolicyEvaluator` does.
    ``funding``: the funding rate due at each bar's open of ``window`` (perpetual swaps; empty: none), charged
    on positions held through it in every step window.
    """

    def __init__(
        self,
        window: PolicyWindow,
        base: StrategyParams,
        bounds: ParamBounds,
        *,
        fee: float = 0.0004,
        slippage: float = 0.0,
        rules: OrderRules = NO_ORDER_RULES,
        equity: float = 1.0,
        volume: np.ndarray | None = None,
        settings: RlSettings | None = None,
        funding: np.ndarray = NO_FUNDING,
    ) -> None:
        super().__init__()
        self.settings = settings or RlSettings()
        if not bounds.names:
            raise ConfigError(
                "bounds give no field a range; the agent needs at least one, e.g. ParamBounds.default()"
            )
        if volume is not None:
            volume = np.asarray(volume, dtype=np.float64)
            if volume.shape != (len(window),) or not (np.isfinite(volume).all() and (volume >= 0).all()):
                raise DataError(
                    f"volume must hold one finite value >= 0 per bar ({len(window)}); got shape {volume.shape}"
                )
        self.window = window
        self.bounds = bounds
        self.base = bounds.clip(base)
        self.fee, self.slippage, self.rules, self.equity = fee, slippage, rules, equity
        if funding.shape[0] not in (0, len(window)):
            raise DataError(
                f"funding must hold one rate per bar ({len(window)}) or none; got {funding.shape[0]}"
            )
        self.funding = funding
        self.steps = step_windows(window, self.settings.bars_per_step)
        if self.steps.shape[0] <= self.settings.warmup:
            raise ConfigError(
                f"the window holds {self.steps.shape[0]} step windows; the settings need more than "
                f"{self.settings.warmup} (max of history and lookback): pass a longer window or lower them"
            )
        self._regime = _regime_table(window, self.steps, volume, self.settings.lookback)
        self._low, self._high = bounds.low, bounds.high
        self._center = np.array([getattr(self.base, name) for name in bounds.names], dtype=np.float64)
        first = self._evaluator(0)
        self._evaluators: dict[int, PolicyEvaluator] = {0: first}  # built now: validates fee and slippage
        self._base_results: dict[int, tuple[float, int]] = {}
        self._n_obs = len(self.settings.observation_names())
        self.observation_space = spaces.Box(-OBS_LIMIT, OBS_LIMIT, (self._n_obs,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (len(bounds.names),), np.float32)
        self._k = self._end = 0
        self._returns: list[float] = []
        self._trades: list[int] = []
        self._equity = self._peak = 1.0

    @property
    def n_windows(self) -> int:
        """Return the number of step windows."""
        return int(self.steps.shape[0])

    @property
    def current_window(self) -> int:
        """Return the index of the window the next action applies to."""
        return self._k

    @property
    def periods_per_year(self) -> float:
        """Return step windows per year (365 for days; else from the median bar spacing), for Sharpe ratios."""
        if self.settings.bars_per_step is None:
            return PERIODS_PER_YEAR_24_7
        spacing = float(np.median(np.diff(self.window.index.asi8))) / 1e9 * _ns_per_tick(self.window)
        return _SECONDS_PER_YEAR / (spacing * self.settings.bars_per_step)

    def params_for(self, action: np.ndarray) -> StrategyParams:
        """Return the params an action selects (clipped into ``[-1, 1]``, non-finite as 0), within the bounds."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        a = np.clip(np.where(np.isfinite(a), a, 0.0), -1.0, 1.0)
        if a.shape[0] != self._center.shape[0]:
            raise ConfigError(
                f"an action has {self._center.shape[0]} components ({', '.join(self.bounds.names)}); got {a.shape[0]}"
            )
        c = self._center
        values = np.where(a >= 0.0, c + a * (self._high - c), c + a * (c - self._low))
        values = np.where(a == 1.0, self._high, np.where(a == -1.0, self._low, values))  # exact at the ends
        values = np.minimum(np.maximum(values, self._low), self._high)
        changes = {
            name: round(float(v)) if name == "max_hold" else float(v)
            for name, v in zip(self.bounds.names, values, strict=True)
        }
        return self.base.replace(**changes)

    def evaluate(self, k: int, params: StrategyParams) -> Evaluation:
        """Return ``params`` scored on step window ``k`` alone (flat start, equity 1)."""
        evaluator = self._evaluators.get(k)
        if evaluator is None:
            evaluator = self._evaluator(k)
            self._evaluators[k] = evaluator
        return evaluator(params)

    def _evaluator(self, k: int) -> PolicyEvaluator:
        start, stop = (int(x) for x in self.steps[k])
        return PolicyEvaluator(
            self.window.slice(start, stop),
            fee=self.fee,
            slippage=self.slippage,
            rules=self.rules,
            initial_equity=self.equity,
            funding=self.funding[start:stop] if self.funding.shape[0] else NO_FUNDING,
        )

    def base_results(self, k: int) -> tuple[list[float], list[int]]:
        """Return the base params' returns and trades on the ``history`` windows before ``k``, oldest first."""
        returns, trades = [], []
        for j in range(k - self.settings.history, k):
            if j not in self._base_results:
                evaluation = self.evaluate(j, self.base)
                self._base_results[j] = (evaluation.total_return, evaluation.trades)
            returns.append(self._base_results[j][0])
            trades.append(self._base_results[j][1])
        return returns, trades

    def observe(self, k: int, returns: list[float], trades: list[int]) -> np.ndarray:
        """Return the observation before window ``k`` (``k`` may be ``n_windows``: after the last one).

        ``returns``/``trades``: the strategy's results on the windows before ``k``, oldest first (at least
        ``history``). Only bars of windows before ``k`` are read.
        """
        s = self.settings
        if not s.warmup <= k <= self.n_windows:
            raise ConfigError(f"window {k} has no observation; use one in [{s.warmup}, {self.n_windows}]")
        if min(len(returns), len(trades)) < s.history:
            raise ConfigError(f"the observation needs the results of the last {s.history} windows (history)")
        observation = np.empty(self._n_obs, dtype=np.float32)
        observation[: len(REGIME_NAMES)] = self._regime[k]
        i = len(REGIME_NAMES)
        equity = peak = 1.0
        for r in returns[-s.history :]:
            equity *= 1.0 + r
            peak = max(peak, equity)
        for r, t in zip(reversed(returns[-s.history :]), reversed(trades[-s.history :]), strict=True):
            observation[i], observation[i + 1] = _clip(100.0 * r), _clip(math.log1p(t))
            i += 2
        observation[i] = _clip(100.0 * (1.0 - equity / peak))
        return observation

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at ``options["start"]`` or at a start drawn from the seeded generator."""
        super().reset(seed=seed)
        s = self.settings
        length = self.n_windows - s.warmup if s.episode_steps is None else s.episode_steps
        last_start = max(s.warmup, self.n_windows - length)
        if options and options.get("start") is not None:
            start = int(options["start"])
            if not s.warmup <= start < self.n_windows:
                raise ConfigError(
                    f"start must be a window in [{s.warmup}, {self.n_windows - 1}]; got {start}"
                )
        else:
            start = int(self.np_random.integers(s.warmup, last_start + 1))
        self._k, self._end = start, min(start + length, self.n_windows)
        self._returns, self._trades = self.base_results(start)
        self._equity = self._peak = 1.0
        return self.observe(start, self._returns, self._trades), {"window": start}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Trade window ``current_window`` with the params ``action`` selects; return the next observation."""
        if self._k >= self._end:
            raise ConfigError("the episode is over; call reset() before step()")
        params = self.params_for(action)
        evaluation = self.evaluate(self._k, params)
        window_return = max(evaluation.total_return, -1.0) if math.isfinite(evaluation.total_return) else -1.0
        drawdown_before = 1.0 - self._equity / self._peak
        self._equity *= 1.0 + window_return
        self._peak = max(self._peak, self._equity)
        drawdown_after = 1.0 - self._equity / self._peak
        deeper = max(0.0, drawdown_after - drawdown_before)
        reward = 100.0 * (window_return - self.settings.drawdown_penalty * deeper)
        self._returns.append(window_return)
        self._trades.append(evaluation.trades)
        info = {"window": self._k, "window_return": window_return, "trades": evaluation.trades}
        self._k += 1
        terminated = self._equity <= 0.0
        truncated = self._k >= self._end and not terminated
        observation = self.observe(self._k, self._returns, self._trades)
        return observation, float(reward), terminated, truncated, info


def _relative_volume_z(mean_volume: np.ndarray) -> float:
    """Return the z-score of the last window's relative volume among ``mean_volume`` (see ``volume_z``)."""
    level = float(np.mean(mean_volume))
    if not level > 0.0:
        return 0.0
    return _last_z_score(np.log1p(mean_volume / (VOLUME_FLOOR_SHARE * level)))


def _last_z_score(values: np.ndarray) -> float:
    std = float(np.std(values))
    return 0.0 if not std > _TINY else (float(values[-1]) - float(np.mean(values))) / std


def _clip(value: float) -> float:
    return min(max(value, -OBS_LIMIT), OBS_LIMIT) if math.isfinite(value) else 0.0


def _ns_per_tick(window: PolicyWindow) -> float:
    return {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}[str(window.index.unit)]
