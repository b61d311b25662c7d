"""Order planning: the venue-side rules equal the backtest kernel's, trade for trade."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.backtest.nb import stop_exit_nb
from scalpbot.core.execution import Position, Signal, client_order_id
from scalpbot.core.orders import held_bars, plan_flatten, plan_orders, protection_prices
from scalpbot.errors import DataError

BOT, SYMBOL, BAR = "bot-1", "BTC/USDT", 60
T0 = pd.Timestamp("2024-12-01T12:00:00Z")
MINUTE = pd.Timedelta(minutes=1)


def signal(
    at: int, side: int, *, size: float = 0.5, sl: float = 0.01, tp: float = 0.02, hold: int = 0
) -> Signal:
    return Signal(T0 + at * MINUTE, side, size, sl, tp, hold)


def long_from(entry_bar: int, *, hold: int = 0, fill_seconds: float = 0.0) -> Position:
    entry_time = T0 + entry_bar * MINUTE + pd.Timedelta(seconds=fill_seconds)
    return Position(1, 0.25, 100.0, entry_time, 99.0, 102.0, hold, "sb-entry")


def plan(sig: Signal, position: Position | None) -> list[tuple[str, int, str]]:
    return [
        (o.intent, o.side, o.reason)
        for o in plan_orders(sig, position, bot=BOT, symbol=SYMBOL, bar_seconds=BAR)
    ]


def test_long_signal_when_flat_plans_a_market_entry_then_its_stop_loss_and_take_profit():
    orders = plan_orders(
        signal(0, 1, size=0.4, sl=0.01, tp=0.03, hold=5), None, bot=BOT, symbol=SYMBOL, bar_seconds=BAR
    )

    assert [(o.intent, o.side, o.reason) for o in orders] == [
        ("entry", 1, "entry"),
        ("sl", -1, "sl"),
        ("tp", -1, "tp"),
    ]
    entry, sl, tp = orders
    assert entry.size == 0.4 and sl.distance == 0.01 and tp.distance == 0.03
    assert {o.max_hold for o in orders} == {5}
    assert [o.client_id for o in orders] == [
        client_order_id(BOT, SYMBOL, T0, tag) for tag in ("entry", "sl", "tp")
    ]


def test_same_side_signal_while_in_a_position_plans_nothing():
    assert plan(signal(3, 1), long_from(1)) == []


def test_zero_side_plans_nothing_flat_or_in_a_position():
    assert plan(signal(3, 0), None) == []
    assert plan(signal(3, 0), long_from(1)) == []


def test_opposite_signal_closes_then_reverses_at_the_same_open():
    orders = plan_orders(signal(3, -1), long_from(1), bot=BOT, symbol=SYMBOL, bar_seconds=BAR)

    assert [(o.intent, o.side, o.reason) for o in orders] == [
        ("exit", -1, "signal"),
        ("entry", -1, "entry"),
        ("sl", 1, "sl"),
        ("tp", 1, "tp"),
    ]
    assert orders[0].qty == 0.25
    assert orders[0].client_id == client_order_id(BOT, SYMBOL, T0 + 3 * MINUTE, "signal")


def test_opposite_signal_with_zero_size_only_closes():
    assert plan(signal(3, -1, size=0.0), long_from(1)) == [("exit", -1, "signal")]


def test_time_stop_closes_on_the_decision_that_exits_at_the_open_of_entry_bar_plus_max_hold():
    position = long_from(10, hold=3)

    assert plan(signal(11, 0), position) == []  # t - e + 1 = 2
    assert plan(signal(12, 0), position) == [("exit", -1, "time")]  # exits at the open of bar 13 = 10 + 3


def test_time_exit_comes_first_and_a_same_side_signal_then_reenters_as_when_flat():
    assert plan(signal(12, 1), long_from(10, hold=3)) == [
        ("exit", -1, "time"),
        ("entry", 1, "entry"),
        ("sl", -1, "sl"),
        ("tp", -1, "tp"),
    ]


def test_max_hold_zero_never_expires():
    assert plan(signal(10_000, 0), long_from(0, hold=0)) == []


def test_a_live_fill_time_inside_the_entry_bar_counts_from_that_bars_open():
    late_fill = long_from(10, hold=3, fill_seconds=59.9)

    assert held_bars(late_fill.entry_time, T0 + 12 * MINUTE, BAR) == 3
    assert plan(signal(12, 0), late_fill) == [("exit", -1, "time")]


def test_an_infinite_distance_plans_no_order_for_that_barrier():
    assert plan(signal(0, 1, sl=math.inf), None) == [("entry", 1, "entry"), ("tp", -1, "tp")]
    assert plan(signal(0, -1, sl=0.01, tp=math.inf), None) == [("entry", -1, "entry"), ("sl", 1, "sl")]


def test_exit_client_ids_are_tagged_by_reason_and_repeat_for_the_same_decision():
    at = T0 + 12 * MINUTE
    time_exit = plan_orders(signal(12, 0), long_from(10, hold=3), bot=BOT, symbol=SYMBOL, bar_seconds=BAR)
    again = plan_orders(signal(12, 0), long_from(10, hold=3), bot=BOT, symbol=SYMBOL, bar_seconds=BAR)
    kill = plan_flatten(long_from(10), at, bot=BOT, symbol=SYMBOL)

    assert time_exit == again
    assert time_exit[0].client_id == client_order_id(BOT, SYMBOL, at, "time")
    assert kill[0].client_id == client_order_id(BOT, SYMBOL, at, "kill") != time_exit[0].client_id
    assert (
        len(
            {
                o.client_id
                for o in plan_orders(signal(12, -1), long_from(10), bot=BOT, symbol=SYMBOL, bar_seconds=BAR)
            }
        )
        == 4
    )


def test_flatten_plans_one_kill_exit_for_the_whole_position_and_nothing_when_flat():
    (exit_,) = plan_flatten(long_from(1), T0 + 5 * MINUTE, bot=BOT, symbol=SYMBOL)

    assert (exit_.intent, exit_.side, exit_.reason, exit_.qty) == ("exit", -1, "kill", 0.25)
    assert plan_flatten(None, T0, bot=BOT, symbol=SYMBOL) == []


def test_protection_prices_are_fractions_of_the_fill_price_on_the_losing_and_winning_sides():
    assert protection_prices(100.0, 1, 0.01, 0.02) == pytest.approx((99.0, 102.0))
    assert protection_prices(100.0, -1, 0.01, 0.02) == pytest.approx((101.0, 98.0))
    assert all(math.isnan(p) for p in protection_prices(100.0, 1, math.inf, math.inf))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Signal(T0, 2, 0.5, 0.01, 0.02, 0), "side must be -1"),
        (Signal(T0, 1, math.nan, 0.01, 0.02, 0), "size must be a finite fraction"),
        (Signal(T0, 1, 0.5, 0.0, 0.02, 0), "sl must be > 0"),
        (Signal(T0, 1, 0.5, 0.01, -1.0, 0), "tp must be > 0"),
        (Signal(T0, 1, 0.5, 0.01, 0.02, -1), "max_hold must be a whole number"),
        (Signal(pd.Timestamp("2024-12-01T12:00"), 1, 0.5, 0.01, 0.02, 0), "aware UTC"),
    ],
)
def test_a_signal_the_kernel_would_refuse_is_a_data_error_that_says_how_to_fix_it(bad, message):
    with pytest.raises(DataError, match=message):
        plan_orders(bad, None, bot=BOT, symbol=SYMBOL, bar_seconds=BAR)


# --- the same rules as the kernel, driven bar by bar ------------------------------------------------------


def random_bars(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.002, n))  # gaps
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, n)))
    index = pd.date_range(T0, periods=n, freq="1min", name="timestamp")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close}, index=index)


def venue_trades(bars: pd.DataFrame, signals: list[Signal], equity: float) -> list[tuple[object, ...]]:
    """Trade on a venue that fills market orders at the open and holds SL/TP: plan_orders decides the rest."""
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    trades: list[tuple[object, ...]] = []
    position: Position | None = None
    entry_bar = 0

    def close(at: int, price: float, reason: str) -> None:
        nonlocal position, equity
        assert position is not None
        equity += position.side * position.qty * (price - position.entry_price)
        trades.append((entry_bar, at, position.side, position.entry_price, price, position.qty, reason))
        position = None

    for t in range(1, len(bars)):
        sl = tp = math.nan
        for order in plan_orders(signals[t - 1], position, bot=BOT, symbol=SYMBOL, bar_seconds=BAR):
            if order.intent == "exit":
                close(t, o[t], order.reason)
            elif order.intent == "entry":
                entry_bar, qty = t, order.size * equity / o[t]
                fill_time = bars.index[t] + pd.Timedelta(milliseconds=350)  # a live fill is a little late
                position = Position(
                    order.side, qty, o[t], fill_time, math.nan, math.nan, order.max_hold, order.client_id
                )
            elif order.intent == "sl":
                sl = protection_prices(o[t], -order.side, order.distance, math.inf)[0]
            else:
                tp = protection_prices(o[t], -order.side, math.inf, order.distance)[1]
        if position is not None and entry_bar == t:
            sl_price = sl if math.isfinite(sl) else -position.side * np.inf
            tp_price = tp if math.isfinite(tp) else position.side * np.inf
            position = Position(
                position.side,
                position.qty,
                position.entry_price,
                position.entry_time,
                sl_price,
                tp_price,
                position.max_hold,
                "",
            )
        if position is not None:
            price, code = stop_exit_nb(position.side, o[t], h[t], lo[t], position.sl_price, position.tp_price)
            if code >= 0:
                close(t, price, ("sl", "tp")[code])
    if position is not None:
        trades.append(
            (entry_bar, len(bars) - 1, position.side, position.entry_price, c[-1], position.qty, "open")
        )
    return trades


signal_rows = st.tuples(
    st.sampled_from([-1, 0, 0, 0, 1]),
    st.sampled_from([0.0, 0.3, 1.0]),
    st.sampled_from([0.002, 0.006, math.inf]),
    st.sampled_from([0.003, 0.01, math.inf]),
    st.integers(0, 4),
)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(signal_rows, min_size=2, max_size=60), seed=st.integers(0, 2**31))
def test_orders_planned_bar_by_bar_trade_exactly_like_the_backtest_kernel(rows, seed):
    bars = random_bars(len(rows), seed)
    signals = [
        Signal(t, side, size, sl, tp, hold)
        for t, (side, size, sl, tp, hold) in zip(bars.index, rows, strict=True)
    ]
    frame = pd.DataFrame(rows, columns=["side", "size", "sl", "tp", "max_hold"], index=bars.index)

    expected = backtest(bars, frame, fee=0.0, slippage=0.0, initial_equity=10_000.0).trades
    actual = venue_trades(bars, signals, 10_000.0)

    for reason in {t[6] for t in actual}:
        event(f"exit reason {reason}")
    positions = {t: i for i, t in enumerate(bars.index)}
    kernel = [
        (
            positions[r.entry_time],
            positions[r.exit_time],
            r.side,
            r.entry_price,
            r.exit_price,
            r.qty,
            r.exit_reason,
        )
        for r in expected.itertuples()
    ]
    assert [t[:3] + t[6:] for t in actual] == [k[:3] + k[6:] for k in kernel]
    np.testing.assert_allclose([t[3:6] for t in actual], [k[3:6] for k in kernel], rtol=1e-12)
