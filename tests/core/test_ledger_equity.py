"""The equity curve rebuilt from trades equals the backtest kernel's, bar for bar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.ledger_equity import equity_from_trades
from scalpbot.core.strategies import sma_cross_signals


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 50_000), st.integers(5, 60), st.floats(0.0, 0.002))
def test_rebuilt_equity_equals_the_kernels(
    sample_bars: pd.DataFrame, start: int, length: int, slippage: float
) -> None:
    bars = sample_bars.iloc[start : start + 2_000]
    signals = sma_cross_signals(bars, length=length, sl=0.002, tp=0.003, size=0.7, max_hold=20)
    result = backtest(bars, signals, fee=0.0004, slippage=slippage)
    rebuilt = equity_from_trades(result.trades, bars, 10_000.0)
    np.testing.assert_allclose(rebuilt.to_numpy(), result.equity.to_numpy(), rtol=1e-10)


def test_a_week_slice_starts_from_the_trades_closed_before_it(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:6_000]
    result = backtest(bars, sma_cross_signals(bars, length=30, sl=0.002, tp=0.003), fee=0.0004)
    week = bars.iloc[3_000:]
    rebuilt = equity_from_trades(result.trades, week, 10_000.0)
    assert rebuilt.to_numpy() == pytest.approx(result.equity.iloc[3_000:].to_numpy(), rel=1e-10)
