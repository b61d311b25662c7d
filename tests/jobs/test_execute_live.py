"""The execute job with the live ccxt broker against a local exchange speaking Binance's REST API."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.data.history import MemoryHistory
from scalpbot.jobs.execute import run_cycle
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.wiring import build_executor

from support.binance_trading import OCO, ORDER
from support.broker_venue import running_venue
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
