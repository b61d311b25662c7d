"""The whole account's metrics over several symbols: the summed equity curve and the capital committed at once."""

from __future__ import annotations

import pandas as pd
import pytest

from scalpbot.core.metrics import compute_metrics
from scalpbot.core.portfolio_metrics import account_equity, peak_gross_notional, portfolio_metrics

T0 = pd.Timestamp("2024-01-01T00:00:00Z")


def _trades(rows: list[tuple[int, int | None, float, float, float]]) -> pd.DataFrame:
    """Trades from ``(entry minute, exit minute or None for open, qty, entry price, pnl)``."""
    return pd.DataFrame(
        {
            "entry_time": [T0 + pd.Timedelta(minutes=e) for e, *_ in rows],
            "exit_time": [T0 + pd.Timedelta(minutes=x if x is not None else 99) for _, x, *_ in rows],
            "side": [1] * len(rows),
            "entry_price": [p for *_, p, _ in rows],
            "exit_price": [p for *_, p, _ in rows],
            "qty": [q for _, _, q, _, _ in rows],
            "pnl": [pnl for *_, pnl in rows],
            "fees": [0.0] * len(rows),
            "exit_reason": ["open" if x is None else "tp" for _, x, *_ in rows],
        }
    )


def test_the_capital_committed_at_once_sums_overlapping_positions_only() -> None:
    # 100 from minute 0 to 10, 50 from 5 to 20 (overlap: 150), 120 from 10 (the first one's exit) on, open.
    trades = _trades([(0, 10, 1.0, 100.0, 5.0), (5, 20, 1.0, 50.0, -2.0), (10, None, 2.0, 60.0, 1.0)])
    assert peak_gross_notional(trades) == pytest.approx(
        170.0
    )  # 50 + 120: the first exits where the third enters
    assert peak_gross_notional(trades.iloc[:1]) == pytest.approx(100.0)
    assert peak_gross_notional(trades.iloc[:0]) == 0.0


def test_one_symbols_return_on_capital_is_the_single_symbol_metric() -> None:
    trades = _trades([(0, 10, 1.0, 100.0, 5.0), (10, 20, 1.0, 80.0, -2.0)])  # one position at a time
    index = pd.date_range(T0, periods=30, freq="1min")
    equity = pd.Series(1_000.0, index=index)
    assert dict(portfolio_metrics(trades, equity)) == dict(compute_metrics(trades, equity))
    both = _trades([(0, 10, 1.0, 100.0, 5.0), (5, 20, 1.0, 80.0, -2.0)])  # overlapping: 180 committed
    assert portfolio_metrics(both, equity).return_on_capital == pytest.approx(3.0 / 180.0)
    assert compute_metrics(both, equity).return_on_capital == pytest.approx(3.0 / 100.0)


def test_the_account_is_the_sum_of_the_symbols_curves_on_the_union_of_their_bars() -> None:
    a = pd.Series([10.0, 11.0, 12.0], index=pd.date_range(T0, periods=3, freq="1min"))
    b = pd.Series(
        [5.0, 6.0], index=pd.DatetimeIndex([T0 + pd.Timedelta(minutes=1), T0 + pd.Timedelta(minutes=3)])
    )
    account = account_equity({"A": a, "B": b})
    assert list(account.index.minute) == [0, 1, 2, 3]
    # B before its first bar: its first value; B without a bar at minute 2: its last; A after its last: its last
    assert account.tolist() == [15.0, 16.0, 17.0, 18.0]
    assert account_equity({}).empty
