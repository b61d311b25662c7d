"""A bot of several symbols: each symbol's lease, snapshot and paper account under its own keys; one ledger
whose events name their symbol, read per symbol; a bot of one symbol keeps the keys it always had."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.store import MemoryStore
from scalpbot.core.execution import Fill
from scalpbot.core.risk import initial_risk_state
from scalpbot.errors import LeaseHeld, LedgerError, LedgerGap
from scalpbot.state.lease import RunLease
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioSnapshot, PortfolioStore
from scalpbot.state.scope import state_key, symbol_folder

T0 = pd.Timestamp("2024-03-01 10:00", tz="UTC")
MINUTE = pd.Timedelta(minutes=1)


def test_state_keys_of_a_single_symbol_bot_are_unchanged_and_a_symbols_are_its_own() -> None:
    assert state_key("b", "portfolio.json") == "state/b/portfolio.json"
    assert state_key("b", "paper.json", "ETH/USDT") == "state/b/symbols/ETH_USDT/paper.json"
    assert symbol_folder("BTC/USDT:USDT") == "BTC_USDT_USDT"
    store = MemoryStore()
    assert PortfolioStore(store, "b").key == "state/b/portfolio.json"
    assert PortfolioStore(store, "b", "SOL/USDT").key == "state/b/symbols/SOL_USDT/portfolio.json"


def test_two_symbols_of_one_bot_hold_their_own_lease_and_snapshot() -> None:
    store, clock = MemoryStore(), FixedClock(T0.to_pydatetime())
    btc = RunLease(store, "b", clock, timedelta(minutes=5), symbol="BTC/USDT")
    eth = RunLease(store, "b", clock, timedelta(minutes=5), symbol="ETH/USDT")
    btc.acquire()
    eth.acquire()  # not busy: another key
    with pytest.raises(LeaseHeld):
        RunLease(store, "b", clock, timedelta(minutes=5), symbol="BTC/USDT").acquire()
    snapshot = PortfolioSnapshot(T0, 1000.0, initial_risk_state(1000.0, T0))
    PortfolioStore(store, "b", "BTC/USDT").save(snapshot, None)
    PortfolioStore(store, "b", "ETH/USDT").save(snapshot, None)  # create-only succeeds: no collision
    assert PortfolioStore(store, "b").load() is None


def _fill(client_id: str, minutes: int, side: int, price: float, reason: str) -> Fill:
    return Fill(client_id, T0 + minutes * MINUTE, side, 0.1, price, 1.0, reason)


def test_events_of_two_symbols_for_one_bar_are_two_events_that_name_their_symbol() -> None:
    store = MemoryStore()
    btc, eth = Ledger(store, "b", "BTC/USDT"), Ledger(store, "b", "ETH/USDT")
    one = btc.append("decision", T0, {"side": 1})
    other = eth.append("decision", T0, {"side": -1})  # no LedgerConflict: the id names the symbol
    assert one.event_id != other.event_id
    assert [e.payload["symbol"] for e in Ledger(store, "b").events()] == sorted(["BTC/USDT", "ETH/USDT"])
    assert btc.append("decision", T0, {"side": 1}) == one  # still idempotent
    plain = Ledger(store, "c").append("decision", T0, {"side": 1})
    assert "symbol" not in plain.payload  # a single-symbol bot writes as it always did


def test_trades_filter_by_symbol_and_check_each_symbols_fill_sequence() -> None:
    store = MemoryStore()
    btc, eth = Ledger(store, "b", "BTC/USDT"), Ledger(store, "b", "ETH/USDT")
    for seq, fill in enumerate((_fill("e1", 1, 1, 100.0, "entry"), _fill("x1", 4, -1, 110.0, "tp")), 1):
        btc.record_fill(fill, entry_client_id="e1", seq=seq)
    for seq, fill in enumerate((_fill("e2", 2, -1, 50.0, "entry"), _fill("x2", 3, 1, 49.0, "tp")), 1):
        eth.record_fill(fill, entry_client_id="e2", seq=seq)

    both = Ledger(store, "b").trades()  # each symbol's numbers 1, 2: no gap
    only_eth = Ledger(store, "b").trades(symbol="ETH/USDT", fill_count=2)

    assert len(both) == 2
    assert list(only_eth["entry_price"]) == [50.0]
    assert only_eth["pnl"].iloc[0] == pytest.approx(0.1 * 1.0 - 2.0)
    with pytest.raises(LedgerError, match="pass symbol= with fill_count"):
        Ledger(store, "b").trades(fill_count=2)
    with pytest.raises(LedgerGap, match="missing fill #3"):
        Ledger(store, "b").trades(symbol="BTC/USDT", fill_count=3)
    assert Ledger(store, "b").trades(symbol="SOL/USDT").empty
