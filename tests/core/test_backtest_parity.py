"""scalpbot's backtest against backtesting.py 0.6.6 on real 1-minute bars, trade for trade.

The replay and how it maps the rules are in ``support/backtest_oracle.py``. Times, sides, prices, quantities and
exit reasons must be identical; PnL and fees equal to 1e-9 relative (of the trade notional); equity likewise.
Each scenario also asserts that it exercised what it claims (stop kinds, gaps, reversals, ties), so a change that
silently stops producing those cases fails instead of passing vacuously. The venue is the oracle's: shorts allowed,
any quantity, no minimum (``backtest``'s default ``NO_ORDER_RULES``); venue rules are checked against the paper and
live brokers in ``tests/adapters/test_order_quantities.py`` and ``tests/adapters/test_paper_broker.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.core.backtest.enums import OrderRules
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.strategies import sma_cross_signals

from support.backtest_oracle import load_sample_bars, run_backtesting_py

FEE = 0.0004
CASH = 10_000_000.0
XMR_BTC = Path(__file__).resolve().parents[1] / "fixtures" / "XMR_BTC-1m.csv"


@pytest.fixture(scope="module")
def btc_bars() -> pd.DataFrame:
    return load_sample_bars()


@pytest.fixture(scope="module")
def xmr_bars() -> pd.DataFrame:
    return pd.read_csv(XMR_BTC, index_col="timestamp", parse_dates=True)


def random_signals(bars: pd.DataFrame, *, seed: int, rate: float, max_qty: int = 3) -> pd.DataFrame:
    """Return random long/short signals with whole-unit sizes, mixed SL/TP widths and time stops."""
    rng = np.random.default_rng(seed)
    n = len(bars)
    side = rng.choice(np.array([-1, 0, 1], dtype=np.int8), n, p=[rate / 2, 1 - rate, rate / 2])
    side[0] = 0
    return pd.DataFrame(
        {
            "side": side,
            "size": rng.integers(1, max_qty + 1, n).astype(np.float64),
            "sl": rng.uniform(0.0005, 0.004, n),
            "tp": rng.uniform(0.0005, 0.006, n),
            "max_hold": rng.choice(np.array([0, 3, 20, 60]), n),
        },
        index=bars.index,
    )


def assert_same_trades(ours: pd.DataFrame, oracle: pd.DataFrame) -> None:
    assert len(ours) == len(oracle)
    for column in ("entry_time", "exit_time", "side", "entry_price", "exit_price", "qty"):
        np.testing.assert_array_equal(ours[column].to_numpy(), oracle[column].to_numpy(), err_msg=column)
    np.testing.assert_array_equal(
        ours["exit_reason"].astype(str).to_numpy(), oracle["exit_reason"].to_numpy()
    )
    notional = ours["qty"].to_numpy() * ours["entry_price"].to_numpy()
    for column in ("pnl", "fees"):
        error = np.abs(ours[column].to_numpy() - oracle[column].to_numpy(dtype=np.float64))
        assert np.all(error <= 1e-9 * notional), column


def stop_bar_opens_beyond_stop(bars: pd.DataFrame, signals: pd.DataFrame, trades: pd.DataFrame) -> np.ndarray:
    """Return, per trade, whether its exit bar opened beyond its SL (entry bar excluded)."""
    index = bars.index
    entry = index.get_indexer(trades["entry_time"])
    exit_ = index.get_indexer(trades["exit_time"])
    direction = trades["side"].to_numpy(dtype=np.float64)
    sl_price = trades["entry_price"].to_numpy() * (1.0 - direction * signals["sl"].to_numpy()[entry - 1])
    exit_open = bars["open"].to_numpy()[exit_]
    return (exit_ > entry) & (direction * (exit_open - sl_price) <= 0.0)


def test_random_long_and_short_trades_match_backtesting_py_with_fees(btc_bars: pd.DataFrame) -> None:
    bars = btc_bars.iloc[:30_000]
    signals = random_signals(bars, seed=1, rate=0.04)

    ours = backtest(bars, signals, fee=FEE, initial_equity=CASH, size_in="qty")
    oracle = run_backtesting_py(bars, signals, fee=FEE, slippage=0.0, cash=CASH)

    assert_same_trades(ours.trades, oracle.trades)
    np.testing.assert_allclose(ours.equity.to_numpy()[1:], oracle.equity[1:], rtol=1e-12)
    reasons = ours.trades["exit_reason"].value_counts()
    assert min(reasons["sl"], reasons["tp"], reasons["time"], reasons["signal"]) >= 50
    assert set(ours.trades["side"]) == {-1, 1}
    same_bar = ours.trades["entry_time"] == ours.trades["exit_time"]
    assert same_bar.sum() >= 20  # stops hit on the entry bar


def test_sma_cross_reversals_match_backtesting_py(btc_bars: pd.DataFrame) -> None:
    bars = btc_bars.iloc[20_000:45_000]
    signals = sma_cross_signals(bars, length=30, sl=0.004, tp=0.008, size=2.0, max_hold=45)

    ours = backtest(bars, signals, fee=FEE, initial_equity=CASH, size_in="qty")
    oracle = run_backtesting_py(bars, signals, fee=FEE, slippage=0.0, cash=CASH)

    assert_same_trades(ours.trades, oracle.trades)
    np.testing.assert_allclose(ours.equity.to_numpy()[1:], oracle.equity[1:], rtol=1e-12)
    assert (ours.trades["exit_reason"] == "signal").sum() >= 500
    assert (ours.trades["exit_reason"] == "time").sum() >= 20


def test_gappy_thin_market_fills_stops_at_the_gap_open_like_backtesting_py(xmr_bars: pd.DataFrame) -> None:
    signals = random_signals(xmr_bars, seed=7, rate=0.08, max_qty=900)

    ours = backtest(xmr_bars, signals, fee=FEE, initial_equity=CASH, size_in="qty")
    oracle = run_backtesting_py(xmr_bars, signals, fee=FEE, slippage=0.0, cash=CASH)

    assert_same_trades(ours.trades, oracle.trades)
    np.testing.assert_allclose(ours.equity.to_numpy()[1:], oracle.equity[1:], rtol=1e-12)
    trades = ours.trades
    gapped = stop_bar_opens_beyond_stop(xmr_bars, signals, trades)
    exit_open = xmr_bars["open"].to_numpy()[xmr_bars.index.get_indexer(trades["exit_time"])]
    gap_fills = gapped & (trades["exit_reason"] == "sl").to_numpy()
    assert gap_fills.sum() >= 20
    np.testing.assert_array_equal(trades["exit_price"].to_numpy()[gap_fills], exit_open[gap_fills])
    # the tie: a pending time/signal exit at an open that gaps through the stop is a time/signal exit
    assert (gapped & trades["exit_reason"].isin(["time", "signal"]).to_numpy()).sum() >= 5


def test_bars_dropped_from_real_data_make_gaps_that_match_backtesting_py(btc_bars: pd.DataFrame) -> None:
    bars = btc_bars.iloc[45_000:].sample(frac=0.5, random_state=3).sort_index()
    signals = random_signals(bars, seed=11, rate=0.05)

    ours = backtest(bars, signals, fee=FEE, initial_equity=CASH, size_in="qty")
    oracle = run_backtesting_py(bars, signals, fee=FEE, slippage=0.0, cash=CASH)

    assert_same_trades(ours.trades, oracle.trades)
    np.testing.assert_allclose(ours.equity.to_numpy()[1:], oracle.equity[1:], rtol=1e-12)
    gapped = stop_bar_opens_beyond_stop(bars, signals, ours.trades)
    assert (gapped & (ours.trades["exit_reason"] == "sl").to_numpy()).sum() >= 5


def test_slippage_worsens_entries_like_backtesting_py_spread_and_exits_too(btc_bars: pd.DataFrame) -> None:
    bars = btc_bars.iloc[:20_000]
    signals = random_signals(bars, seed=5, rate=0.04)
    slippage = 0.0002

    ours = backtest(bars, signals, fee=FEE, slippage=slippage, initial_equity=CASH, size_in="qty")
    oracle = run_backtesting_py(bars, signals, fee=FEE, slippage=slippage, cash=CASH)

    assert_same_trades(ours.trades, oracle.trades)
    frictionless = backtest(bars, signals, fee=FEE, initial_equity=CASH, size_in="qty")
    assert ours.metrics["total_return"] < frictionless.metrics["total_return"]  # type: ignore[operator]


def test_a_position_open_at_the_end_is_reported_open_and_marked_at_the_last_close(
    btc_bars: pd.DataFrame,
) -> None:
    bars = btc_bars.iloc[:5_000]
    signals = random_signals(bars, seed=2, rate=0.02)
    signals.iloc[-10:, signals.columns.get_loc("side")] = 0
    signals.iloc[-10, signals.columns.get_loc("side")] = 1
    signals.iloc[-10:, signals.columns.get_loc("sl")] = np.inf
    signals.iloc[-10:, signals.columns.get_loc("tp")] = np.inf
    signals.iloc[-10:, signals.columns.get_loc("max_hold")] = 0

    ours = backtest(bars, signals, fee=FEE, initial_equity=CASH, size_in="qty")
    oracle = run_backtesting_py(bars, signals, fee=FEE, slippage=0.0, cash=CASH)

    assert_same_trades(ours.trades, oracle.trades)
    last = ours.trades.iloc[-1]
    assert last["exit_reason"] == "open"
    assert last["exit_price"] == bars["close"].iloc[-1]
    assert ours.equity.iloc[-1] == pytest.approx(CASH + ours.trades["pnl"].sum(), rel=1e-12)


def test_swap_entries_sized_at_the_decision_close_match_backtesting_py(xmr_bars: pd.DataFrame) -> None:
    """A derivatives venue's entries are contracts sized at the decision bar's close, then fill at the next open."""
    signals = random_signals(xmr_bars, seed=13, rate=0.08)
    rng = np.random.default_rng(1013)  # not the signals' seed: its stream would tie the sizes to the sides
    signals["size"] = rng.uniform(0.001, 0.03, len(xmr_bars))  # of 10 M BTC at ~0.03: 0.3 M to 10 M XMR
    swap = OrderRules(amount_step=1.0, min_qty=0.0, min_notional=0.0, shorts=True, size_at_close=True)

    ours = backtest(xmr_bars, signals, fee=FEE, initial_equity=CASH, rules=swap)
    oracle = run_backtesting_py(xmr_bars, signals, fee=FEE, slippage=0.0, cash=CASH, size_at_close=True)

    assert_same_trades(ours.trades, oracle.trades)
    np.testing.assert_allclose(ours.equity.to_numpy()[1:], oracle.equity[1:], rtol=1e-12)
    trades = ours.trades
    assert set(trades["side"]) == {-1, 1}
    assert (trades["exit_reason"] == "signal").sum() >= 50  # reversals: sized on equity marked at the close
    # the rule is exercised: sized at the fill (open) instead, most quantities would differ
    at_fill = backtest(
        xmr_bars, signals, fee=FEE, initial_equity=CASH, rules=swap._replace(size_at_close=False)
    )
    merged = trades.merge(at_fill.trades, on="entry_time", suffixes=("", "_fill"))
    assert (merged["qty"] != merged["qty_fill"]).mean() >= 0.5
