"""The RL environment scores each step window with the funding a swap position pays, as the backtest charges it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.evaluation import PolicyEvaluator, PolicyWindow
from scalpbot.core.funding import funding_at_bars
from scalpbot.core.policy import signals_frame
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.errors import DataError
from scalpbot.ml.rl_env import ParamAdjustEnv

DAY = 1440
PARAMS = StrategyParams(entry_threshold=0.0, max_hold=600, allow_short=True)


def window_of(bars: pd.DataFrame) -> PolicyWindow:
    rng = np.random.default_rng(4)
    p_long = rng.uniform(0.2, 0.6, len(bars))
    probs = np.column_stack([0.8 - p_long, np.full(len(bars), 0.2), p_long])
    return PolicyWindow.from_frame(bars, probs, np.full(len(bars), 0.004))


def test_each_step_window_pays_the_funding_of_its_positions(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[: 14 * DAY]
    window = window_of(bars)
    times = pd.DatetimeIndex(bars.index)
    times = times[(times.hour % 8 == 0) & (times.minute == 0)]
    funding = pd.Series(0.0005, index=times)  # a steep 0.05 % per 8 h, so it shows
    rates = funding_at_bars(funding, pd.DatetimeIndex(bars.index))
    plain = ParamAdjustEnv(window, PARAMS, ParamBounds.default())
    funded = ParamAdjustEnv(window, PARAMS, ParamBounds.default(), funding=rates)
    k = plain.n_windows - 1
    start, stop = (int(x) for x in funded.steps[k])
    expected = PolicyEvaluator(window.slice(start, stop), funding=rates[start:stop])(funded.base)
    assert funded.evaluate(k, funded.base).total_return == expected.total_return
    assert funded.evaluate(k, funded.base).total_return != plain.evaluate(k, plain.base).total_return
    part = bars.iloc[start:stop]
    piece = window.slice(start, stop)
    signals = signals_frame(pd.DatetimeIndex(part.index), piece.probs, piece.vol, funded.base)
    result = backtest(part, signals, fee=0.0004, initial_equity=1.0, funding=funding)
    assert result.metrics["funding_paid"] != 0.0
    assert expected.total_return == pytest.approx(result.metrics["total_return"], abs=1e-12)


def test_a_funding_series_of_another_length_is_refused(sample_bars: pd.DataFrame) -> None:
    window = window_of(sample_bars.iloc[: 3 * DAY])
    with pytest.raises(DataError, match="one rate per bar"):
        ParamAdjustEnv(window, PARAMS, ParamBounds.default(), funding=np.zeros(5))
