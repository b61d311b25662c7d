"""The portfolio snapshot: the bot's view at ``state/{bot}/portfolio.json``, replaced only by compare-and-swap.

The execute job reads the snapshot with its ETag, works, and writes the next snapshot with that ETag: the write
is create-only the first time and compare-and-swap afterwards, so two overlapping runs cannot both commit on
the same base; the loser gets ``PreconditionFailed`` and re-reads. ``RiskState`` and ``Position`` round-trip
exactly: floats as JSON numbers (``"inf"``/``"-inf"`` strings for an absent stop or target), times ISO-8601 UTC
with microseconds, the risk day as ``YYYY-MM-DD``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

import pandas as pd

from scalpbot.core.execution import Position
from scalpbot.core.risk import RiskState
from scalpbot.errors import DataError, ObjectNotFound, PreconditionFailed
from scalpbot.ports import Store
from scalpbot.state.codec import (
    dump,
    float_in,
    format_time,
    load_versioned,
    parse_time,
    position_from_dict,
    position_to_dict,
    to_json_value,
)
from scalpbot.state.scope import state_key

__all__ = [
    "PortfolioSnapshot",
    "PortfolioStore",
    "StoredPortfolio",
    "risk_state_from_dict",
    "risk_state_to_dict",
]

_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class PortfolioSnapshot:
    """What the execute job needs to resume after bar ``last_bar_time`` (its open time, UTC) was processed.

        ``equity``: the last known equity (quote currency); ``risk``: the risk bookkeeping; ``position``: the open
        position, if any; ``open_orders``: client ids still working; ``release_id``: the model release that traded;
        ``last_fill_time``: the newest fill already recorded in the ledger; ``fill_count``: how many fill events
    the ledger holds (the sequence number of the newest); ``recorded_fills``: the keys (``client_id:reason``)
    of the fills at ``last_fill_time`` already recorded (several can share one bar); ``extra``: other
    JSON-native values.
    """

    last_bar_time: pd.Timestamp | None
    equity: float
    risk: RiskState
    position: Position | None = None
    open_orders: tuple[str, ...] = ()
    release_id: str | None = None
    last_fill_time: pd.Timestamp | None = None
    fill_count: int = 0
    recorded_fills: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredPortfolio:
    """A snapshot as read, with the ETag to pass to :meth:`PortfolioStore.save`."""

    snapshot: PortfolioSnapshot
    etag: str


def _time_out(value: pd.Timestamp | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return format_time(value, what)
    except ValueError as e:
        raise DataError(f"cannot save the portfolio snapshot: {e}") from None


def _time_in(value: object) -> pd.Timestamp | None:
    return None if value is None else parse_time(str(value))


def risk_state_to_dict(state: RiskState) -> dict[str, Any]:
    """Return ``state`` as JSON-native data (see the module docstring)."""
    return {
        "day": state.day.isoformat(),
        "day_start_equity": state.day_start_equity,
        "peak_equity": state.peak_equity,
        "last_equity": state.last_equity,
        "consecutive_losses": state.consecutive_losses,
        "cooldown_until": _time_out(state.cooldown_until, "cooldown_until"),
        "halted": state.halted,
        "halt_reason": state.halt_reason,
        "halted_at": _time_out(state.halted_at, "halted_at"),
    }


def risk_state_from_dict(data: Mapping[str, Any]) -> RiskState:
    """Return the ``RiskState`` of :func:`risk_state_to_dict`; raise ``ValueError``/``KeyError`` when malformed."""
    return RiskState(
        day=date.fromisoformat(data["day"]),
        day_start_equity=float_in(data["day_start_equity"]),
        peak_equity=float_in(data["peak_equity"]),
        last_equity=float_in(data["last_equity"]),
        consecutive_losses=int(data["consecutive_losses"]),
        cooldown_until=_time_in(data["cooldown_until"]),
        halted=bool(data["halted"]),
        halt_reason=None if data["halt_reason"] is None else str(data["halt_reason"]),
        halted_at=_time_in(data["halted_at"]),
    )


def _document(snapshot: PortfolioSnapshot) -> dict[str, Any]:
    if not math.isfinite(snapshot.equity):
        raise DataError(
            f"cannot save the portfolio snapshot: equity is {snapshot.equity}, expected a finite number"
        )
    try:
        extra = to_json_value(snapshot.extra, "extra")
        position = None if snapshot.position is None else position_to_dict(snapshot.position)
    except ValueError as e:
        raise DataError(f"cannot save the portfolio snapshot: {e}") from None
    return {
        "v": _SCHEMA,
        "last_bar_time": _time_out(snapshot.last_bar_time, "last_bar_time"),
        "equity": float(snapshot.equity),
        "risk": risk_state_to_dict(snapshot.risk),
        "position": position,
        "open_orders": [str(client_id) for client_id in snapshot.open_orders],
        "release_id": snapshot.release_id,
        "last_fill_time": _time_out(snapshot.last_fill_time, "last_fill_time"),
        "fill_count": int(snapshot.fill_count),
        "recorded_fills": [str(key) for key in snapshot.recorded_fills],
        "extra": extra,
    }


def _snapshot(data: Mapping[str, Any]) -> PortfolioSnapshot:
    position = data["position"]
    extra = dict(data["extra"])
    return PortfolioSnapshot(
        last_bar_time=_time_in(data["last_bar_time"]),
        equity=float_in(data["equity"]),
        risk=risk_state_from_dict(data["risk"]),
        position=None if position is None else position_from_dict(position),
        open_orders=tuple(str(client_id) for client_id in data["open_orders"]),
        release_id=None if data["release_id"] is None else str(data["release_id"]),
        last_fill_time=_time_in(data["last_fill_time"]),
        fill_count=int(data.get("fill_count", 0)),
        # snapshots written before the field existed kept the keys in ``extra``
        recorded_fills=tuple(str(k) for k in data.get("recorded_fills", extra.pop("recorded_fills", []))),
        extra=MappingProxyType(extra),
    )


class PortfolioStore:
    """Read and replace the snapshot of bot ``bot`` in ``store`` (``symbol``: that symbol's own, in a bot of
    several symbols; see :mod:`scalpbot.state.scope`)."""

    def __init__(self, store: Store, bot: str, symbol: str | None = None) -> None:
        self._store = store
        self.key = state_key(bot, "portfolio.json", symbol)

    def load(self) -> StoredPortfolio | None:
        """Return the snapshot and its ETag, or ``None`` before the first save.

        Raise ``CorruptArtifactError`` when the object cannot be parsed (fix or remove it by hand: the bot will
        not guess its position).
        """
        try:
            stored = self._store.get(self.key)
        except ObjectNotFound:
            return None
        return StoredPortfolio(load_versioned(stored.data, self.key, _SCHEMA, _snapshot), stored.etag)

    def save(self, snapshot: PortfolioSnapshot, etag: str | None) -> str:
        """Write ``snapshot`` and return its new ETag.

        ``etag``: the one :meth:`load` returned, or ``None`` when :meth:`load` found nothing (create-only).
        Raise ``PreconditionFailed`` when the snapshot changed or appeared since it was read: re-read, redo the
        work on the newer snapshot, and save again.
        """
        data = dump(_document(snapshot))
        try:
            if etag is None:
                return self._store.put_if_absent(self.key, data)
            return self._store.put_if_match(self.key, data, etag)
        except PreconditionFailed as e:
            raise PreconditionFailed(
                f"{self.key} changed since it was read (another run saved first): re-read it and retry ({e})"
            ) from e
