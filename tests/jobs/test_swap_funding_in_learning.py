"""Tuning, the gate's scores and the weekly RL step of a perpetual swap pay the funding stored beside its bars.

A planted steep rate (0.5 % per 8 h) makes the funding visible in the objective: the tuning trial and the test
window's score are recomputed with the stored rates and must equal the job's figures; every RL environment of
the weekly step must hold the stored rates of its window.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.core.evaluation import PolicyEvaluator
from scalpbot.core.funding import funding_at_bars
from scalpbot.jobs.learning import simulate
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.services import Services, stored_funding
from scalpbot.jobs.train_steps import fold_windows, prepare, tune
from scalpbot.state.funding import append_funding

from support.files import write_csv
from support.swap_trained import HELD_OUT, SWAP_SYMBOL, swap_release, swap_services

__all__ = ["swap_release"]

STEEP = 0.005
"""A planted funding rate per settlement (0.5 % of the position's value every 8 h), far above typical rates."""


def planted(bars: pd.DataFrame) -> pd.Series:
    """Return a steep rate at every 8-hour funding time of ``bars``."""
    times = pd.DatetimeIndex(bars.index)
    times = times[(times.hour % 8 == 0) & (times.minute == 0)]
    return pd.Series(STEEP, index=times, name="funding_rate")


def swap_store(root: Path, bars: pd.DataFrame, *, funding: bool) -> Services:
    root.mkdir(parents=True, exist_ok=True)
    services = swap_services(root / "store")
    series = services.series()
    retrieve(services.dataset, FileMarketData(write_csv(bars, root / "bars.csv")), series, resume=False)
    if funding:
        append_funding(services.store, series.exchange, series.symbol, planted(bars))
    return services


def eager_predictions(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return predictions that lean long on most bars (so trials hold positions through funding times)."""
    rng = np.random.default_rng(7)
    p_long = rng.uniform(0.3, 0.7, n)
    return np.column_stack([0.8 - p_long, np.full(n, 0.2), p_long]), np.full(n, 0.003)


def test_a_swaps_tuning_trials_and_test_score_pay_its_stored_funding(
    sample_bars: pd.DataFrame, tmp_path: Path
) -> None:
    bars = sample_bars.iloc[: 21 * 1440]
    until = pd.Timestamp(bars.index[-1]) + pd.Timedelta(minutes=1)
    runs: dict[bool, tuple[Any, Any]] = {}
    for funding in (True, False):
        services = swap_store(tmp_path / str(funding), bars, funding=funding)
        prepared = prepare(services, services.series(), until.to_pydatetime(), 3, {})
        probs, vol = eager_predictions(len(prepared.bars))
        windows = fold_windows(prepared, probs, vol)
        tuned = tune(
            services,
            prepared,
            windows,
            study_name="swap",
            label=prepared.candidates[0].to_dict(),
            show_progress=False,
            log=lambda _: None,
        )
        runs[funding] = (prepared, tuned)

    prepared, tuned = runs[True]
    assert prepared.funding is not None and len(prepared.funding) == 21 * 3
    assert runs[False][0].funding is not None and runs[False][0].funding.empty  # a swap, nothing stored
    assert prepared.key != runs[False][0].key  # the stored rates are part of what a run trains on
    # The same seeded first trial, scored with and without the stored rates: funding moves its returns ...
    params = tuned.trial_params[0]
    assert params == runs[False][1].trial_params[0]
    assert not np.array_equal(tuned.trial_returns[0], runs[False][1].trial_returns[0])
    # ... by exactly what the evaluator charges with the rates at each fold's bars.
    costs, venue = swap_services(tmp_path / "costs").settings.backtest, prepared.venue
    expected = np.concatenate(
        [
            PolicyEvaluator(
                w,
                fee=venue.taker_fee,
                slippage=costs.slippage,
                periods_per_year=365.0 * 24.0,  # the tuning's hourly returns
                rules=venue.order_rules(),
                initial_equity=costs.initial_equity,
                funding=funding_at_bars(prepared.funding, w.index),
            )(params).daily_returns
            for w in windows
        ]
    )
    np.testing.assert_array_equal(tuned.trial_returns[0], expected)
    # The gate's test score pays it too: the backtest of a swap charges the stored rates.
    test_bars = prepared.bars.iloc[slice(*prepared.folds.test)]
    signals = pd.DataFrame(
        {"side": 1, "size": 0.5, "sl": np.inf, "tp": np.inf, "max_hold": 0}, index=test_bars.index
    ).astype({"side": np.int8, "max_hold": np.int64})
    paid = simulate(test_bars, signals, costs, venue, prepared.funding).metrics["funding_paid"]
    held = funding_at_bars(prepared.funding, pd.DatetimeIndex(test_bars.index))[1:]  # the long opens at bar 1
    assert held.sum() > 0 and paid > 0.0
    assert simulate(test_bars, signals, costs, venue).metrics["funding_paid"] == 0.0


def test_only_a_perpetual_swap_has_stored_funding_to_charge(
    sample_bars: pd.DataFrame, tmp_path: Path
) -> None:
    services = swap_store(tmp_path, sample_bars.iloc[:1440], funding=True)
    swap = services.series()
    assert stored_funding(services.store, swap).tolist() == [STEEP] * 3
    assert stored_funding(services.store, services.series(symbol="BTC/USDT")) is None
    assert stored_funding(services.store, services.series(symbol="BTC/USDT:USDT-250328")) is None


def test_the_weekly_rl_step_of_a_swap_trains_and_scores_its_agent_with_the_stored_funding(
    swap_release: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scalpbot.jobs.improve import reinforcement_learning
    from scalpbot.jobs.monitor import WeekData
    from scalpbot.ml import rl_agent
    from scalpbot.ml.rl_env import ParamAdjustEnv

    shutil.copytree(
        swap_release[0], tmp_path / "store"
    )  # the step writes a release: not into the shared store
    services = swap_services(tmp_path / "store")
    series = services.series()
    seen: list[tuple[pd.DatetimeIndex, np.ndarray]] = []

    class Recorded(ParamAdjustEnv):
        def __init__(self, window: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(window, *args, **kwargs)
            seen.append((window.index, self.funding))

    monkeypatch.setattr(rl_agent, "ParamAdjustEnv", Recorded)
    start = pd.Timestamp(HELD_OUT)
    week = WeekData(
        "swap-weekly", series, start, start + pd.Timedelta(days=1), pd.DataFrame(), pd.DataFrame(),
        pd.Series(dtype=float), {}, None, (),
    )  # fmt: skip
    change = reinforcement_learning(services, SWAP_SYMBOL, train_days=10, timesteps=64)(week)
    assert change["kind"] == "reinforcement_learning" and "skipped" not in change
    stored = stored_funding(services.store, series)
    assert stored is not None and len(stored)
    assert len(seen) == 4  # two training envs, the hold-out comparison, the proposal
    for index, rates in seen:
        np.testing.assert_array_equal(rates, funding_at_bars(stored, index))
        assert np.count_nonzero(rates) >= 3  # a day or more of 8-hourly settlements in each window
