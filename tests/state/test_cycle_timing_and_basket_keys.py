"""Cycle timing per symbol and a bot's basket read back from the store's keys."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from scalpbot.adapters.store import MemoryStore
from scalpbot.core.risk import initial_risk_state
from scalpbot.errors import CorruptArtifactError
from scalpbot.state.cycle_timing import CycleTiming, load_cycle_timing, save_cycle_timing
from scalpbot.state.portfolio import PortfolioSnapshot, PortfolioStore
from scalpbot.state.scope import stored_symbols, symbol_of_folder

BAR = pd.Timestamp("2024-03-01 10:00", tz="UTC")
CLOSE = BAR + pd.Timedelta(minutes=1)


def _timing(seconds: float, **symbols: str) -> CycleTiming:
    started = CLOSE + pd.Timedelta(seconds=1)
    return CycleTiming(BAR, "ok", started, started + pd.Timedelta(seconds=seconds), CLOSE, symbols)


def test_a_single_symbol_bots_record_keeps_its_key_and_fields() -> None:
    store = MemoryStore()
    save_cycle_timing(store, "b", _timing(0.5))
    document = json.loads(store.get("state/b/last_cycle.json").data)
    assert set(document) == {
        "v",
        "bar",
        "status",
        "started_at",
        "finished_at",
        "bar_close",
        "cycle_seconds",
        "latency_seconds",
    }  # fmt: skip: no "symbols" in one symbol's record
    assert (document["cycle_seconds"], document["latency_seconds"]) == (0.5, 1.5)
    assert load_cycle_timing(store, "b") == _timing(0.5)


def test_each_symbol_of_a_basket_keeps_its_own_record_beside_the_bar_close_as_a_whole() -> None:
    store = MemoryStore()
    save_cycle_timing(store, "k", _timing(0.2), "BTC/USDT")
    save_cycle_timing(store, "k", _timing(0.3), "ETH/USDT")
    save_cycle_timing(store, "k", _timing(0.6, **{"BTC/USDT": "ok", "ETH/USDT": "failed"}))
    assert sorted(store.list("state/k/")) == [
        "state/k/last_cycle.json",
        "state/k/symbols/BTC_USDT/last_cycle.json",
        "state/k/symbols/ETH_USDT/last_cycle.json",
    ]
    eth, total = load_cycle_timing(store, "k", "ETH/USDT"), load_cycle_timing(store, "k")
    assert eth is not None and eth.cycle_seconds == pytest.approx(0.3) and not eth.symbols
    assert total is not None and dict(total.symbols) == {"BTC/USDT": "ok", "ETH/USDT": "failed"}
    assert load_cycle_timing(store, "k", "SOL/USDT") is None
    store.put("state/k/last_cycle.json", b'{"v": 1, "bar": "2024-03-01T10:00:00Z", "symbols": [1]}')
    with pytest.raises(CorruptArtifactError, match="the next live cycle rewrites it"):
        load_cycle_timing(store, "k")


def test_a_bots_basket_is_read_from_its_symbols_state_in_the_configured_order() -> None:
    store = MemoryStore()
    snapshot = PortfolioSnapshot(None, 100.0, initial_risk_state(100.0, BAR))
    for symbol in ("ETH/USDT", "BTC/USDT:USDT", "ADA/USDT"):
        PortfolioStore(store, "k", symbol).save(snapshot, None)
    PortfolioStore(store, "one").save(snapshot, None)
    assert stored_symbols(store, "one") == ()
    assert stored_symbols(store, "k") == ("ADA/USDT", "BTC/USDT:USDT", "ETH/USDT")  # by folder
    assert stored_symbols(store, "k", ("ETH/USDT", "ADA/USDT")) == ("ETH/USDT", "ADA/USDT", "BTC/USDT:USDT")
    assert symbol_of_folder("BTC_USDT_USDT") == "BTC/USDT:USDT"
    assert symbol_of_folder("1000_PEPE_USDT", ("1000_PEPE/USDT",)) == "1000_PEPE/USDT"  # named by the config
