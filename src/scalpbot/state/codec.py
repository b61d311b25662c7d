"""The one codec of what the store keeps as JSON: canonical documents, and the execute path's values.

* Canonical JSON for state objects: JSON-native values, ISO-8601 UTC times with microseconds, the secret guard,
  bot names (:func:`dump`, :func:`load`, :func:`to_json_value`).
* :class:`~scalpbot.core.execution.Signal`, :class:`~scalpbot.core.execution.Fill` and
  :class:`~scalpbot.core.execution.Position` to and from JSON-native dicts, as the ledger, the portfolio
  snapshot and the paper broker store them. Floats round-trip exactly: an infinite one (no stop, no target) is
  ``"inf"``/``"-inf"``, a missing one (NaN, or ``None`` where the field is optional) ``null``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from scalpbot.core.execution import Fill, Position, Signal
from scalpbot.errors import ConfigError, CorruptArtifactError, DataError

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""Times in state objects: UTC with microseconds, e.g. ``2024-01-01T00:01:00.000000Z``."""

_INFINITIES = {"inf": math.inf, "-inf": -math.inf}
_BOT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SECRET_WORDS = (
    "apikey",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "privatekey",
    "accesskey",
    "token",
    "authorization",
    "credential",
)


def check_bot(bot: str) -> str:
    """Return ``bot`` unchanged, or raise ``ConfigError`` when it cannot name a state folder."""
    if not isinstance(bot, str) or not _BOT_NAME.fullmatch(bot):
        raise ConfigError(f"bot name {bot!r} must be 1 to 64 letters, digits, '_' or '-', e.g. 'btc-scalper'")
    return bot


def utc_time(value: datetime | pd.Timestamp, what: str) -> pd.Timestamp:
    """Return ``value`` as a UTC ``Timestamp``; raise ``ValueError`` when naive or finer than a microsecond."""
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be an aware datetime or pandas Timestamp; got {type(value).__name__}")
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"{what} {stamp} is naive; pass a UTC time (tz_localize('UTC'))")
    if stamp.nanosecond:
        raise ValueError(f"{what} {stamp} has nanoseconds; state times have microsecond resolution")
    return stamp.tz_convert("UTC").as_unit("us")


def format_time(value: datetime | pd.Timestamp, what: str = "time") -> str:
    """Return ``value`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC)."""
    return utc_time(value, what).strftime(TIME_FORMAT)


