"""Trades the simulator made and the bot did not are reported with the reason the ledger gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.jobs.monitor import measure_week, simulate_drift
from scalpbot.jobs.trading import replay
from scalpbot.state.ledger import Ledger

from support.trained import active_services

pytestmark = pytest.mark.slow

START = pd.Timestamp("2024-12-29T00:00:00Z")
END = pd.Timestamp("2024-12-29T06:00:00Z")


def test_trades_denied_by_the_cool_down_are_missed_with_the_denial_as_reason(
    active_release: tuple[Path, str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(active_release[0], store)
    services = active_services(store, cooldown_after_losses=1, cooldown_bars=30)
    replay(services, services.series(), START, END, bot="cautious", notifier=ConsoleNotifier())
    denials = Ledger(services.store, "cautious").events(kinds=("denial",))
    assert denials, "the cool-down should have denied entries"
    week = measure_week(services, "cautious", services.series(), START, END)
    assert week.previous_metrics is None  # the bot did not trade before START
    drift = simulate_drift(services, week)
    missed = drift["missed"]
    assert len(missed) == drift["totals"]["missed_trades"] > 0
    assert {m["side"] for m in missed} <= {"long", "short"}
    denied = [m for m in missed if m["reason"].startswith("denied: ")]
    assert denied, [m["reason"] for m in missed]
    messages = {str(d.payload["message"]) for d in denials}
    assert {m["reason"].removeprefix("denied: ") for m in denied} <= messages
    assert isinstance(drift["simulated_equity"], pd.Series)
    assert len(drift["simulated_equity"]) == len(week.equity)
    assert drift["simulated_equity"].iloc[0] == pytest.approx(week.equity.iloc[0])
