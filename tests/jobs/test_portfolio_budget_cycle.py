"""The execute cycle and the bot's risk budget: entries reserve and exits give back; the budget's denials and its
kill switch bind a symbol because of what the bot's other symbols hold or lost."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.core.execution import BrokerSnapshot, OrderAck, Signal, client_order_id
from scalpbot.core.portfolio_risk import PortfolioLimits, Reservation
from scalpbot.jobs.cycle import run_cycle
from scalpbot.jobs.trading import replay, set_halt
from scalpbot.ports import Broker
from scalpbot.state.history import MemoryHistory
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.risk_budget import RiskBudget
from scalpbot.wiring import Services, build_executor, build_services

from support.trained import LOOSE_RISK

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

DAY = pd.Timestamp("2024-12-30T00:00:00Z")
OTHER = "ETH/USDT"


def _services(store: Path, **portfolio: Any) -> Services:
    overrides = {
        "store": {"url": str(store)},
        "risk": dict(LOOSE_RISK),
        "portfolio": portfolio,
    }
    return build_services(load_settings(None, overrides))


def _budget(services: Services, bot: str) -> RiskBudget:
    return RiskBudget(services.store, bot, PortfolioLimits(**services.settings.portfolio.model_dump()))


def test_a_single_symbol_bot_reserves_each_entry_and_gives_it_back_with_the_trades_pnl(
    active_release: tuple[Path, str],
) -> None:
    services = _services(active_release[0])
    replay(services, services.series(), DAY, DAY + pd.Timedelta(hours=2), bot="budget-one")
    trades = Ledger(services.store, "budget-one").trades()
    book = _budget(services, "budget-one").load()
    assert book is not None and len(trades) >= 3
    assert book.equity == pytest.approx(services.settings.backtest.initial_equity + trades["pnl"].sum())
    stored = PortfolioStore(services.store, "budget-one").load()
    assert stored is not None
    position = stored.snapshot.position
    if position is None:
        assert book.reservations == {}
    else:
        assert book.reservations["BTC/USDT"].client_id == position.entry_client_id


def test_an_entry_the_bots_other_symbols_leave_no_room_for_is_denied_with_the_reasons_and_not_sent(
    active_release: tuple[Path, str],
) -> None:
    services = _services(active_release[0], max_gross_notional=9_001.0, max_positions=1)
    held = Reservation(1, 9_000.0, "eth-entry", DAY - pd.Timedelta(hours=1))
    _budget(services, "budget-full").settle(OTHER, exits=[], held=held, at=DAY, equity=10_000.0)
    report = replay(services, services.series(), DAY, DAY + pd.Timedelta(hours=1), bot="budget-full")
    events = Ledger(services.store, "budget-full").events()
    denials = [e for e in events if e.kind == "denial"]
    assert denials, "no entry was decided in the hour"
    assert {e.payload["scope"] for e in denials} == {"portfolio"}
    first = denials[0].payload
    assert first["symbol"] == "BTC/USDT"
    assert {r["code"] for r in first["reasons"]} == {"max_gross_exposure", "max_positions"}
    assert "9000.00 held by other symbols" in first["message"]
    assert not [e for e in events if e.kind == "order_ack"]
    assert report.trades == 0
    book = _budget(services, "budget-full").load()
    assert book is not None and set(book.reservations) == {OTHER}


def test_the_bots_kill_switch_flattens_and_blocks_a_symbol_until_resumed(
    active_release: tuple[Path, str],
) -> None:
    services = _services(active_release[0], max_daily_loss=0.02)
    bot = "budget-kill"
    replay(services, services.series(), DAY, DAY + pd.Timedelta(minutes=30), bot=bot)
    # Another symbol of the bot loses 6 % of the day's start equity: the whole bot stops.
    budget = _budget(services, bot)
    budget.settle(OTHER, exits=[("eth:sl", -600.0)], held=None, at=DAY + pd.Timedelta(minutes=30), equity=1.0)
    book = budget.load()
    assert book is not None and book.halted
    report = replay(
        services, services.series(), DAY + pd.Timedelta(minutes=31), DAY + pd.Timedelta(hours=1), bot=bot
    )
    assert set(report.cycles) == {"halted"}
    events = Ledger(services.store, bot).events(DAY + pd.Timedelta(minutes=31))
    assert not [e for e in events if e.kind == "order_ack" and e.payload["intent"] == "entry"]
    stored = PortfolioStore(services.store, bot).load()
    assert stored is not None and stored.snapshot.position is None
    set_halt(services, bot, halted=False, reason="operator")
    resumed = budget.load()
    assert resumed is not None and not resumed.halted
    after = replay(
        services, services.series(), DAY + pd.Timedelta(hours=1), DAY + pd.Timedelta(hours=2), bot=bot
    )
    assert after.cycles.get("ok", 0) > 0


class _Refusing:
    """The paper broker, except that the venue refuses every entry (insufficient balance, say)."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.name = inner.name

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        return self.inner.snapshot(bars, since)

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        if signal.side == 0:
            return []
        entry = client_order_id("budget-refused", "BTC/USDT", signal.decided_at, "entry")
        return [OrderAck(entry, "entry", "rejected", "insufficient balance")]

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        return self.inner.flatten(decided_at, snapshot)


def test_an_entry_the_venue_refuses_gives_its_reservation_back(active_release: tuple[Path, str]) -> None:
    services = _services(active_release[0], max_positions=1)
    bot = "budget-refused"
    bars = services.dataset.read(services.series(), DAY - pd.Timedelta(days=1), DAY + pd.Timedelta(days=1))
    paper = build_executor(
        services, services.series(), bot=bot, bars=MemoryHistory(bars), notifier=ConsoleNotifier()
    )
    executor = dataclasses.replace(paper, broker=_Refusing(paper.broker))
    refused = []
    for bar in pd.date_range(DAY, periods=60, freq="1min"):
        report = run_cycle(executor, bar)
        refused += [a for a in report.acks if a.status == "rejected"]
        book = _budget(services, bot).load()
        assert book is None or book.reservations == {}, f"a refused entry kept its reservation at {bar}"
    assert refused, "no entry was decided in the hour"
    book = _budget(services, bot).load()
    assert book is not None and book.version == 2 * len(refused)  # each reserved once and given back once


def test_a_symbols_own_losses_can_engage_the_bots_kill_switch_recorded_once(
    active_release: tuple[Path, str],
) -> None:
    services = _services(active_release[0], max_daily_loss=0.0005)
    bot = "budget-own-loss"
    report = replay(services, services.series(), DAY, DAY + pd.Timedelta(hours=4), bot=bot)
    book = _budget(services, bot).load()
    assert book is not None and book.halted and book.halt_reason is not None
    halts = [e for e in Ledger(services.store, bot).events() if e.kind == "halt"]
    assert [e.payload["reason"] for e in halts] == [f"portfolio {book.halt_reason}"]
    assert halts[0].time == book.halted_at
    assert book.halt_reason.startswith("max_daily_loss")
    assert report.cycles.get("halted", 0) > 0
    later = [e for e in Ledger(services.store, bot).events(book.halted_at) if e.kind == "order_ack"]
    assert not [e for e in later if e.payload["intent"] == "entry"]
