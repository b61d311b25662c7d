"""Canonical JSON for state objects: JSON-native values, ISO-8601 UTC times, the secret guard, bot names."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.errors import ConfigError, CorruptArtifactError

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""Times in state objects: UTC with microseconds, e.g. ``2024-01-01T00:01:00.000000Z``."""

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
