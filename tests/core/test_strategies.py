"""The SMA-cross baseline: crossing rule, causality and the columns ``backtest()`` expects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalpbot.core.strategies import sma_cross_signals
from scalpbot.errors import ConfigError

from support.backtest_oracle import load_sample_bars


def bars_with_closes(closes: list[float]) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=len(closes), freq="1min", tz="UTC")
    close = np.asarray(closes)
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close}, index=index)


def test_close_crossing_above_its_sma_goes_long_and_below_goes_short() -> None:
    signals = sma_cross_signals(bars_with_closes([10, 10, 10, 9, 12, 12, 8]), length=3)
    # sma from bar 2: 10, 9.67, 10.33, 11, 10.67
    assert signals["side"].tolist() == [0, 0, 0, -1, 1, 0, -1]


def test_no_signal_before_length_bars_exist() -> None:
    signals = sma_cross_signals(bars_with_closes([5, 1, 9, 1, 9, 1]), length=4)
    assert signals["side"].iloc[:4].tolist() == [0, 0, 0, 0]
    assert signals["side"].iloc[4:].tolist() == [1, -1]


def test_signals_use_only_bars_up_to_the_decision_bar() -> None:
    bars = load_sample_bars().iloc[:5_000]
    full = sma_cross_signals(bars, length=50)
    assert (full["side"] != 0).sum() > 50
    for cut in (60, 777, 2_500, 4_999):
        changed = bars.copy()
        changed.iloc[cut:, :4] *= 1.05  # every later bar moves; earlier signals must not
        pd.testing.assert_frame_equal(sma_cross_signals(changed, length=50).iloc[:cut], full.iloc[:cut])
        pd.testing.assert_frame_equal(sma_cross_signals(bars.iloc[:cut], length=50), full.iloc[:cut])


def test_signals_carry_the_requested_stops_size_and_hold_on_the_bar_index() -> None:
    bars = bars_with_closes([1, 2, 3])
    signals = sma_cross_signals(bars, length=2, sl=0.002, tp=0.005, size=0.25, max_hold=15)
    assert signals.index.equals(bars.index)
    assert list(signals.columns) == ["side", "size", "sl", "tp", "max_hold"]
    assert signals[["size", "sl", "tp", "max_hold"]].drop_duplicates().values.tolist() == [
        [0.25, 0.002, 0.005, 15]
    ]


def test_a_length_below_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="length must be"):
        sma_cross_signals(bars_with_closes([1, 2]), length=0)
