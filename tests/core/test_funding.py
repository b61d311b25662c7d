"""Funding on perpetual swaps: charged by the kernel at funding times on the position held through them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.funding import funding_at_bars, funding_payments
from scalpbot.core.venue import default_venue
from scalpbot.errors import DataError

Bar = tuple[float, float, float, float]
FLAT: Bar = (100.0, 100.0, 100.0, 100.0)


def bars_of(rows: list[Bar]) -> pd.DataFrame:
    index = pd.date_range("2024-01-01 07:57", periods=len(rows), freq="1min", tz="UTC")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index)


def signals_of(bars: pd.DataFrame, decisions: dict[int, int], max_hold: int = 0) -> pd.DataFrame:
    n = len(bars)
    side = np.zeros(n, np.int8)
    for t, s in decisions.items():
        side[t] = s
    return pd.DataFrame(
        {"side": side, "size": np.full(n, 2.0), "sl": np.full(n, 0.5), "tp": np.full(n, 0.5),
         "max_hold": np.full(n, max_hold, np.int64)},
        index=bars.index,
    )  # fmt: skip


EIGHT = pd.Timestamp("2024-01-01 08:00", tz="UTC")  # bar 3


def run(decisions: dict[int, int], rate: float, rows: list[Bar] | None = None, max_hold: int = 0):  # type: ignore[no-untyped-def]
    bars = bars_of(rows or [FLAT] * 8)
    funding = pd.Series([rate], index=pd.DatetimeIndex([EIGHT]))
    return backtest(bars, signals_of(bars, decisions, max_hold), fee=0.0, size_in="qty", funding=funding)


@pytest.mark.parametrize(
    ("side", "rate", "paid"), [(1, 0.0001, 0.02), (-1, 0.0001, -0.02), (-1, -0.0003, 0.06)]
)
def test_a_position_held_through_a_funding_time_pays_side_qty_price_rate(
    side: int, rate: float, paid: float
) -> None:
    result = run({0: side}, rate)  # 2 units entered at bar 1's open, held to the end
    trade = result.trades.iloc[0]
    assert trade["funding"] == pytest.approx(paid, abs=1e-15)
    assert trade["pnl"] == pytest.approx(-paid, abs=1e-15)
    assert result.equity.iloc[2] == 10_000.0  # before the funding time
    assert result.equity.iloc[3] == pytest.approx(10_000.0 - paid, abs=1e-12)
    assert result.metrics["funding_paid"] == pytest.approx(paid, abs=1e-15)


def test_a_position_opened_at_the_funding_bar_pays_nothing_and_one_closed_there_pays() -> None:
    opened = run({2: 1}, 0.001)  # fills at bar 3's open, after the settlement
    assert opened.trades["funding"].tolist() == [0.0]
    closed = run(
        {0: 1, 2: -1}, 0.001
    )  # long from bar 1, reversed at bar 3's open: the long paid, the short not
    assert closed.trades["exit_reason"].tolist() == ["signal", "open"]
    assert closed.trades["funding"].tolist() == pytest.approx([0.2, 0.0])


def test_without_a_funding_series_nothing_is_charged_and_the_result_is_unchanged() -> None:
    bars = bars_of([FLAT, (100, 103, 99, 102), (102, 104, 101, 103), (103, 103, 95, 96), *[FLAT] * 4])
    signals = signals_of(bars, {0: 1, 4: -1})
    plain = backtest(bars, signals, fee=0.0004, size_in="qty")
    empty = backtest(bars, signals, fee=0.0004, size_in="qty", funding=pd.Series([], dtype=float))
    pd.testing.assert_frame_equal(plain.trades, empty.trades)
    assert (plain.trades["funding"] == 0.0).all()


def test_funding_rates_off_the_bar_times_are_not_charged_and_bad_rates_are_refused() -> None:
    index = bars_of([FLAT] * 4).index
    off = pd.Series([0.01, 0.02], index=pd.DatetimeIndex([EIGHT + pd.Timedelta(seconds=1), EIGHT]))
    assert funding_at_bars(off, index).tolist() == [0.0, 0.0, 0.0, 0.02]
    with pytest.raises(DataError, match="not a finite number"):
        funding_at_bars(pd.Series([np.nan], index=pd.DatetimeIndex([EIGHT])), index)
    with pytest.raises(DataError, match="UTC DatetimeIndex"):
        funding_at_bars(pd.Series([0.1], index=[0]), index)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([-1, 0, 0, 1]), min_size=30, max_size=30),
    st.lists(st.floats(-0.003, 0.003, allow_nan=False), min_size=30, max_size=30),
    st.integers(0, 6),
)
def test_the_payments_of_each_trade_add_up_to_its_funding_and_equity(
    sides: list[int], rates: list[float], max_hold: int
) -> None:
    rng = np.random.default_rng(len(sides) + max_hold)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 30)))
    opens = np.r_[100.0, closes[:-1]]
    rows = [(o, max(o, c) * 1.002, min(o, c) * 0.998, c) for o, c in zip(opens, closes, strict=True)]
    bars = bars_of(rows)
    funding = pd.Series(rates, index=bars.index)[::3]  # every third bar settles
    signals = signals_of(bars, dict(enumerate(sides)), max_hold).assign(sl=0.015, tp=0.015)
    result = backtest(bars, signals, fee=0.0, size_in="qty", funding=funding)
    per_bar = funding_at_bars(funding, pd.DatetimeIndex(bars.index))
    entry = bars.index.get_indexer(pd.DatetimeIndex(result.trades["entry_time"]))
    exit_ = bars.index.get_indexer(pd.DatetimeIndex(result.trades["exit_time"]))
    total = 0.0
    for k, trade in enumerate(result.trades.itertuples()):
        paid = funding_payments(per_bar, opens, pd.DatetimeIndex(bars.index), int(entry[k]), int(exit_[k]),
                                int(trade.side), float(trade.qty), "x")  # fmt: skip
        assert sum(p.amount for p in paid) == pytest.approx(trade.funding, abs=1e-12)
        gross = trade.side * trade.qty * (trade.exit_price - trade.entry_price)
        assert trade.pnl == pytest.approx(gross - trade.funding, abs=1e-9)
        total += trade.pnl
    assert result.equity.iloc[-1] == pytest.approx(10_000.0 + total, abs=1e-9)


def test_a_venue_booking_funding_to_8_decimals_is_charged_each_payment_rounded_so() -> None:
    """Binance USD-M writes each FUNDING_FEE with 8 decimals (half to even): the kernel charges that, and the
    payments the paper broker books are the same figures."""
    rng = np.random.default_rng(7)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 30)))
    opens = np.r_[100.0, closes[:-1]]
    rows = [(o, max(o, c) * 1.002, min(o, c) * 0.998, c) for o, c in zip(opens, closes, strict=True)]
    bars = bars_of(rows)
    funding = pd.Series(rng.uniform(-3e-4, 3e-4, 30), index=bars.index)[::3]
    signals = signals_of(bars, {0: 1, 9: -1}, 0).assign(size=0.123, sl=0.5, tp=0.5)
    rules = default_venue("binanceusdm", "BTC/USDT:USDT").order_rules()
    assert rules.funding_step == 1e-8
    assert default_venue("okx", "BTC/USDT:USDT").order_rules().funding_step == 0.0
    exact = backtest(bars, signals, fee=0.0, size_in="qty", funding=funding)
    booked = backtest(
        bars,
        signals,
        fee=0.0,
        size_in="qty",
        funding=funding,
        rules=rules._replace(amount_step=0.0, min_qty=0.0, min_notional=0.0),
    )
    per_bar = funding_at_bars(funding, pd.DatetimeIndex(bars.index))
    entry = bars.index.get_indexer(pd.DatetimeIndex(booked.trades["entry_time"]))
    exit_ = bars.index.get_indexer(pd.DatetimeIndex(booked.trades["exit_time"]))
    assert len(booked.trades) == 2
    for k, trade in enumerate(booked.trades.itertuples()):
        paid = funding_payments(per_bar, opens, pd.DatetimeIndex(bars.index), int(entry[k]), int(exit_[k]),
                                int(trade.side), float(trade.qty), "x", rules.funding_step)  # fmt: skip
        assert paid and all(p.amount == round(p.amount, 8) for p in paid)
        assert sum(p.amount for p in paid) == pytest.approx(trade.funding, abs=1e-12)
        unrounded = sum(p.side * p.qty * p.price * p.rate for p in paid)
        assert abs(trade.funding - unrounded) <= 5e-9 * len(paid) + 1e-15
    assert not np.array_equal(exact.trades["funding"].to_numpy(), booked.trades["funding"].to_numpy())
