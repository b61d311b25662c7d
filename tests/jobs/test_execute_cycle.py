"""One execute cycle: fail closed, never twice, a crash reconciled, the kill switch engaged and released."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.core.execution import BrokerSnapshot, OrderAck, Signal
from scalpbot.errors import ExchangeTemporaryError
from scalpbot.jobs.cycle import Executor, run_cycle
from scalpbot.jobs.trading import BarTrader, replay, set_halt
from scalpbot.ports import Broker
from scalpbot.state.history import MemoryHistory
from scalpbot.state.lease import LeaseHeld, RunLease
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.wiring import Services, build_executor, run_lease

from support.trained import active_services

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

DAY = pd.Timestamp("2024-12-30T00:00:00Z")


def _executor(services: Services, bot: str, broker: Broker | None = None) -> tuple[Executor, ConsoleNotifier]:
    bars = services.dataset.read(services.series(), DAY - pd.Timedelta(days=1), DAY + pd.Timedelta(days=1))
    notifier = ConsoleNotifier()
    return build_executor(
        services, services.series(), bot=bot, bars=MemoryHistory(bars), notifier=notifier, broker=broker
    ), notifier


class _Down:
    """A broker whose venue cannot be reached."""

    name = "down"

    def __init__(self) -> None:
        self.submitted: list[Signal] = []

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        raise ExchangeTemporaryError("binance: GET /api/v3/account failed 5 times (503 Service Unavailable)")

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        self.submitted.append(signal)
        return []

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        raise AssertionError("nothing may be sent when the venue cannot be reconciled")


class _CrashAfterSubmit:
    """Delegate to a real broker, then die right after the venue accepted the order (before any bookkeeping)."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.name = inner.name

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        return self.inner.snapshot(bars, since)

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        self.inner.submit(signal, snapshot)
        raise KeyboardInterrupt("killed between 'order accepted' and 'ledger written'")

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        return self.inner.flatten(decided_at, snapshot)


def test_an_unreachable_venue_places_nothing_records_an_error_and_notifies(
    active_release: tuple[Path, str],
) -> None:
    services = active_services(active_release[0])
    down = _Down()
    executor, notifier = _executor(services, "down", down)
    trader = BarTrader(
        services,
        executor,
        services.series(),
        source=None,
        lease=run_lease(services, "down"),
        release_lease=True,
    )
    report = trader(DAY + pd.Timedelta("1min"))
    assert (report.status, report.fault) == ("failed", "reconcile")
    assert down.submitted == []
    assert [e.kind for e in Ledger(services.store, "down").events()] == ["error"]
    assert notifier.sent[0][0] == "error"
    assert "503" in notifier.sent[0][2]


def test_the_same_cycle_run_twice_acts_once(active_release: tuple[Path, str]) -> None:
    services = active_services(active_release[0])
    executor, _ = _executor(services, "twice")
    first = run_cycle(executor, DAY)
    events = Ledger(services.store, "twice").events()
    second = run_cycle(executor, DAY)
    assert (first.status, second.status) == ("ok", "skipped")
    assert Ledger(services.store, "twice").events() == events


def test_two_runs_at_once_cannot_both_hold_the_bot(active_release: tuple[Path, str]) -> None:
    services = active_services(active_release[0])
    clock = FixedClock(datetime(2025, 1, 1, tzinfo=UTC))
    with RunLease(services.store, "busy", clock, timedelta(minutes=2)), pytest.raises(LeaseHeld):
        RunLease(services.store, "busy", clock, timedelta(minutes=2)).acquire()


def test_a_crash_after_the_order_was_accepted_is_reconciled_without_a_duplicate(
    active_release: tuple[Path, str],
) -> None:
    services = active_services(active_release[0])
    executor, _ = _executor(services, "crash")
    bar = next(b for b in pd.date_range(DAY, periods=120, freq="1min") if _decides(services, b))
    for earlier in pd.date_range(DAY, bar, freq="1min", inclusive="left"):
        run_cycle(executor, earlier)
    crashing, _ = _executor(services, "crash", _CrashAfterSubmit(executor.broker))
    with pytest.raises(KeyboardInterrupt):
        run_cycle(crashing, bar)
    again = run_cycle(executor, bar)
    assert again.status == "ok"
    assert [a.status for a in again.acks] == ["duplicate"]
    nxt = run_cycle(executor, bar + pd.Timedelta("1min"))
    entries = [f for f in nxt.fills if f.reason == "entry" and f.time == bar + pd.Timedelta("1min")]
    assert len(entries) == 1


def _decides(services: Services, bar: pd.Timestamp) -> bool:
    probe, _ = _executor(services, f"probe-{bar:%H%M}")
    return run_cycle(probe, bar).signal is not None


def test_the_kill_switch_engages_at_the_daily_loss_flattens_and_blocks_until_resumed(
    active_release: tuple[Path, str],
) -> None:
    services = active_services(active_release[0], max_daily_loss=0.0005)
    report = replay(services, services.series(), DAY, DAY + pd.Timedelta(hours=4), bot="kill")
    events = Ledger(services.store, "kill").events()
    halts = [e for e in events if e.kind == "halt"]
    assert len(halts) == 1
    assert halts[0].payload["reason"].startswith("max_daily_loss")
    after = [e for e in events if e.time > halts[0].time]
    assert not [e for e in after if e.kind == "order_ack" and e.payload["intent"] == "entry"]
    assert report.cycles.get("halted", 0) > 0
    stored = PortfolioStore(services.store, "kill").load()
    assert stored is not None
    assert stored.snapshot.position is None  # flattened by the kill switch
    set_halt(services, "kill", halted=False, reason="operator")
    resumed = replay(
        services, services.series(), DAY + pd.Timedelta(hours=4), DAY + pd.Timedelta(hours=6), bot="kill"
    )
    assert resumed.cycles.get("ok", 0) > 0
