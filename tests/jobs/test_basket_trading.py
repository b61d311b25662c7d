"""A bot of several symbols on each bar close: every symbol trades through its own state; one symbol without
bars or whose cycle raises is recorded as an error naming it, and the others still trade that bar."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.marketdata.files import FileMarketData, sample_path
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.core.execution import BrokerSnapshot, OrderAck, Signal
from scalpbot.errors import ConfigError, CycleFailed, StoreError
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import BasketTrader, basket_trader, raise_if_failed, set_halt
from scalpbot.state.cycle_timing import load_cycle_timing
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore
from scalpbot.wiring import Services, build_executor, build_market_data, build_services, stored_history

from support.trained import LOOSE_RISK

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
AT = pd.Timestamp("2024-12-30T12:00:00Z")
BOT = "trio"


class _BrokenStore:
    """A broker whose account cannot be read: the store under it fails (not an exchange fault)."""

    name = "broken"

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        raise StoreError("the paper account cannot be read: disk gone")

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        raise AssertionError("nothing is sent")

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        raise AssertionError("nothing is sent")


@pytest.fixture
def trio(active_release: tuple[Path, str], tmp_path: Path) -> Services:
    """BTC/USDT and ETH/USDT with the sample's bars, SOL/USDT with none; the eager release for each."""
    trained, eager = active_release
    shutil.copytree(trained, tmp_path / "store")
    settings = load_settings(
        None,
        {
            "store": {"url": str(tmp_path / "store")},
            "risk": dict(LOOSE_RISK),
            "bot": {"symbols": list(SYMBOLS)},
        },
    )
    services = build_services(settings)
    releases = ReleaseStore(services.store)
    source = releases.load("BTC/USDT", eager, (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in source.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    for symbol in SYMBOLS[1:]:
        releases.write(symbol, eager, manifest, dict(source.artifacts))
        releases.promote(symbol, eager, expected=None, reason="test", now=services.clock.now())
    retrieve(services.dataset, FileMarketData(sample_path()), services.series("ETH/USDT"), resume=False)
    return services


def test_each_symbol_trades_on_its_own_state_and_a_failing_symbol_does_not_stop_the_others(
    trio: Services,
) -> None:
    services = trio
    executors = []
    for symbol in SYMBOLS:
        series = services.series(symbol)
        broker = _BrokenStore() if symbol == "ETH/USDT" else None
        executors.append(
            build_executor(
                services,
                series,
                bot=BOT,
                bars=stored_history(services, series),
                notifier=ConsoleNotifier(),
                broker=broker,
            )
        )
    trader = basket_trader(services, executors, source=None, release_lease=True)
    assert isinstance(trader, BasketTrader)

    reports = trader(AT)

    assert [(r.symbol, r.status, r.fault) for r in reports] == [
        ("BTC/USDT", "ok", ""),
        ("ETH/USDT", "failed", "symbol"),
        ("SOL/USDT", "failed", "data"),
    ]
    errors = Ledger(services.store, BOT).events(kinds=("error",))
    assert sorted((e.payload["symbol"], e.payload["where"]) for e in errors) == [
        ("ETH/USDT", "symbol"),
        ("SOL/USDT", "data"),
    ]
    assert "disk gone" in next(e for e in errors if e.payload["symbol"] == "ETH/USDT").payload["message"]
    decisions = Ledger(services.store, BOT).events(kinds=("decision",))
    assert {e.payload["symbol"] for e in decisions} == {"BTC/USDT"}
    assert PortfolioStore(services.store, BOT, "BTC/USDT").load() is not None  # the symbol's own snapshot
    assert PortfolioStore(services.store, BOT).load() is None  # no single-symbol snapshot in a basket
    assert not [k for k in services.store.list(f"state/{BOT}/") if k.endswith("lease.json")]  # all given back
    with pytest.raises(CycleFailed, match="ETH/USDT: the cycle of ETH/USDT raised StoreError"):
        raise_if_failed(reports)
    # a halt reaches every symbol's snapshot; a resume releases them
    set_halt(services, BOT, halted=True, reason="test")
    assert all(PortfolioStore(services.store, BOT, s).load().snapshot.risk.halted for s in SYMBOLS)  # type: ignore[union-attr]
    set_halt(services, BOT, halted=False, reason="test")
    assert not any(PortfolioStore(services.store, BOT, s).load().snapshot.risk.halted for s in SYMBOLS)  # type: ignore[union-attr]


def test_a_basket_refuses_a_position_left_open_by_the_bot_as_a_single_symbol_bot(trio: Services) -> None:
    services = trio
    single = services.settings.model_copy(
        update={"bot": services.settings.bot.model_copy(update={"symbols": ()})}
    )
    legacy = build_services(single)
    series = legacy.series("BTC/USDT")
    one = build_executor(
        legacy, series, bot=BOT, bars=stored_history(legacy, series), notifier=ConsoleNotifier()
    )
    assert one.scope is None
    position_at = None
    for minute in range(0, 240):  # trade as a single-symbol bot until it holds a position
        report = basket_trader(legacy, [one], source=None, release_lease=True)(
            AT + pd.Timedelta(minutes=minute)
        )
        assert not isinstance(report, tuple)
        stored = PortfolioStore(services.store, BOT).load()
        if stored is not None and stored.snapshot.position is not None:
            position_at = report.bar
            break
    assert position_at is not None
    executors = [
        build_executor(
            services, services.series(s), bot=BOT, bars=stored_history(services, services.series(s))
        )
        for s in SYMBOLS[:2]
    ]
    with pytest.raises(ConfigError, match="holds a position from when it traded one symbol"):
        basket_trader(services, executors, source=None, release_lease=True)


class _TickingClock(FixedClock):
    """A clock that moves a quarter of a second each time it is read: a cycle takes wall-clock time."""

    def now(self) -> datetime:
        self.advance(timedelta(seconds=0.25))
        return super().now()


def test_a_live_basket_records_each_symbols_cycle_timing_and_the_bar_close_as_a_whole(trio: Services) -> None:
    clock = _TickingClock((AT + pd.Timedelta(seconds=2)).to_pydatetime())
    services = dataclasses.replace(trio, clock=clock)
    executors = [
        build_executor(
            services,
            services.series(s),
            bot=BOT,
            bars=stored_history(services, services.series(s)),
            notifier=ConsoleNotifier(),
        )
        for s in SYMBOLS[:2]
    ]
    trader = basket_trader(
        services,
        executors,
        source=build_market_data(f"file:{sample_path()}", services, SYMBOLS[:2]),  # the same bars for both
        release_lease=True,
    )
    reports = trader(pd.Timestamp(clock.now()))

    assert [(r.symbol, r.status) for r in reports] == [("BTC/USDT", "ok"), ("ETH/USDT", "ok")]
    btc, eth = (load_cycle_timing(services.store, BOT, s) for s in SYMBOLS[:2])
    total = load_cycle_timing(services.store, BOT)
    assert btc is not None and eth is not None and total is not None
    assert btc.bar == eth.bar == total.bar == pd.Timestamp("2024-12-30T11:59:00Z")
    assert btc.finished_at <= eth.started_at  # in the basket's order, one after the other
    assert (total.started_at, total.finished_at) == (
        min(btc.started_at, total.started_at),
        max(eth.finished_at, total.finished_at),
    )
    assert total.started_at < btc.started_at and total.finished_at > eth.finished_at
    assert total.cycle_seconds > btc.cycle_seconds + eth.cycle_seconds > 0
    assert total.latency_seconds > eth.latency_seconds > btc.latency_seconds > 0
    assert dict(total.symbols) == {"BTC/USDT": "ok", "ETH/USDT": "ok"} and not btc.symbols
    assert f"state/{BOT}/symbols/BTC_USDT/last_cycle.json" in services.store.list(f"state/{BOT}/")
