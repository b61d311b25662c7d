"""The paper broker, driven bar by bar, makes exactly the trades of a backtest on the same signals and venue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.adapters.paper_broker import PaperBroker
from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.core.backtest.enums import NO_ORDER_RULES, OrderRules
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.execution import Fill, Signal
from scalpbot.core.strategies import sma_cross_signals

FEE, SLIPPAGE, EQUITY = 0.0004, 0.0001, 10_000.0
STRICT_SPOT = OrderRules(amount_step=0.001, min_qty=0.002, min_notional=3_000.0, shorts=False)
"""A spot venue with a coarse step and a minimum notional that about a third of the entries below fall under."""


def _broker(
    store: MemoryStore,
    bars: pd.DataFrame,
    rules: OrderRules = NO_ORDER_RULES,
    funding: pd.Series | None = None,
) -> PaperBroker:
    def source(start: pd.Timestamp | None, last: pd.Timestamp) -> pd.DataFrame:
        return bars.loc[(start or bars.index[0]) : last]

    def rates(start: pd.Timestamp, last: pd.Timestamp) -> pd.Series:
        assert funding is not None
        return funding.loc[start:last]

    return PaperBroker(
        store,
        bot="t",
        symbol="BTC/USDT",
        timeframe="1m",
        bars=source,
        fee=FEE,
        slippage=SLIPPAGE,
        initial_equity=EQUITY,
        rules=rules,
        funding=None if funding is None else rates,
    )


def _drive(
    bars: pd.DataFrame, signals: pd.DataFrame, rules: OrderRules = NO_ORDER_RULES
) -> tuple[list[Fill], float]:
    """Run the broker bar by bar as the execute job does: snapshot after each close, then submit."""
    store = MemoryStore()
    broker = _broker(store, bars, rules)
    fills: dict[tuple[str, str], Fill] = {}
    snapshot = None
    for t in range(len(bars)):
        snapshot = broker.snapshot(bars.iloc[: t + 1], None)
        for fill in snapshot.fills:
            fills[(fill.client_id, fill.reason)] = fill
        row = signals.iloc[t]
        if row["side"] != 0:
            signal = Signal(
                bars.index[t],
                int(row["side"]),
                float(row["size"]),
                float(row["sl"]),
                float(row["tp"]),
                int(row["max_hold"]),
            )
            broker.submit(signal, snapshot)
    assert snapshot is not None
    return sorted(fills.values(), key=lambda f: (f.time, f.reason != "entry")), snapshot.equity


def _as_trades(
    fills: list[Fill],
) -> list[tuple[pd.Timestamp, pd.Timestamp | None, int, float, float | None, float, str]]:
    entries = [f for f in fills if f.reason == "entry"]
    closed = [f for f in fills if f.reason != "entry"]
    rows = []
    for i, entry in enumerate(entries):
        exit_fill = closed[i] if i < len(closed) else None
        rows.append(
            (
                entry.time,
                None if exit_fill is None else exit_fill.time,
                entry.side,
                entry.price,
                None if exit_fill is None else exit_fill.price,
                entry.qty,
                "open" if exit_fill is None else exit_fill.reason,
            )
        )
    return rows


def _expected(
    bars: pd.DataFrame, signals: pd.DataFrame, rules: OrderRules = NO_ORDER_RULES
) -> tuple[list[tuple[object, ...]], float]:
    result = backtest(bars, signals, fee=FEE, slippage=SLIPPAGE, initial_equity=EQUITY, rules=rules)
    rows = []
    for trade in result.trades.itertuples():
        is_open = trade.exit_reason == "open"
        rows.append(
            (
                trade.entry_time,
                None if is_open else trade.exit_time,
                int(trade.side),
                trade.entry_price,
                None if is_open else trade.exit_price,
                trade.qty,
                str(trade.exit_reason),
            )
        )
    return rows, float(result.equity.iloc[-1])


@pytest.mark.slow
def test_paper_trading_an_sma_cross_equals_its_backtest(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:1500]
    signals = sma_cross_signals(bars, length=20, sl=0.0015, tp=0.002, size=0.5, max_hold=6)
    fills, equity = _drive(bars, signals)
    expected, expected_equity = _expected(bars, signals)
    assert len(expected) > 20
    assert _as_trades(fills) == expected
    assert equity == pytest.approx(expected_equity, rel=1e-12)
    assert {row[-1] for row in expected} >= {"sl", "tp", "time", "signal"}


def test_paper_trading_on_a_spot_venue_rounds_skips_and_never_shorts_as_its_backtest(
    sample_bars: pd.DataFrame,
) -> None:
    bars = sample_bars.iloc[:1500]
    signals = sma_cross_signals(bars, length=20, sl=0.0015, tp=0.002, size=0.5, max_hold=6)
    rng = np.random.default_rng(3)
    signals["size"] = rng.uniform(0.1, 0.6, len(bars))  # about a third under the 3,000 minimum notional
    fills, equity = _drive(bars, signals, STRICT_SPOT)
    expected, expected_equity = _expected(bars, signals, STRICT_SPOT)
    assert _as_trades(fills) == expected
    assert equity == pytest.approx(expected_equity, rel=1e-12)
    entries = [f for f in fills if f.reason == "entry"]
    assert len(entries) > 20
    assert {f.side for f in entries} == {1}
    assert all(f.qty * 1000 == pytest.approx(round(f.qty * 1000), abs=1e-9) for f in entries)
    assert min(f.qty * f.price for f in entries) >= 3_000.0
    wanted = backtest(bars, signals.assign(side=signals["side"].clip(lower=0)), fee=FEE, slippage=SLIPPAGE)
    assert len(wanted.trades) > len(entries)  # entries under the minimum were skipped


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(
    st.integers(min_value=0, max_value=50_000),
    st.integers(min_value=1, max_value=10**6),
    st.sampled_from([NO_ORDER_RULES, STRICT_SPOT]),
)
def test_paper_trading_random_signals_equals_their_backtest(
    sample_bars: pd.DataFrame, start: int, seed: int, rules: OrderRules
) -> None:
    bars = sample_bars.iloc[start : start + 300]
    rng = np.random.default_rng(seed)
    side = rng.choice(np.array([-1, 0, 0, 0, 0, 1]), size=len(bars))
    signals = pd.DataFrame(
        {
            "side": side,
            "size": rng.uniform(0.1, 1.0, len(bars)),
            "sl": rng.uniform(0.0005, 0.004, len(bars)),
            "tp": rng.uniform(0.0005, 0.004, len(bars)),
            "max_hold": rng.integers(0, 20, len(bars)),
        },
        index=bars.index,
    )
    fills, equity = _drive(bars, signals, rules)
    expected, expected_equity = _expected(bars, signals, rules)
    assert _as_trades(fills) == expected
    assert equity == pytest.approx(expected_equity, rel=1e-12)


def test_submitting_the_same_decision_twice_queues_it_once(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:100]
    broker = _broker(MemoryStore(), bars)
    snapshot = broker.snapshot(bars.iloc[:50], None)
    signal = Signal(bars.index[49], 1, 0.5, 0.01, 0.01, 0)
    first = broker.submit(signal, snapshot)
    second = broker.submit(signal, snapshot)
    assert [a.status for a in first + second] == ["accepted", "duplicate"]
    after = broker.snapshot(bars.iloc[:51], None)
    assert after.position is not None
    assert after.position.qty == pytest.approx(0.5 * 10_000 / (bars["open"].iloc[50] * (1 + SLIPPAGE)))


@pytest.mark.slow  # a venue double end to end: HTTP server, ccxt markets, wiring
def test_paper_trading_a_swap_charges_funding_at_its_times_as_the_backtest(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:1000]  # through the 08:00 and 16:00 settlements of the first day
    times = bars.index[bars.index.hour % 8 == 0]
    times = times[times.minute == 0]
    funding = pd.Series(np.linspace(-0.0004, 0.0006, len(times)), index=times)
    signals = sma_cross_signals(bars, length=20, sl=0.004, tp=0.006, size=0.5, max_hold=240)
    store = MemoryStore()
    broker = _broker(store, bars, funding=funding)
    payments = {}
    snapshot = None
    for t in range(len(bars)):
        snapshot = broker.snapshot(bars.iloc[: t + 1], None)
        payments.update({(p.time, p.entry_client_id): p for p in snapshot.funding})
        row = signals.iloc[t]
        if row["side"] != 0:
            decided = Signal(bars.index[t], int(row["side"]), 0.5, 0.004, 0.006, 240)
            broker.submit(decided, snapshot)
    assert snapshot is not None
    expected = backtest(bars, signals, fee=FEE, slippage=SLIPPAGE, initial_equity=EQUITY, funding=funding)
    assert len(payments) >= 2
    assert sum(p.amount for p in payments.values()) == pytest.approx(
        expected.metrics["funding_paid"], abs=1e-9
    )
    assert {p.time for p in payments.values()} <= set(times)
    assert all(
        p.amount == pytest.approx(p.side * p.qty * p.price * p.rate, abs=1e-12) for p in payments.values()
    )
    assert snapshot.equity == pytest.approx(float(expected.equity.iloc[-1]), rel=1e-12)