def parse_time(text: str) -> pd.Timestamp:
    """Return the UTC ``Timestamp`` (microsecond unit) of an ISO-8601 time; raise ``ValueError`` otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"a time must be an ISO-8601 string; got {text!r}")
    stamp = pd.Timestamp(text)
    if stamp.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return stamp.tz_convert("UTC").as_unit("us")


def _is_secret(key: str) -> bool:
    folded = re.sub(r"[^a-z0-9]", "", key.lower())
    return any(word in folded for word in _SECRET_WORDS)


def to_json_value(value: object, path: str) -> Any:
    """Return ``value`` as JSON-native data, or raise ``ValueError`` naming ``path`` and how to fix it.

    Accepted: None, bool, str, int, finite float (numpy scalars too), aware datetimes (as ISO-8601 UTC strings),
    dates, mappings with string keys, lists and tuples. Keys that look like credentials are refused, and the
    message never repeats their value.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{path} is {number}; JSON holds finite numbers only (use null for unknown)")
        return number
    if isinstance(value, datetime):
        return format_time(value, path)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path} has the key {key!r}; JSON object keys must be strings")
            if _is_secret(key):
                raise ValueError(
                    f"{path} has the key {key!r}, which looks like a credential; secrets are never written to "
                    "the store: drop it"
                )
            result[key] = to_json_value(item, f"{path}[{key!r}]")
        return result
    if isinstance(value, list | tuple):
        return [to_json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise ValueError(
        f"{path} is a {type(value).__name__}, which is not JSON; pass numbers, strings, lists or dicts"
    )


def dump(document: Mapping[str, Any]) -> bytes:
    """Return the canonical UTF-8 bytes of a JSON-native ``document`` (sorted keys, no NaN)."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False
    ).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def load(data: bytes, key: str) -> dict[str, Any]:
    """Return the JSON object stored at ``key``; raise ``CorruptArtifactError`` when it is not one."""
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptArtifactError(f"{key} is not valid JSON ({e}); inspect or remove it") from e
    if not isinstance(document, dict):
        raise CorruptArtifactError(f"{key} holds a JSON {type(document).__name__}, expected an object")
    return document


_T = TypeVar("_T")


def load_versioned(data: bytes, key: str, schema: int, parse: Callable[[dict[str, Any]], _T]) -> _T:
    """Return ``parse`` of the JSON object stored at ``key`` with schema version ``schema`` (its ``"v"``).

    Raise ``CorruptArtifactError`` when it is not JSON, was written with another schema, or ``parse`` finds it
    malformed (``KeyError``, ``TypeError``, ``ValueError``, ``DataError``): the bot never guesses its state.
    """
    document = load(data, key)
    if document.get("v") != schema:
        raise CorruptArtifactError(
            f"{key} has schema {document.get('v')!r}; this scalpbot reads {schema}: upgrade scalpbot"
        )
    try:
        return parse(document)
    except (KeyError, TypeError, ValueError, DataError) as e:
        raise CorruptArtifactError(f"{key} is malformed ({e!r}); inspect or restore it") from None


# ---- the execute path's values: signals, fills, positions ---------------------------------------------------


def float_out(value: float) -> float | str:
    """Return a float as JSON: a number, or ``"inf"``/``"-inf"``; raise ``ValueError`` for NaN."""
    number = float(value)
    if math.isnan(number):
        raise ValueError("a NaN cannot be saved; use null for an unknown value")
    return number if math.isfinite(number) else ("inf" if number > 0 else "-inf")


def float_in(value: object) -> float:
    """Return the float of :func:`float_out`; raise ``ValueError`` for anything else."""
    if isinstance(value, str) and value in _INFINITIES:
        return _INFINITIES[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number; got {value!r}")
    return float(value)


def _optional_float_out(value: float | None) -> float | str | None:
    """Return a float as JSON, ``None`` and NaN (unknown) as null."""
    return None if value is None or math.isnan(value) else float_out(value)


def _optional_float_in(value: object) -> float | None:
    return None if value is None else float_in(value)


def _nan_in(value: object) -> float:
    """Return the float of :func:`_optional_float_out`, null as NaN."""
    return math.nan if value is None else float_in(value)


def signal_to_dict(signal: Signal) -> dict[str, Any]:
    """Return ``signal`` as JSON-native data (its decision time ISO-8601 UTC)."""
    return {
        "decided_at": format_time(signal.decided_at, "decided_at"),
        "side": int(signal.side),
        "size": _optional_float_out(signal.size),
        "sl": _optional_float_out(signal.sl),
        "tp": _optional_float_out(signal.tp),
        "max_hold": int(signal.max_hold),
    }


def signal_from_dict(data: Mapping[str, Any]) -> Signal:
    """Return the ``Signal`` of :func:`signal_to_dict`; raise ``ValueError``/``KeyError`` when malformed."""
    return Signal(
        parse_time(data["decided_at"]),
        int(data["side"]),
        _nan_in(data["size"]),
        _nan_in(data["sl"]),
        _nan_in(data["tp"]),
        int(data["max_hold"]),
    )


def fill_to_dict(fill: Fill) -> dict[str, Any]:
    """Return ``fill`` as JSON-native data (``pnl`` and ``entry_client_id`` may be null)."""
    return {
        "client_id": fill.client_id,
        "time": format_time(fill.time, "time"),
        "side": int(fill.side),
        "qty": float_out(fill.qty),
        "price": float_out(fill.price),
        "fee": float_out(fill.fee),
        "reason": fill.reason,
        "pnl": _optional_float_out(fill.pnl),
        "entry_client_id": fill.entry_client_id,
    }


def fill_from_dict(data: Mapping[str, Any]) -> Fill:
    """Return the ``Fill`` of :func:`fill_to_dict`; raise ``ValueError``/``KeyError`` when malformed."""
    entry = data.get("entry_client_id")
    return Fill(
        str(data["client_id"]),
        parse_time(data["time"]),
        int(data["side"]),
        float_in(data["qty"]),
        float_in(data["price"]),
        float_in(data["fee"]),
        str(data["reason"]),
        _optional_float_in(data.get("pnl")),
        None if entry is None else str(entry),
    )


def position_to_dict(position: Position) -> dict[str, Any]:
    """Return ``position`` as JSON-native data; an infinite ``sl_price``/``tp_price`` is ``"inf"``/``"-inf"``, a
    missing one (NaN: no such order on the venue) ``null``."""
    return {
        "side": int(position.side),
        "qty": float_out(position.qty),
        "entry_price": float_out(position.entry_price),
        "entry_time": format_time(position.entry_time, "entry_time"),
        "sl_price": _optional_float_out(position.sl_price),
        "tp_price": _optional_float_out(position.tp_price),
        "max_hold": int(position.max_hold),
        "entry_client_id": position.entry_client_id,
    }


def position_from_dict(data: Mapping[str, Any]) -> Position:
    """Return the ``Position`` of :func:`position_to_dict`; raise ``ValueError``/``KeyError`` when malformed."""
    if data["entry_time"] is None:
        raise ValueError("position entry_time is null")
    return Position(
        side=int(data["side"]),
        qty=float_in(data["qty"]),
        entry_price=float_in(data["entry_price"]),
        entry_time=parse_time(data["entry_time"]),
        sl_price=_nan_in(data["sl_price"]),
        tp_price=_nan_in(data["tp_price"]),
        max_hold=int(data["max_hold"]),
        entry_client_id=str(data["entry_client_id"]),
    )
