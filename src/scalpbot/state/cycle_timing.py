"""How the bot's last live cycle went, in wall-clock time: ``last_cycle.json``, overwritten each cycle.

Telemetry for the operator (the dashboard, ``/api/bots/{bot}/cycle``), not state the bot decides on: the ledger
records bar times only, so how long after the bar's close a cycle finished is kept here. ``latency_seconds`` is
the time from the bar's close to the end of its cycle (orders acknowledged); ``cycle_seconds`` what the cycle
itself took. Replays do not write it: their wall clock says nothing about the market's.

A bot of one symbol keeps one record, ``state/{bot}/last_cycle.json``. A bot of several (a basket) keeps one
per symbol beside that symbol's state (``state/{bot}/symbols/{BASE_QUOTE}/last_cycle.json``: that symbol's own
cycle) and, at ``state/{bot}/last_cycle.json``, the bar close as a whole: from the start of the first symbol's
cycle to the end of the last one, with each symbol's status under ``symbols``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from scalpbot.errors import CorruptArtifactError, ObjectNotFound
from scalpbot.ports import Store
from scalpbot.state.codec import dump, format_time, load, parse_time
from scalpbot.state.scope import state_key

__all__ = ["CycleTiming", "load_cycle_timing", "save_cycle_timing"]

_NAME = "last_cycle.json"


@dataclass(frozen=True, slots=True)
class CycleTiming:
    """One live cycle: its bar (open time), status, and when it started and finished (UTC wall clock).

    ``symbols``: a basket's bar close as a whole - each symbol's status, in the order the cycles ran (empty for
    one symbol's cycle).
    """

    bar: pd.Timestamp
    status: str
    started_at: pd.Timestamp
    finished_at: pd.Timestamp
    bar_close: pd.Timestamp
    symbols: Mapping[str, str] = field(default_factory=dict)

    @property
    def cycle_seconds(self) -> float:
        """Return how long the cycle took."""
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def latency_seconds(self) -> float:
        """Return the time from the bar's close to the end of its cycle."""
        return (self.finished_at - self.bar_close).total_seconds()


def save_cycle_timing(store: Store, bot: str, timing: CycleTiming, symbol: str | None = None) -> None:
    """Overwrite the bot's last-cycle record (``symbol``: that symbol's own, in a bot of several)."""
    document: dict[str, Any] = {
        "v": 1,
        "bar": format_time(timing.bar),
        "status": timing.status,
        "started_at": format_time(timing.started_at),
        "finished_at": format_time(timing.finished_at),
        "bar_close": format_time(timing.bar_close),
        "cycle_seconds": round(timing.cycle_seconds, 6),
        "latency_seconds": round(timing.latency_seconds, 6),
    }
    if timing.symbols:
        document["symbols"] = dict(timing.symbols)
    store.put(state_key(bot, _NAME, symbol), dump(document))


def load_cycle_timing(store: Store, bot: str, symbol: str | None = None) -> CycleTiming | None:
    """Return the bot's last live cycle (``symbol``: that symbol's own), or ``None`` when none was recorded;
    unreadable records are an error."""
    key = state_key(bot, _NAME, symbol)
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
            symbols={str(k): str(v) for k, v in dict(document.get("symbols") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptArtifactError(
            f"{key} is malformed ({e!r}); delete it, the next live cycle rewrites it"
        ) from None
