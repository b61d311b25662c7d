"""Trade outcomes per decision bar (the meta-labels' target): each equals the backtest kernel's trade."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.labels import ohlc_prices
from scalpbot.core.trade_outcomes import trade_outcomes
from scalpbot.errors import DataError


def seamless(bars: pd.DataFrame) -> pd.DataFrame:
    """Return ``bars`` with each open at the previous close (high/low widened to hold it): a market that trades
    without pause, where the kernel's time exit at the next open is the label's exit at the close."""
    out = bars[["open", "high", "low", "close"]].copy()
    out["open"] = out["close"].shift(1).fillna(out["open"])
    out["high"] = out[["high", "open"]].max(axis=1)
    out["low"] = out[["low", "open"]].min(axis=1)
    return out


def kernel_trade(
    bars: pd.DataFrame, t: int, side: int, sl: float, tp: float, hold: int, fee: float, slip: float
) -> float:
    """Backtest one trade decided on bar ``t``; return its net PnL per unit of entry notional."""
    window = bars.iloc[t : t + hold + 2]
    signals = pd.DataFrame(
        {"side": np.int8(0), "size": 1.0, "sl": sl, "tp": tp, "max_hold": np.int64(hold)}, index=window.index
    )
    signals.iloc[0, 0] = side
    trades = backtest(window, signals, fee=fee, slippage=slip, size_in="qty").trades
    assert len(trades) == 1
    trade = trades.iloc[0]
    return float(trade["pnl"] / (trade["entry_price"] * trade["qty"]))


@settings(max_examples=40, deadline=None)
@given(
    hold=st.sampled_from([1, 5, 30]),
    sl=st.floats(0.0005, 0.01),
    tp=st.floats(0.0005, 0.02),
    fee=st.sampled_from([0.0, 0.001]),
    slip=st.sampled_from([0.0, 0.0002]),
    data=st.data(),
)
def test_each_rows_outcome_is_the_backtest_kernels_trade_decided_on_that_bar(
    sample_bars: pd.DataFrame, hold: int, sl: float, tp: float, fee: float, slip: float, data: st.DataObject
) -> None:
    bars = seamless(sample_bars.iloc[:3000])
    n = len(bars)
    rows = data.draw(
        st.lists(st.integers(0, n - hold - 2), min_size=1, max_size=4, unique=True), label="rows"
    )
    side = np.zeros(n, np.int8)
    for i, t in enumerate(rows):
        side[t] = 1 if i % 2 == 0 else -1
    outcome = trade_outcomes(
        ohlc_prices(bars), side, np.full(n, sl), np.full(n, tp), max_hold=hold, fee=fee, slippage=slip
    )
    for t in rows:
        assert outcome[t] == pytest.approx(
            kernel_trade(bars, t, int(side[t]), sl, tp, hold, fee, slip), rel=1e-9, abs=1e-12
        )
    assert np.isnan(np.delete(outcome, rows)).all()  # no side, no trade


def test_a_trade_that_would_read_past_the_end_has_no_outcome_and_later_bars_never_change_one(
    sample_bars: pd.DataFrame,
) -> None:
    bars = seamless(sample_bars.iloc[:200])
    n, hold = len(bars), 10
    side = np.ones(n, np.int8)
    stops = np.full(n, 0.002)
    prices = ohlc_prices(bars)
    outcome = trade_outcomes(prices, side, stops, stops, max_hold=hold, fee=0.001, slippage=0.0, end=150)
    assert np.isfinite(outcome[: 150 - hold]).all()
    assert np.isnan(outcome[150 - hold :]).all()  # row 140 needs bar 150
    moved = tuple(p.copy() for p in prices)
    for p in moved:
        p[150:] *= 1.5
    again = trade_outcomes(moved, side, stops, stops, max_hold=hold, fee=0.001, slippage=0.0, end=150)
    np.testing.assert_array_equal(outcome, again)


def test_a_time_exit_pays_the_close_after_the_hold_less_both_fees() -> None:
    close = np.array([100.0, 100.0, 101.0, 102.0, 102.0])
    prices = (close.copy(), close + 0.5, close - 0.5, close)  # open = close, barriers far away
    side = np.array([1, 0, 0, 0, 0], np.int8)
    wide = np.full(5, 0.5)
    out = trade_outcomes(prices, side, wide, wide, max_hold=2, fee=0.001, slippage=0.0)
    assert out[0] == pytest.approx(
        (101.0 - 100.0 - 0.001 * (101.0 + 100.0)) / 100.0
    )  # in at open[1], out at close[2]


@pytest.mark.parametrize(
    ("sides", "hold", "message"),
    [(4, 2, "side, sl and tp must have one row per bar"), (5, 0, "max_hold must be at least 1 bar")],
)
def test_bad_shapes_and_holds_are_refused_with_the_fix(sides: int, hold: int, message: str) -> None:
    flat = np.ones(5)
    with pytest.raises(DataError, match=message):
        trade_outcomes(
            (flat, flat, flat, flat),
            np.ones(sides, np.int8),
            flat,
            flat,
            max_hold=hold,
            fee=0.0,
            slippage=0.0,
        )
