"""How the bot's last live cycle went, in wall-clock time: ``state/{bot}/last_cycle.json``, overwritten each cycle.

Telemetry for the operator (the dashboard, ``/api/bots/{bot}/cycle``), not state the bot decides on: the ledger
records bar times only, so how long after the bar's close a cycle finished is kept here. ``latency_seconds`` is
the time from the bar's close to the end of its cycle (orders acknowledged); ``cycle_seconds`` what the cycle
itself took. Replays do not write it: their wall clock says nothing about the market's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scalpbot.errors import CorruptArtifactError, ObjectNotFound
from scalpbot.ports import Store
from scalpbot.state.codec import check_bot, dump, format_time, load, parse_time

__all__ = ["CycleTiming", "load_cycle_timing", "save_cycle_timing"]


@dataclass(frozen=True, slots=True)
class CycleTiming:
    """One live cycle: its bar (open time), status, and when it started and finished (UTC wall clock)."""

    bar: pd.Timestamp
    status: str
    started_at: pd.Timestamp
    finished_at: pd.Timestamp
    bar_close: pd.Timestamp

    @property
    def cycle_seconds(self) -> float:
        """Return how long the cycle took."""
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def latency_seconds(self) -> float:
        """Return the time from the bar's close to the end of its cycle."""
        return (self.finished_at - self.bar_close).total_seconds()


def _key(bot: str) -> str:
    return f"state/{check_bot(bot)}/last_cycle.json"


def save_cycle_timing(store: Store, bot: str, timing: CycleTiming) -> None:
    """Overwrite the bot's last-cycle record."""
    document = {
        "v": 1,
        "bar": format_time(timing.bar),
        "status": timing.status,
        "started_at": format_time(timing.started_at),
        "finished_at": format_time(timing.finished_at),
        "bar_close": format_time(timing.bar_close),
        "cycle_seconds": round(timing.cycle_seconds, 6),
        "latency_seconds": round(timing.latency_seconds, 6),
    }
    store.put(_key(bot), dump(document))


def load_cycle_timing(store: Store, bot: str) -> CycleTiming | None:
    """Return the bot's last live cycle, or ``None`` when none was recorded; unreadable records are an error."""
    key = _key(bot)
    try:
        data = store.get(key).data
    except ObjectNotFound:
        return None
    document = load(data, key)
    try:
        return CycleTiming(
            bar=parse_time(document["bar"]),
            status=str(document["status"]),
            started_at=parse_time(document["started_at"]),
            finished_at=parse_time(document["finished_at"]),
            bar_close=parse_time(document["bar_close"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptArtifactError(
            f"{key} is malformed ({e!r}); delete it, the next live cycle rewrites it"
        ) from None
