"""The execute job with the live ccxt broker against a local exchange speaking Binance's REST API."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.core.execution import Signal
from scalpbot.inference.signals import TradingModel
from scalpbot.jobs.cycle import run_cycle
from scalpbot.jobs.monitor import latency_summary, measure_week
from scalpbot.state.history import MemoryHistory
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.wiring import build_executor

from support.binance_trading import OCO, ORDER
from support.broker_venue import MINUTE, OPEN_1200, running_venue
from support.live_helpers import RecordingNotifier
from support.trained import active_services


def test_live_cycles_place_each_entry_with_its_stop_loss_and_take_profit_once(
    active_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = active_services(active_release[0])
    with running_venue(monkeypatch) as venue:
        bars = services.dataset.read(
            services.series(), pd.Timestamp("2024-11-30", tz="UTC"), pd.Timestamp("2024-12-02", tz="UTC")
        )
        executor = build_executor(
            services, services.series(), bot="live", bars=MemoryHistory(bars), notifier=ConsoleNotifier(),
            broker=venue.broker(),
        )  # fmt: skip
        executor = dataclasses.replace(executor, clock=venue.clock)  # the venue's time: 5 s after each close
        entered = None
        for _ in range(30):
            bar = venue.decided()
            report = run_cycle(executor, bar)
            assert report.status == "ok", report.message
            assert run_cycle(executor, bar).status == "skipped"  # the same cycle again acts once
            if any(a.intent == "entry" and a.status == "accepted" for a in report.acks):
                entered = bar
                break
            venue.server.advance_bar()
        assert entered is not None, "the eager release never went long in 30 bars"
        entries = [p for p in venue.server.posts(ORDER) if p.get("type") == "MARKET"]
        assert len(entries) == 1
        assert len(venue.server.posts(OCO)) == 1  # SL and TP right after the fill, on the exchange
        venue.server.advance_bar()
        after = run_cycle(executor, venue.decided())
        assert after.status == "ok"
        stored = PortfolioStore(services.store, "live").load()
        assert stored is not None
        position = stored.snapshot.position
        assert position is not None
        assert position.sl_price < position.entry_price < position.tp_price
        fills = [e for e in Ledger(services.store, "live").events() if e.kind == "fill"]
        assert [e.payload["reason"] for e in fills][:1] == ["entry"]
        latency = next(e for e in Ledger(services.store, "live").events() if e.kind == "latency")
        assert latency.time == entered and latency.payload["ack_seconds"] == 5.0
        assert len(latency.payload["client_ids"]) == 3  # the entry and its OCO's two legs
        week = measure_week(services, "live", services.series(), entered, venue.decided() + MINUTE)
        assert week.latency["count"] >= 1 and week.latency["p50"] == 5.0  # the weekly report's distribution


def test_protection_refused_leaves_the_bot_flat_within_the_cycle_with_an_error_event_and_a_notification(
    active_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = active_services(active_release[0])
    notifier = RecordingNotifier()
    with running_venue(monkeypatch) as venue:
        bars = services.dataset.read(
            services.series(), pd.Timestamp("2024-11-30", tz="UTC"), pd.Timestamp("2024-12-02", tz="UTC")
        )
        executor = build_executor(
            services, services.series(), bot="live-refused", bars=MemoryHistory(bars), notifier=notifier,
            broker=venue.broker(),
        )  # fmt: skip
        venue.server.book.shift_after_fill = Decimal("0.97")  # the price falls 3 % right after the entry fill
        for _ in range(30):
            report = run_cycle(executor, venue.decided())
            if any(a.intent == "entry" and a.status == "accepted" for a in report.acks):
                break
            venue.server.advance_bar()
        else:
            raise AssertionError("the eager release never went long in 30 bars")

        assert [(a.intent, a.status) for a in report.acks][-1] == ("exit", "accepted")
        assert venue.server.orders("NEW") == []
        base = sum(venue.server.balance("BTC"))
        assert base * Decimal(OPEN_1200) < 5  # flat: dust only
        errors = [e for e in Ledger(services.store, "live-refused").events() if e.kind == "error"]
        assert [e.payload["where"] for e in errors] == ["protection"]
        assert "would trigger immediately" in str(errors[0].payload["message"])
        assert [level for subject, _, level in notifier.sent if "protection refused" in subject] == ["error"]


def test_a_position_is_checked_on_every_cycle_even_when_the_model_wants_nothing(
    active_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = active_services(active_release[0])
    with running_venue(monkeypatch) as venue:
        bars = services.dataset.read(
            services.series(), pd.Timestamp("2024-11-30", tz="UTC"), pd.Timestamp("2024-12-02", tz="UTC")
        )
        broker = venue.broker()
        executor = build_executor(
            services, services.series(), bot="live-quiet", bars=MemoryHistory(bars), notifier=RecordingNotifier(),
            broker=broker,
        )  # fmt: skip
        bar = venue.decided()
        broker.submit(Signal(bar, 1, 0.5, math.inf, math.inf, 0), broker.snapshot(bars.loc[:bar], None))
        venue.server.advance_bar()  # a position without SL/TP (a run killed between the fill and its OCO)
        quiet = dataclasses.replace(executor, model=lambda: _never(executor.model()))

        report = run_cycle(quiet, venue.decided())

        assert report.signal is None
        assert [(a.intent, a.status) for a in report.acks] == [("exit", "accepted")]
        assert "no SL/TP on the venue" in report.acks[0].message


def _never(trading: TradingModel) -> TradingModel:
    """The same release with an entry threshold no probability reaches: it never trades."""
    params = dataclasses.replace(trading.params, entry_threshold=1.0, min_confidence=1.0)
    return dataclasses.replace(trading, params=params)


def test_the_latency_summary_gives_the_distribution_of_acknowledgement_times() -> None:
    assert latency_summary([]) == {}
    summary = latency_summary([1.0, 2.0, 3.0, 4.0, 10.0])
    assert summary == {"count": 5.0, "p50": 3.0, "p95": pytest.approx(8.8), "max": 10.0}
