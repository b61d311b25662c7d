"""The random-entry test: a release that only holds a rising market is told apart from one that times it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.costs import TradingCosts
from scalpbot.ml.timing import MIN_TIMED_TRADES, timing_p_value, timing_test

COSTS = TradingCosts(fee=0.001, slippage=0.0)


def _bars(log_steps: np.ndarray) -> pd.DataFrame:
    close = 100.0 * np.exp(np.cumsum(log_steps))
    open_ = np.concatenate(([100.0], close[:-1]))
    index = pd.date_range("2024-03-01", periods=len(close), freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.0001,
            "low": np.minimum(open_, close) / 1.0001,
            "close": close,
            "volume": 1.0,
        },
        index=index,
    )


def _longs(bars: pd.DataFrame, decisions: np.ndarray, hold: int) -> pd.DataFrame:
    side = np.zeros(len(bars), dtype=np.int8)
    side[decisions] = 1
    signals = pd.DataFrame(
        {"side": side, "size": 1.0, "sl": np.inf, "tp": np.inf, "max_hold": hold}, bars.index
    )
    return backtest(bars, signals, fee=COSTS.fee, slippage=0.0, initial_equity=1.0).trades


def test_trades_that_only_hold_a_rising_market_are_no_better_than_random_entries() -> None:
    rng = np.random.default_rng(3)
    bars = _bars(rng.normal(0.0002, 0.001, 20_000))  # +0.6 % a 30-bar hold: far above the 0.2 % round trip
    decisions = np.sort(rng.choice(np.arange(0, 19_900, 100), size=60, replace=False))
    trades = _longs(bars, decisions, 30)
    assert trades["pnl"].sum() > 0.0  # the bootstrap against not trading would see an edge
    test = timing_test(bars, trades, COSTS, seed=1)
    assert test.p_value is not None and test.p_value > 0.05
    assert test.trades == 60


def test_trades_entered_before_planted_jumps_beat_random_entries() -> None:
    rng = np.random.default_rng(4)
    steps = rng.normal(0.0, 0.001, 20_000)
    decisions = np.arange(200, 19_800, 400)
    steps[decisions + 5] += 0.006  # a jump five bars after each decision bar's close
    bars = _bars(steps)
    test = timing_test(bars, _longs(bars, decisions, 30), COSTS, seed=1)
    assert test.p_value is not None and test.p_value < 0.01
    assert test.observed > test.random_mean + 0.2


def test_too_few_closed_trades_give_no_p_value_and_open_trades_are_left_out() -> None:
    rng = np.random.default_rng(5)
    bars = _bars(rng.normal(0.0, 0.001, 2_000))
    decisions = np.array([100, 400, 700, 1_000, 1_990])  # the last is still open at the window's end
    trades = _longs(bars, decisions, 30)
    assert (trades["exit_reason"] == "open").sum() == 1
    test = timing_test(bars, trades, COSTS)
    assert test.trades == MIN_TIMED_TRADES - 1 and test.p_value is None


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(MIN_TIMED_TRADES, 40),
    hold=st.integers(1, 50),
    observed=st.floats(-1.0, 1.0),
)
def test_the_p_value_is_a_probability_fixed_by_the_seed(
    seed: int, n: int, hold: int, observed: float
) -> None:
    rng = np.random.default_rng(seed)
    opens = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, 500)))
    holds, sides = np.full(n, hold), rng.choice([-1.0, 1.0], size=n)
    first = timing_p_value(opens, holds, sides, observed, 0.002, resamples=300, seed=seed)
    again = timing_p_value(opens, holds, sides, observed, 0.002, resamples=300, seed=seed)
    assert first == again
    assert first.p_value is not None and 1.0 / 301 <= first.p_value <= 1.0
    higher = timing_p_value(opens, holds, sides, observed + 0.5, 0.002, resamples=300, seed=seed)
    assert higher.p_value is not None and higher.p_value <= first.p_value
