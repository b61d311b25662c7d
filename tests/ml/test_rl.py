"""RL parameter adjustment: a valid gymnasium env without lookahead, a PPO agent that round-trips, and its gate."""

from __future__ import annotations

import io
import json
import math
import warnings
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from scalpbot.core.backtest.enums import OrderRules
from scalpbot.core.evaluation import PolicyEvaluator, PolicyWindow
from scalpbot.core.gate import GateRules
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.errors import ConfigError, CorruptArtifactError, ModelError
from scalpbot.ml.rl_agent import TrainedAgent, compare_on_holdout, judge_on_holdout, propose, train_agent
from scalpbot.ml.rl_env import ParamAdjustEnv, RlSettings

pytestmark = pytest.mark.slow

BASE = StrategyParams(entry_threshold=0.5, max_hold=30)
BOUNDS = ParamBounds.default()
DAY = 1440
TRAIN_DAYS = 28


def fake_predictions(close: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return probs from a noisy score of the next 15 bars' return and vol = trailing 60-bar realized vol."""
    log_close = np.log(close)
    vol = pd.Series(np.diff(log_close, prepend=log_close[0])).rolling(60).std().to_numpy() * np.sqrt(15)
    forward = np.zeros(close.shape[0])
    forward[:-15] = log_close[15:] - log_close[:-15]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 0.15 * np.nan_to_num(forward / vol) + np.random.default_rng(seed).normal(size=close.shape[0])
    p_long, p_short = 1 / (1 + np.exp(2 - score)), 1 / (1 + np.exp(2 + score))
    return np.column_stack([p_short, 1 - p_long - p_short, p_long]), vol


@pytest.fixture(scope="module")
def market(sample_bars: pd.DataFrame) -> tuple[PolicyWindow, np.ndarray]:
    probs, vol = fake_predictions(sample_bars["close"].to_numpy())
    return PolicyWindow.from_frame(sample_bars, probs, vol), sample_bars["volume"].to_numpy()


@pytest.fixture(scope="module")
def agent(market: tuple[PolicyWindow, np.ndarray]) -> TrainedAgent:
    window, volume = market
    return train_agent(
        window.slice(0, TRAIN_DAYS * DAY),
        BASE,
        BOUNDS,
        timesteps=256,
        n_envs=2,
        seed=0,
        n_steps=64,
        volume=volume[: TRAIN_DAYS * DAY],
    )


def make_env(market: tuple[PolicyWindow, np.ndarray], **settings: Any) -> ParamAdjustEnv:
    window, volume = market
    return ParamAdjustEnv(window, BASE, BOUNDS, volume=volume, settings=RlSettings(**settings))


def test_env_passes_gymnasiums_env_checker(market: tuple[PolicyWindow, np.ndarray]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make_env(market), skip_render_check=True)
        check_env(make_env(market, bars_per_step=240, episode_steps=12), skip_render_check=True)


def test_steps_are_utc_days_by_default_or_blocks_of_bars(market: tuple[PolicyWindow, np.ndarray]) -> None:
    window, _ = market
    days = make_env(market)
    assert days.n_windows == window.day_ends.shape[0] == 42
    assert (days.steps[:, 1] - days.steps[:, 0] == DAY).all()
    assert days.periods_per_year == 365.0
    blocks = make_env(market, bars_per_step=240)
    assert blocks.n_windows == len(window) // 240
    assert blocks.steps[1].tolist() == [240, 480]
    assert blocks.periods_per_year == pytest.approx(365.0 * 6)


def perturbed(market: tuple[PolicyWindow, np.ndarray], from_bar: int) -> tuple[PolicyWindow, np.ndarray]:
    """Return the market with prices, predictions and volume changed at and after bar ``from_bar``."""
    window, volume = market
    rng = np.random.default_rng(1)
    later = slice(from_bar, None)
    scale = np.ones(len(window))
    scale[later] = np.exp(np.cumsum(rng.normal(0.0, 0.003, len(window) - from_bar)))
    frame = pd.DataFrame(
        {name: getattr(window, name) * scale for name in ("open", "high", "low", "close")}, index=window.index
    )
    probs, vol = window.probs.copy(), window.vol.copy()
    probs[later] = probs[later][::-1, ::-1]
    vol[later] = vol[later] * 3.0
    other_volume = volume.copy()
    other_volume[later] = other_volume[later] * 7.0 + 1.0
    return PolicyWindow.from_frame(frame, probs, vol), other_volume


@pytest.mark.parametrize(("start", "k"), [(7, 7), (7, 10), (12, 20), (30, 41)])
def test_observations_never_read_bars_at_or_after_the_step_window(
    market: tuple[PolicyWindow, np.ndarray], start: int, k: int
) -> None:
    env = make_env(market, episode_steps=None)
    later_window, later_volume = perturbed(market, int(env.steps[k, 0]))
    other = ParamAdjustEnv(later_window, BASE, BOUNDS, volume=later_volume, settings=env.settings)
    actions = np.random.default_rng(k).uniform(-1.0, 1.0, (k - start + 1, len(BOUNDS.names)))
    seen, seen_other = [env.reset(options={"start": start})[0]], [other.reset(options={"start": start})[0]]
    for action in actions:
        seen.append(env.step(action)[0])
        seen_other.append(other.step(action)[0])
    # seen[i] is the observation before window start + i: identical up to window k, different after it
    np.testing.assert_array_equal(np.stack(seen[: k - start + 1]), np.stack(seen_other[: k - start + 1]))
    assert not np.array_equal(seen[-1], seen_other[-1])


def test_volume_z_has_no_unit_of_volume_and_a_window_that_traded_nothing_reads_as_finite(
    market: tuple[PolicyWindow, np.ndarray],
) -> None:
    window, volume = market
    settings = RlSettings(episode_steps=None)
    column = settings.observation_names().index("volume_z")
    quiet = volume.copy()
    start, stop = ParamAdjustEnv(window, BASE, BOUNDS, volume=volume, settings=settings).steps[9]
    quiet[start:stop] = 0.0  # window 9 traded nothing

    def volume_z(volume: np.ndarray, k: int) -> float:
        env = ParamAdjustEnv(window, BASE, BOUNDS, volume=volume, settings=settings)
        return float(env.reset(options={"start": k})[0][column])

    for k in (10, 12):  # window 9 the last before k, then one among the lookback's
        seen = [volume_z(quiet * unit, k) for unit in (2.0**-30, 1e-6, 1.0, 1e3, 2.0**30)]
        assert np.isfinite(seen).all() and max(seen) - min(seen) <= 1e-5, seen
    # Traded nothing: the lowest of its lookback (a z-score of one among 7 is at least -sqrt(6)).
    assert -math.sqrt(6.0) <= volume_z(quiet, 10) < -1.0
    assert volume_z(quiet, 10) < volume_z(volume, 10)
    # Without volume, or when no window of the lookback traded, the regime says nothing.
    silent = np.zeros_like(volume)
    assert volume_z(silent, 10) == 0.0
    no_volume = ParamAdjustEnv(window, BASE, BOUNDS, settings=settings)
    assert float(no_volume.reset(options={"start": 10})[0][column]) == 0.0


def test_actions_outside_the_box_are_clipped_and_params_stay_within_bounds(
    market: tuple[PolicyWindow, np.ndarray],
) -> None:
    env = make_env(market)
    k = len(BOUNDS.names)
    highest, lowest = env.params_for(np.full(k, 5.0)), env.params_for(np.full(k, -1e9))
    assert highest == env.params_for(np.ones(k))
    assert lowest == env.params_for(-np.ones(k))
    assert [getattr(highest, name) for name in BOUNDS.names] == BOUNDS.high.tolist()
    assert [getattr(lowest, name) for name in BOUNDS.names] == BOUNDS.low.tolist()
    assert env.params_for(np.zeros(k)) == BASE == env.params_for(np.full(k, np.nan))
    assert env.params_for(np.full(k, 0.5)).max_hold == round(30 + 0.5 * (240 - 30))
    env.reset(seed=0)
    for action in np.random.default_rng(0).uniform(-3.0, 3.0, (10, k)).astype(np.float32):
        params = env.params_for(action)
        assert BOUNDS.contains(params) and params == env.params_for(np.clip(action, -1, 1))
        assert (
            env.step(action)[4]["window_return"] == env.evaluate(env.current_window - 1, params).total_return
        )
        assert (params.min_stop, params.allow_short) == (BASE.min_stop, BASE.allow_short)


def test_rewards_are_finite_and_observations_inside_the_space(
    market: tuple[PolicyWindow, np.ndarray],
) -> None:
    window, volume = market
    reckless = StrategyParams(entry_threshold=0.0, risk_per_trade=0.2, max_position=100.0, sl_mult=0.01)
    env = ParamAdjustEnv(
        window, reckless, BOUNDS, fee=0.01, volume=volume, settings=RlSettings(episode_steps=None)
    )
    rng = np.random.default_rng(2)
    observation, _ = env.reset(seed=5)
    rewards, done = [], False
    while not done:
        assert env.observation_space.contains(observation)
        observation, reward, terminated, truncated, _ = env.step(
            rng.choice([-1.0, 0.0, 1.0], len(BOUNDS.names))
        )
        rewards.append(reward)
        done = terminated or truncated
    assert np.isfinite(rewards).all() and min(rewards) < 0.0


def test_reset_draws_the_start_from_the_seed(market: tuple[PolicyWindow, np.ndarray]) -> None:
    env = make_env(market, episode_steps=10)
    starts = [env.reset(seed=seed)[1]["window"] for seed in range(8)]
    again = [env.reset(seed=seed)[1]["window"] for seed in range(8)]
    assert starts == again and len(set(starts)) > 3
    assert all(7 <= s <= env.n_windows - 10 for s in starts)
    env.reset(seed=0)
    steps = [env.step(np.zeros(len(BOUNDS.names)))[3] for _ in range(10)]
    assert steps == [False] * 9 + [True]
    with pytest.raises(ConfigError, match="call reset"):
        env.step(np.zeros(len(BOUNDS.names)))


def test_a_reward_is_the_window_return_less_the_deepening_of_drawdown(
    market: tuple[PolicyWindow, np.ndarray],
) -> None:
    env = make_env(market, drawdown_penalty=2.0)
    env.reset(options={"start": 9})
    equity = peak = 1.0
    for k in range(9, 14):
        expected_return = PolicyEvaluator(env.window.slice(*env.steps[k]))(BASE).total_return
        _, reward, _, _, info = env.step(np.zeros(len(BOUNDS.names)))
        before = 1 - equity / peak
        equity *= 1 + expected_return
        peak = max(peak, equity)
        assert info["window_return"] == expected_return
        assert reward == pytest.approx(100 * (expected_return - 2.0 * max(0.0, 1 - equity / peak - before)))


def test_settings_and_windows_are_validated_with_a_hint(market: tuple[PolicyWindow, np.ndarray]) -> None:
    window, _ = market
    with pytest.raises(ConfigError, match="history must be"):
        RlSettings(history=0)
    with pytest.raises(ConfigError, match="pass a longer window"):
        ParamAdjustEnv(window.slice(0, 5 * DAY), BASE, BOUNDS)
    with pytest.raises(ConfigError, match="fee must be"):
        ParamAdjustEnv(window, BASE, BOUNDS, fee=-1.0)


def test_ppo_agent_round_trips_through_bytes_with_identical_actions(
    agent: TrainedAgent, market: tuple[PolicyWindow, np.ndarray]
) -> None:
    assert agent.timesteps == 256 and agent.param_names == BOUNDS.names
    loaded = TrainedAgent.load(agent.save())
    assert loaded.settings == agent.settings and loaded.param_names == agent.param_names
    observations = np.random.default_rng(3).uniform(-3, 3, (50, len(agent.settings.observation_names())))
    for observation in observations.astype(np.float32):
        np.testing.assert_array_equal(loaded.act(observation), agent.act(observation))
    window, volume = market
    recent = window.slice(TRAIN_DAYS * DAY - 10 * DAY, TRAIN_DAYS * DAY)
    proposal = propose(agent, recent, BASE, BOUNDS, volume=volume[(TRAIN_DAYS - 10) * DAY : TRAIN_DAYS * DAY])
    assert BOUNDS.contains(proposal)
    assert proposal == propose(
        loaded, recent, BASE, BOUNDS, volume=volume[(TRAIN_DAYS - 10) * DAY : TRAIN_DAYS * DAY]
    )


def test_seeded_training_is_reproducible(
    agent: TrainedAgent, market: tuple[PolicyWindow, np.ndarray]
) -> None:
    window, volume = market
    again = train_agent(
        window.slice(0, TRAIN_DAYS * DAY),
        BASE,
        BOUNDS,
        timesteps=256,
        n_envs=2,
        seed=0,
        n_steps=64,
        volume=volume[: TRAIN_DAYS * DAY],
    )
    observations = np.random.default_rng(4).uniform(-3, 3, (20, len(agent.settings.observation_names())))
    for observation in observations.astype(np.float32):
        np.testing.assert_array_equal(again.act(observation), agent.act(observation))


def test_loading_bytes_that_are_no_agent_raises_corrupt_artifact(agent: TrainedAgent) -> None:
    with pytest.raises(CorruptArtifactError, match="not a scalpbot agent zip"):
        TrainedAgent.load(b"not a zip")
    with pytest.raises(CorruptArtifactError):
        TrainedAgent.load(agent.save()[:-200])
    # An agent of format 1 read volume_z as the log of the mean volume: its observations meant something else.
    with zipfile.ZipFile(io.BytesIO(agent.save())) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(parts["agent.json"])
    older = io.BytesIO()
    with zipfile.ZipFile(older, "w") as archive:
        archive.writestr("agent.json", json.dumps({**meta, "format": 1}))
        archive.writestr("ppo.zip", parts["ppo.zip"])
    with pytest.raises(CorruptArtifactError, match="format 1, not 2; retrain the agent"):
        TrainedAgent.load(older.getvalue())


def test_agent_refuses_bounds_it_was_not_trained_on(
    agent: TrainedAgent, market: tuple[PolicyWindow, np.ndarray]
) -> None:
    window, _ = market
    with pytest.raises(ModelError, match="retrain"):
        propose(agent, window, BASE, ParamBounds({"entry_threshold": (0.1, 0.9)}))


def test_compare_on_holdout_scores_rl_and_static_on_the_same_held_out_windows(
    agent: TrainedAgent, market: tuple[PolicyWindow, np.ndarray]
) -> None:
    window, volume = market
    first = (TRAIN_DAYS - agent.settings.warmup) * DAY  # warmup days only feed the first observation
    holdout = window.slice(first, len(window))
    result = compare_on_holdout(agent, holdout, BASE, BOUNDS, 0.0004, 0.0, volume=volume[first:])
    scored = 42 - TRAIN_DAYS
    assert len(result["windows"]) == scored
    assert result["windows"][0]["first_bar"] == window.index[TRAIN_DAYS * DAY].isoformat()
    for side in ("rl", "static"):
        assert len(result[side]["window_returns"]) == len(result[side]["window_trades"]) == scored
        assert result[side]["total_return"] == pytest.approx(
            np.prod(1 + np.array(result[side]["window_returns"])) - 1
        )
        assert result[side]["trades"] == sum(result[side]["window_trades"])
    day = TRAIN_DAYS + 3
    static_day = PolicyEvaluator(window.slice(day * DAY, (day + 1) * DAY))(BASE)
    assert result["static"]["window_returns"][3] == static_day.total_return
    rl_params = StrategyParams.from_dict(result["windows"][3]["rl_params"])
    assert BOUNDS.contains(rl_params)
    rl_day = PolicyEvaluator(window.slice(day * DAY, (day + 1) * DAY))(rl_params)
    assert result["rl"]["window_returns"][3] == rl_day.total_return


def _holdout_result(rl: list[float], static: list[float], trades: int) -> dict[str, Any]:
    days = len(rl)
    windows = [{"first_bar": f"2024-12-{d + 1:02d}T00:00:00+00:00"} for d in range(days)]
    summary = {  # only what the gate reads
        name: {"window_returns": r, "total_return": float(np.prod(1 + np.array(r)) - 1), "trades": trades}
        for name, r in (("rl", rl), ("static", static))
    }
    return {**summary, "windows": windows, "periods_per_year": 365.0, "fee": 0.001, "slippage": 0.0001}


def test_rl_params_are_promoted_only_when_they_beat_static_by_more_than_noise() -> None:
    rng = np.random.default_rng(0)
    static = list(rng.normal(0.002, 0.006, 20))  # profitable static params
    rules = GateRules(min_trades=50)
    better = judge_on_holdout(_holdout_result([r + 0.004 for r in static], static, 300), rules)
    assert better.promote, better.reason
    s = better.statistics
    assert (s.rival, s.bootstrap_obs, s.days, s.n_trials, s.pbo) == ("static params", 20, 20.0, 1, None)
    assert (s.fee, s.slippage) == (0.001, 0.0001)  # the costs the held-out windows were scored at
    lucky = judge_on_holdout(_holdout_result([r + 0.0005 for r in static], static, 300), rules)
    assert lucky.statistics.total_return > lucky.statistics.rival_return and not lucky.promote
    noisy = [r + e for r, e in zip(static, rng.normal(0.0005, 0.01, 20), strict=True)]
    assert not judge_on_holdout(_holdout_result(noisy, static, 300), rules).promote
    few = judge_on_holdout(_holdout_result([r + 0.004 for r in static], static, 10), rules)
    assert few.reason.startswith("refused: 10 trades < 50 on the held-out windows")
    short = judge_on_holdout(_holdout_result([r + 0.004 for r in static[:5]], static[:5], 300), rules)
    assert short.reason.startswith("refused: 5.0 days < 7 on the held-out windows")


def test_each_window_is_scored_with_the_venues_fee_step_minimums_and_shorts(
    market: tuple[PolicyWindow, np.ndarray],
) -> None:
    window, volume = market
    spot = OrderRules(amount_step=0.001, min_qty=0.001, min_notional=5.0, shorts=False)
    env = ParamAdjustEnv(window, BASE, BOUNDS, fee=0.001, rules=spot, equity=10_000.0, volume=volume)
    start, stop = (int(x) for x in env.steps[3])
    params = BASE.replace(entry_threshold=0.05)
    direct = PolicyEvaluator(window.slice(start, stop), fee=0.001, rules=spot, initial_equity=10_000.0)(
        params
    )
    scored = env.evaluate(3, params)
    assert (scored.trades, scored.total_return) == (direct.trades, direct.total_return)
    frictionless = ParamAdjustEnv(window, BASE, BOUNDS, fee=0.001, volume=volume).evaluate(3, params)
    assert frictionless.trades > scored.trades > 0  # the fake model's short signals only close longs on spot
