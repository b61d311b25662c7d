"""Stand-ins the live-trading job tests share: a notifier that records, and the paper broker read as spot."""

from __future__ import annotations

import dataclasses

import pandas as pd

from scalpbot.core.execution import BrokerSnapshot, OrderAck, Signal
from scalpbot.ports import Broker


class RecordingNotifier:
    """A notifier that keeps every ``(subject, message, level)`` it is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def notify(self, subject: str, message: str, *, level: str = "info") -> None:
        self.sent.append((subject, message, level))


class SpotPaper:
    """The paper broker reading a short signal as the spot venue does: it closes a long and opens nothing."""

    def __init__(self, paper: Broker) -> None:
        self._paper = paper
        self.name = paper.name

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        return self._paper.snapshot(bars, since)

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        if signal.side < 0:
            signal = dataclasses.replace(signal, size=0.0)
        return self._paper.submit(signal, snapshot)

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        return self._paper.flatten(decided_at, snapshot)
