"""The append-only ledger: one immutable JSON object per event, written create-only.

Key: ``state/{bot}/ledger/{yyyy}/{mm}/{dd}/{ts}-{event_id}.json`` where ``ts`` is the event time in UTC as
``YYYYMMDDTHHMMSSffffffZ`` (so keys sort by time) and ``event_id`` is ``{kind}-{digest}`` (so a listing can
filter kinds without reading objects). Kinds: decision, order_sent, order_ack, fill, exit, denial, error, halt,
resume, or any other lowercase name.

**Idempotency.** The default event id is a hash of (kind, time, ``payload["client_id"]`` when present); an
``error`` event adds its content, so different errors at one time are separate events. A retried run that
appends the same event again finds the object there and gets the existing event back: a no-op. If the object
there differs (the retry decided something else), :class:`LedgerConflict` says so; nothing is overwritten.
Pass ``event_id=event_id_for(kind, time, *parts)`` to choose the identity yourself.

**Symbols.** A bot of several symbols keeps one ledger; each symbol's cycles write through
``Ledger(store, bot, symbol=...)``, which adds ``"symbol"`` to every payload (unless it names one already) and
to the default event id, so two symbols' decisions for one bar are two events. Fill sequence numbers count per
symbol (each symbol's snapshot counts its own). A bot of one symbol writes as it always did: no ``symbol``.

**Times.** Event times are aware UTC times with microsecond resolution: a decision's is its bar open time, a
fill's the venue's fill time; events at the same microsecond come back in kind-name order. Payload times are written as ISO-8601 UTC strings, floats must be finite, and keys
that look like credentials (apiKey, secret, password, token, ...) are refused.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.core.backtest.enums import TRADE_COLUMNS, ExitReasonT
from scalpbot.core.execution import Fill, FundingPayment
from scalpbot.errors import (
    CorruptArtifactError,
    LedgerConflict,
    LedgerError,
    LedgerGap,
    PreconditionFailed,
)
from scalpbot.ports import Store
from scalpbot.state.codec import (
    check_bot,
    dump,
    fill_to_dict,
    format_time,
    load,
    parse_time,
    to_json_value,
    utc_time,
)

__all__ = [
    "KINDS",
    "TRADE_COLUMNS",
    "Ledger",
    "LedgerConflict",
    "LedgerError",
    "LedgerEvent",
    "event_id_for",
    "fill_payload",
]

KINDS = (
    "decision",
    "order_sent",
    "order_ack",
    "fill",
    "exit",
    "denial",
    "error",
    "halt",
    "resume",
    "funding",
)
"""The kinds the execute job writes; others are allowed when they are lowercase names."""


_EXIT_REASONS = (*ExitReasonT._fields, "kill")
_SCHEMA = 1
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_EVENT_ID = re.compile(r"([a-z][a-z0-9_]{0,31})-[A-Za-z0-9_]{1,64}")
_TS_FORMAT = "%Y%m%dT%H%M%S%fZ"
_TS_LENGTH = 22
_DAILY_LISTING_MAX_DAYS = 62  # longer ranges list whole months (fewer requests, a few keys too many)
_ONE_MICROSECOND = pd.Timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One recorded event: its kind, UTC time, id, JSON-native payload (read-only) and store key."""

    kind: str
    time: pd.Timestamp
    event_id: str
    payload: Mapping[str, Any]
    key: str


def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise LedgerError(
            f"ledger kind {kind!r} must be a lowercase name (letters, digits, '_'), e.g. one of {', '.join(KINDS)}"
        )
    return kind


def event_id_for(kind: str, time: datetime | pd.Timestamp, *parts: str) -> str:
    """Return the deterministic id ``{kind}-{20 hex digits}`` of sha256 over (kind, time, *parts)."""
    _check_kind(kind)
    try:
        stamp = format_time(time, f"{kind} event time")
    except ValueError as e:
        raise LedgerError(str(e)) from None
    digest = hashlib.sha256("|".join((kind, stamp, *parts)).encode()).hexdigest()
    return f"{kind}-{digest[:20]}"


