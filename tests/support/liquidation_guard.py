"""The liquidation-guard check through the execute job, shared by the swap venues' doubles."""

from __future__ import annotations

from typing import Any

import pandas as pd

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.jobs.cycle import CycleReport, run_cycle
from scalpbot.ports import Broker
from scalpbot.state.history import MemoryHistory
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import Services, build_executor

MINUTE = pd.Timedelta(minutes=1)
CYCLES = 30


def guarded_start(start: pd.Timestamp) -> pd.Timestamp:
    """Return the double's clock start for cycles from ``start``: 5 s after the first bar's close."""
    return start + MINUTE + pd.Timedelta(seconds=5)


def run_guarded_cycles(
    services: Services, venue: Any, broker: Broker, *, bot: str, start: pd.Timestamp
) -> list[CycleReport]:
    """Run :data:`CYCLES` execute cycles of ``bot`` through ``broker`` on ``venue`` (a running double with
    ``decided()`` and ``server.advance_bar()``), from the bar opened at ``start``; return their reports."""
    series = services.series()
    history = MemoryHistory(
        services.dataset.read_with_warmup(series, start, start + pd.Timedelta(hours=2), FEATURE_WINDOW)
    )
    executor = build_executor(
        services, series, bot=bot, bars=history, notifier=ConsoleNotifier(), broker=broker
    )
    reports = []
    for _ in range(CYCLES):
        reports.append(run_cycle(executor, venue.decided()))
        venue.server.advance_bar()
    return reports


def assert_only_guard_denials(services: Services, reports: list[CycleReport], *, bot: str) -> None:
    """Assert some cycle was denied, every denial by the liquidation guard, as the ledger records it too."""
    denials = [r.denial for r in reports if r.denial]
    assert denials and all("liquidation guard" in d for d in denials)
    events = Ledger(services.store, bot).events(kinds=("denial",))
    assert events and {e.payload.get("code") for e in events} == {"liquidation_guard"}
