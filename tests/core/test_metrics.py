"""Metrics against backtesting.py's statistics and against an independent recomputation on the same trades."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from backtesting._stats import compute_stats

from scalpbot.core.backtest.frame import BacktestResult, backtest
from scalpbot.core.metrics import compute_metrics, daily_returns, max_drawdown
from scalpbot.core.strategies import sma_cross_signals

from support.backtest_oracle import load_sample_bars


@pytest.fixture(scope="module")
def run() -> tuple[pd.DataFrame, BacktestResult]:
    bars = load_sample_bars().iloc[:30_000]
    signals = sma_cross_signals(bars, length=40, sl=0.004, tp=0.006, size=0.8, max_hold=90)
    return bars, backtest(bars, signals, fee=0.0004, slippage=0.0001, initial_equity=10_000.0)


def backtesting_py_stats(bars: pd.DataFrame, trades: pd.DataFrame, equity: pd.Series) -> pd.Series:
    """Return backtesting.py's statistics of our trades (in its column layout) and our equity curve."""
    entry_bar = bars.index.get_indexer(trades["entry_time"])
    exit_bar = bars.index.get_indexer(trades["exit_time"])
    frame = pd.DataFrame(
        {
            "Size": trades["side"].to_numpy() * trades["qty"].to_numpy(),
            "EntryBar": entry_bar,
            "ExitBar": exit_bar,
            "PnL": trades["pnl"].to_numpy(),
            "ReturnPct": trades["pnl"].to_numpy() / (trades["qty"] * trades["entry_price"]).to_numpy(),
            "Duration": (trades["exit_time"] - trades["entry_time"]).to_numpy(),
        }
    )
    ohlc = bars.rename(columns=str.capitalize)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*dayofweek", module="backtesting")
        return compute_stats(trades=frame, equity=equity.to_numpy(), ohlc_data=ohlc, strategy_instance=None)


def test_metrics_match_backtesting_py_statistics_on_the_same_trades(
    run: tuple[pd.DataFrame, BacktestResult],
) -> None:
    bars, result = run
    trades, metrics = result.trades, result.metrics
    closed = trades[trades["exit_reason"] != "open"]
    assert len(closed) >= 300

    on_closed = backtesting_py_stats(bars, closed, result.equity)
    on_all = backtesting_py_stats(bars, trades, result.equity)

    assert metrics["trades"] == on_closed["# Trades"]
    assert metrics["win_rate"] == pytest.approx(on_closed["Win Rate [%]"] / 100, rel=1e-12)
    assert metrics["total_return"] == pytest.approx(on_closed["Return [%]"] / 100, rel=1e-12)
    assert metrics["max_drawdown"] == pytest.approx(-on_closed["Max. Drawdown [%]"] / 100, rel=1e-12)
    assert metrics["exposure"] == pytest.approx(on_all["Exposure Time [%]"] / 100, rel=1e-12)


def test_metrics_match_an_independent_recomputation(run: tuple[pd.DataFrame, BacktestResult]) -> None:
    """Recompute each metric the plain pandas way: resample for daily returns, boolean masks for trade stats."""
    _, result = run
    trades, equity, metrics = result.trades, result.equity, result.metrics
    pnl = trades.loc[trades["exit_reason"] != "open", "pnl"]
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]

    day_close = equity.resample("1D").last().dropna()
    day_returns = pd.concat([pd.Series([equity.iloc[0]]), day_close], ignore_index=True).pct_change().dropna()
    downside = math.sqrt((day_returns.clip(upper=0) ** 2).mean())
    hold = (trades["exit_time"] - trades["entry_time"])[trades["exit_reason"] != "open"] / pd.Timedelta(
        "1min"
    )

    assert metrics["sharpe"] == pytest.approx(
        day_returns.mean() / day_returns.std() * math.sqrt(365), rel=1e-9
    )
    assert metrics["sortino"] == pytest.approx(day_returns.mean() / downside * math.sqrt(365), rel=1e-9)
    assert metrics["risk_reward"] == pytest.approx(wins.mean() / -losses.mean(), rel=1e-12)
    assert metrics["profit_factor"] == pytest.approx(wins.sum() / -losses.sum(), rel=1e-12)
    assert metrics["expectancy"] == pytest.approx(pnl.mean(), rel=1e-12)
    assert metrics["avg_hold_bars"] == pytest.approx(hold.mean(), rel=1e-12)  # contiguous 1m bars
    assert metrics["fees_paid"] == pytest.approx(trades["fees"].sum(), rel=1e-12)
    peak_notional = (trades["qty"] * trades["entry_price"]).max()
    assert metrics["return_on_capital"] == pytest.approx(trades["pnl"].sum() / peak_notional, rel=1e-12)
    assert len(day_returns) == 21  # 2024-11-20 .. 2024-12-10