def fill_payload(fill: Fill, *, entry_client_id: str, **extra: object) -> dict[str, object]:
    """Return the payload of a ``fill`` event (the fill's time is the event time).

    ``entry_client_id``: the client id of the entry order the fill belongs to (the fill's own for an entry), by
    which :meth:`Ledger.trades` pairs exits with entries; ``pnl`` is the broker's realized PnL (exits), kept
    for audit: ``trades`` recomputes it from the fills. ``extra`` (e.g. ``symbol``) is stored as well.
    """
    body = fill_to_dict(fill)
    del body["time"]  # the event's own time
    return {**extra, **body, "entry_client_id": entry_client_id}


def _stamp(time: pd.Timestamp) -> str:
    return time.strftime(_TS_FORMAT)


def _bound(time: datetime | pd.Timestamp | None, what: str) -> pd.Timestamp | None:
    """Return a range bound as UTC, rounded up to a microsecond (event times have that resolution)."""
    if time is None:
        return None
    stamp = pd.Timestamp(time)
    if stamp.tzinfo is None:
        raise LedgerError(f"{what} {stamp} is naive; pass a UTC time (tz_localize('UTC'))")
    return stamp.tz_convert("UTC").ceil("us").as_unit("us")


class Ledger:
    """Append and read the events of bot ``bot`` in ``store``; ``symbol``: append as that symbol's cycles do
    (see the module docstring); reading is not restricted by it (pass ``symbol=`` to :meth:`trades`)."""

    def __init__(self, store: Store, bot: str, symbol: str | None = None) -> None:
        self._store = store
        self.bot = check_bot(bot)
        self.symbol = symbol
        self.prefix = f"state/{bot}/ledger/"

    def key(self, time: pd.Timestamp, event_id: str) -> str:
        """Return the store key of event ``event_id`` at UTC ``time``."""
        return f"{self.prefix}{time.strftime('%Y/%m/%d')}/{_stamp(time)}-{event_id}.json"

    def append(
        self,
        kind: str,
        time: datetime | pd.Timestamp,
        payload: Mapping[str, object],
        *,
        event_id: str | None = None,
    ) -> LedgerEvent:
        """Record one event create-only and return it; an identical event already there is returned as is.

        Raise :class:`LedgerConflict` when an event with the same id but other content exists, and
        :class:`LedgerError` for a bad kind, a naive time or a payload that is not JSON or holds a secret.
        """
        _check_kind(kind)
        if not isinstance(payload, Mapping):
            raise LedgerError(
                f"the {kind} payload must be a mapping (a JSON object); got {type(payload).__name__}"
            )
        if self.symbol is not None and "symbol" not in payload:
            payload = {**payload, "symbol": self.symbol}
        try:
            stamp = utc_time(time, f"{kind} event time")
            body = to_json_value(payload, f"{kind} payload")
        except ValueError as e:
            raise LedgerError(f"cannot record the {kind} event: {e}") from None
        if event_id is None:
            parts = [str(body["client_id"])] if "client_id" in body else []
            if self.symbol is not None:
                parts.append(self.symbol)
            if kind == "error":
                parts.append(hashlib.sha256(dump(body)).hexdigest())
            event_id = event_id_for(kind, stamp, *parts)
        elif not (
            isinstance(event_id, str) and (match := _EVENT_ID.fullmatch(event_id)) and match[1] == kind
        ):
            raise LedgerError(
                f"event id {event_id!r} must be '{kind}-' plus 1 to 64 letters, digits or '_'; "
                f"use event_id_for({kind!r}, time, ...)"
            )
        key = self.key(stamp, event_id)
        document = {
            "v": _SCHEMA,
            "bot": self.bot,
            "kind": kind,
            "time": format_time(stamp),
            "event_id": event_id,
            "payload": body,
        }
        try:
            self._store.put_if_absent(key, dump(document))
        except PreconditionFailed:
            existing = load(self._store.get(key).data, key)
            if existing != document:
                old = existing.get("payload")
                old = old if isinstance(old, dict) else {}
                differ = sorted(k for k in old.keys() | body.keys() if old.get(k) != body.get(k))
                raise LedgerConflict(
                    f"ledger event {key} already exists with different content (payload keys {differ} differ): "
                    f"a retried run recorded another {kind} for the same identity; the ledger keeps the first. "
                    "Check what changed between the runs (model, data, config)"
                ) from None
            return self._event(key, existing)
        return LedgerEvent(kind, stamp, event_id, MappingProxyType(body), key)

    def record_fill(self, fill: Fill, *, entry_client_id: str, **extra: object) -> LedgerEvent:
        """Record ``fill`` as a ``fill`` event at ``fill.time`` (see :func:`fill_payload`)."""
        return self.append("fill", fill.time, fill_payload(fill, entry_client_id=entry_client_id, **extra))

    def record_funding(self, payment: FundingPayment, **extra: object) -> LedgerEvent:
        """Record one funding settlement as a ``funding`` event at its funding time (one per trade and time)."""
        payload = {
            **extra,
            "entry_client_id": payment.entry_client_id,
            "side": int(payment.side),
            "qty": float(payment.qty),
            "price": float(payment.price),
            "rate": float(payment.rate),
            "amount": float(payment.amount),
        }
        event_id = event_id_for("funding", payment.time, payment.entry_client_id)
        return self.append("funding", payment.time, payload, event_id=event_id)

    def events(
        self,
        since: datetime | pd.Timestamp | None = None,
        until: datetime | pd.Timestamp | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[LedgerEvent]:
        """Return the events with ``since <= time < until`` (UTC), oldest first, optionally only ``kinds``.

        With both bounds only the days in range are listed (whole months past 62 days); an open bound lists
        every key under the bot's ledger. Raise ``CorruptArtifactError`` for an unreadable event.
        """
        return [self._read(key) for key in self._keys(since, until, kinds)]

    def keys(
        self,
        since: datetime | pd.Timestamp | None = None,
        until: datetime | pd.Timestamp | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[str]:
        """Return the store keys of the events :meth:`events` would return, without reading them (a listing)."""
        return self._keys(since, until, kinds)

    def trades(
        self,
        since: datetime | pd.Timestamp | None = None,
        until: datetime | pd.Timestamp | None = None,
        *,
        mark_price: float | None = None,
        mark_time: datetime | pd.Timestamp | None = None,
        fill_count: int | None = None,
        symbol: str | None = None,
    ) -> pd.DataFrame:
        """Rebuild trades from the fill events in ``[since, until)``, with the backtest's trade columns.

        **Nothing silently missing.** Fill events carry sequence numbers 1, 2, 3, ... (the execute cycle
        counts them in the portfolio snapshot). The numbers read must follow each other, start at 1 when
        ``since`` is open, and end at ``fill_count`` when it is given (the snapshot's count: pass it when the
        range reaches the bot's last cycle); otherwise :class:`~scalpbot.errors.LedgerGap` names the first
        missing fill. Fill events without a number (written before numbering) are not checked.

        Fills are grouped by ``entry_client_id``: a trade is in range when its entry fill is, and closed when
        its exit fills (any reason but ``entry``) add up to the entry quantity. ``pnl`` is after the fees of
        both sides, ``exit_reason`` the last exit's. A trade still open is reported with ``exit_reason``
        ``"open"`` marked at ``mark_price`` (quote currency) and ``mark_time`` (given together) with the fees
        paid so far (the entry's), as a backtest marks a position open at the end; without a mark it is left
        out. Exit fills whose entry is before ``since`` are ignored. ``funding`` sums the trade's ``funding``
        events (what it paid, negative: received), and ``pnl`` is after it.

        ``symbol``: only the trades of that symbol of a bot of several (events whose payload names it); the
        sequence numbers are checked per symbol, and ``fill_count`` is then that symbol's count. Without it,
        every fill is read (a bot of several symbols cannot take ``fill_count`` then).
        """
        if (mark_price is None) != (mark_time is None):
            raise LedgerError("pass mark_price and mark_time together to report open positions, or neither")
        mark = None
        if mark_price is not None and mark_time is not None:
            if not np.isfinite(mark_price) or mark_price <= 0:
                raise LedgerError(f"mark_price must be a finite price > 0; got {mark_price!r}")
            try:
                mark = (float(mark_price), utc_time(mark_time, "mark_time"))
            except ValueError as e:
                raise LedgerError(str(e)) from None
        groups: dict[str, list[LedgerEvent]] = defaultdict(list)
        fills = self.events(since, until, kinds=("fill",))
        if symbol is not None:
            fills = [event for event in fills if event.payload.get("symbol") == symbol]
        by_symbol: dict[object, list[LedgerEvent]] = defaultdict(list)
        for event in fills:
            by_symbol[event.payload.get("symbol")].append(event)
        if fill_count is not None and len(by_symbol) > 1:
            raise LedgerError(
                f"the fills of bot {self.bot} belong to several symbols; pass symbol= with fill_count "
                "(each symbol counts its own fills)"
            )
        for own in by_symbol.values() or [[]]:
            self._check_sequence(own, from_first=since is None, last=fill_count)
        for event in fills:
            groups[_text(event, "entry_client_id")].append(event)
        paid: dict[str, float] = defaultdict(float)
        for event in self.events(since, until, kinds=("funding",)):
            if symbol is None or event.payload.get("symbol") == symbol:
                paid[_text(event, "entry_client_id")] += _number(event, "amount")
        rows = [
            row
            for entry_id, fills in groups.items()
            if (row := _trade_row(fills, mark, paid.get(entry_id, 0.0))) is not None
        ]
        return _trades_frame(sorted(rows, key=lambda row: row[0]))

    def _check_sequence(self, fills: list[LedgerEvent], *, from_first: bool, last: int | None) -> None:
        """Raise :class:`LedgerGap` for the first fill sequence number missing among ``fills``."""
        numbered = sorted(
            (int(seq), event)
            for event in fills
            if isinstance(seq := event.payload.get("seq"), int) and not isinstance(seq, bool)
        )
        if not numbered:
            if last and from_first:  # fills were recorded, none is left; a later window may just have none
                self._gap(1, None, None)
            return
        expected = 1 if from_first else numbered[0][0]
        before: LedgerEvent | None = None
        for seq, event in numbered:
            if seq != expected:
                self._gap(expected, before, event)
            before, expected = event, seq + 1
        if last is not None and expected <= last:
            self._gap(expected, before, None)

    def _gap(self, missing: int, before: LedgerEvent | None, after: LedgerEvent | None) -> None:
        where = " and ".join(
            part
            for part in (
                None if before is None else f"after the fill at {before.time.isoformat()}",
                None if after is None else f"before the fill at {after.time.isoformat()}",
            )
            if part
        )
        raise LedgerGap(
            f"the ledger of bot {self.bot} is missing fill #{missing}{' ' + where if where else ''}: its trades "
            "and metrics would be wrong, so none are reported. Restore the event from the store's earlier "
            "versions (S3 versioning keeps them 30 days) or its copy, then run the command again"
        )

    def _keys(
        self,
        since: datetime | pd.Timestamp | None,
        until: datetime | pd.Timestamp | None,
        kinds: Iterable[str] | None,
    ) -> list[str]:
        low, high = _bound(since, "since"), _bound(until, "until")
        wanted = (
            None
            if kinds is None
            else {_check_kind(kind) for kind in ([kinds] if isinstance(kinds, str) else kinds)}
        )
        if low is not None and high is not None:
            if high <= low:
                return []
            first, last = low.floor("D"), (high - _ONE_MICROSECOND).floor("D")
            days = pd.date_range(first, last, freq="D")
            if len(days) <= _DAILY_LISTING_MAX_DAYS:
                prefixes = [f"{self.prefix}{day.strftime('%Y/%m/%d')}/" for day in days]
            else:
                months = pd.date_range(first.replace(day=1), last, freq="MS")
                prefixes = [f"{self.prefix}{month.strftime('%Y/%m')}/" for month in months]
        else:
            prefixes = [self.prefix]
        low_text = None if low is None else _stamp(low)
        high_text = None if high is None else _stamp(high)
        keys = []
        for prefix in prefixes:
            for key in self._store.list(prefix):
                name = key.rpartition("/")[2]
                stamp, kind = name[:_TS_LENGTH], name[_TS_LENGTH + 1 :].partition("-")[0]
                if low_text is not None and stamp < low_text:
                    continue
                if high_text is not None and stamp >= high_text:
                    continue
                if wanted is None or kind in wanted:
                    keys.append(key)
        return keys

    def _read(self, key: str) -> LedgerEvent:
        return self._event(key, load(self._store.get(key).data, key))

    def _event(self, key: str, document: Mapping[str, Any]) -> LedgerEvent:
        try:
            kind, event_id, payload = document["kind"], document["event_id"], document["payload"]
            time = parse_time(document["time"])
        except (KeyError, ValueError) as e:
            raise CorruptArtifactError(f"ledger event {key} is malformed ({e!r}); inspect it") from None
        if document.get("v") != _SCHEMA:
            raise CorruptArtifactError(
                f"ledger event {key} has schema {document.get('v')!r}; this scalpbot reads {_SCHEMA}: upgrade"
            )
        if (
            not isinstance(payload, dict)
            or key != self.key(time, str(event_id))
            or not str(event_id).startswith(f"{kind}-")
        ):
            raise CorruptArtifactError(f"ledger event {key} does not match its key or has no payload object")
        return LedgerEvent(str(kind), time, str(event_id), MappingProxyType(payload), key)


def _text(event: LedgerEvent, name: str) -> str:
    value = event.payload.get(name)
    if not isinstance(value, str) or not value:
        raise CorruptArtifactError(f"fill event {event.key} has no {name} string")
    return value


def _number(event: LedgerEvent, name: str) -> float:
    value = event.payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CorruptArtifactError(f"fill event {event.key} has no numeric {name}")
    return float(value)


_Row = tuple[pd.Timestamp, pd.Timestamp, int, float, float, float, float, float, str, float]


def _average_price(fills: list[LedgerEvent], qty: float) -> float:
    """Return the quantity-weighted price of ``fills``; a single fill's own price, exactly (no re-rounding)."""
    if len(fills) == 1:
        return _number(fills[0], "price")
    return sum(_number(fill, "qty") * _number(fill, "price") for fill in fills) / qty


def _trade_row(
    fills: list[LedgerEvent], mark: tuple[float, pd.Timestamp] | None, funding: float
) -> _Row | None:
    """Return one trade from the fills of one entry (time order), or ``None`` (no entry in range, or open and no mark)."""
    entries = [fill for fill in fills if fill.payload.get("reason") == "entry"]
    if not entries:
        return None
    exits = [fill for fill in fills if fill.payload.get("reason") != "entry"]
    side = 1 if _number(entries[0], "side") > 0 else -1
    qty = sum(_number(fill, "qty") for fill in entries)
    entry_price = _average_price(entries, qty)
    fees = sum(_number(fill, "fee") for fill in fills)
    exit_qty = sum(_number(fill, "qty") for fill in exits)
    exit_value = sum(_number(fill, "qty") * _number(fill, "price") for fill in exits)
    if exits and exit_qty >= qty * (1.0 - 1e-9):
        exit_price, exit_time, reason = (
            _average_price(exits, exit_qty),
            exits[-1].time,
            _text(exits[-1], "reason"),
        )
    elif mark is not None:
        # Nothing sold yet: the mark itself (a weighted mean of one price can miss it in the last bit).
        marked = mark[0] if not exits else (exit_value + (qty - exit_qty) * mark[0]) / qty
        exit_price, exit_time, reason = marked, mark[1], "open"
    else:
        return None
    pnl = side * qty * (exit_price - entry_price) - fees - funding
    return (entries[0].time, exit_time, side, entry_price, exit_price, qty, pnl, fees, reason, funding)


def _trades_frame(rows: list[_Row]) -> pd.DataFrame:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(TRADE_COLUMNS)
    reasons = [str(reason) for reason in columns[8]]
    categories = [*_EXIT_REASONS, *sorted(set(reasons) - set(_EXIT_REASONS))]
    return pd.DataFrame(
        {
            "entry_time": pd.DatetimeIndex(list(columns[0]), dtype="datetime64[us, UTC]"),
            "exit_time": pd.DatetimeIndex(list(columns[1]), dtype="datetime64[us, UTC]"),
            "side": np.asarray(columns[2], dtype=np.int8),
            **{
                name: np.asarray(columns[i], dtype=np.float64)
                for i, name in enumerate(TRADE_COLUMNS[3:8], start=3)
            },
            "exit_reason": pd.Categorical(reasons, categories=pd.Index(categories)),
            "funding": np.asarray(columns[9], dtype=np.float64),
        }
    )