def test_zero_trades_give_zeros_and_nones_that_serialize_to_json() -> None:
    bars = load_sample_bars().iloc[:3_000]
    signals = sma_cross_signals(bars)
    signals["side"] = 0

    result = backtest(bars, signals)

    assert result.metrics == {
        "total_return": 0.0,
        "win_rate": None,
        "risk_reward": None,
        "max_drawdown": 0.0,
        "return_on_capital": None,
        "sharpe": None,
        "sortino": None,
        "profit_factor": None,
        "expectancy": None,
        "trades": 0,
        "exposure": 0.0,
        "avg_hold_bars": None,
        "fees_paid": 0.0,
    }
    json.dumps(result.metrics, allow_nan=False)


def ledger_trades(pnl: list[float]) -> pd.DataFrame:
    """Return ledger-style trades (no exit_reason column, exits inside bars) with the given PnL."""
    start = pd.Timestamp("2024-05-01", tz="UTC")
    entry = [start + pd.Timedelta(minutes=10 * k) for k in range(len(pnl))]
    return pd.DataFrame(
        {
            "entry_time": entry,
            "exit_time": [t + pd.Timedelta(minutes=3, seconds=20) for t in entry],
            "qty": 1.0,
            "entry_price": 100.0,
            "pnl": pnl,
            "fees": 0.1,
        }
    )


def minute_equity(values: list[float], start: str = "2024-05-01") -> pd.Series:
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="1min", tz="UTC"))


def test_ratios_over_losses_are_none_when_no_trade_lost() -> None:
    metrics = compute_metrics(ledger_trades([1.0, 2.0, 0.5]), minute_equity([100.0] * 40))
    assert metrics["win_rate"] == 1.0
    assert metrics["risk_reward"] is None
    assert metrics["profit_factor"] is None
    assert metrics["expectancy"] == pytest.approx(3.5 / 3)
    json.dumps(metrics, allow_nan=False)


def test_ledger_trades_map_exit_times_inside_a_bar_to_that_bar() -> None:
    metrics = compute_metrics(ledger_trades([1.0, -1.0]), minute_equity([100.0] * 20))
    assert metrics["avg_hold_bars"] == 3.0
    assert metrics["exposure"] == pytest.approx(8 / 20)


def test_exposure_counts_overlapping_trades_once() -> None:
    trades = ledger_trades([1.0, -1.0])
    trades.loc[1, "entry_time"] = trades.loc[0, "entry_time"] + pd.Timedelta(minutes=2)
    trades.loc[1, "exit_time"] = trades.loc[1, "entry_time"] + pd.Timedelta(minutes=4)
    assert compute_metrics(trades, minute_equity([100.0] * 20))["exposure"] == pytest.approx(7 / 20)


def test_max_drawdown_is_the_largest_fall_from_a_running_peak() -> None:
    assert max_drawdown(minute_equity([100.0, 120.0, 90.0, 130.0, 65.0, 200.0])) == pytest.approx(0.5)


def test_daily_returns_start_from_the_first_equity_and_skip_days_without_bars() -> None:
    index = pd.DatetimeIndex(
        ["2024-05-01 00:00", "2024-05-01 23:59", "2024-05-03 12:00", "2024-05-04 00:00"], tz="UTC"
    )
    returns = daily_returns(pd.Series([100.0, 110.0, 99.0, 108.9], index=index))
    np.testing.assert_allclose(returns, [0.1, -0.1, 0.1])
