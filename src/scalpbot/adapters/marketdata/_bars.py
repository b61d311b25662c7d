"""Helpers shared by the market data adapters: UTC milliseconds and the chunk layout they yield."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from scalpbot.errors import ConfigError

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def utc_ms(moment: datetime, what: str) -> int:
    """Return an aware datetime as whole milliseconds since the Unix epoch (UTC), rounding down."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigError(f"{what} {moment.isoformat()} has no time zone; pass an aware UTC datetime")
    return (moment - _EPOCH) // _ONE_MS


def iso_ms(ms: int) -> str:
    """Return epoch milliseconds as an ISO-8601 UTC string for messages, e.g. ``2024-01-01T00:00:00Z``."""
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def bars_frame(open_ms: np.ndarray, ohlcv: np.ndarray) -> pd.DataFrame:
    """Return a chunk: ``timestamp`` (bar open, datetime64[ns, UTC]) and float64 OHLCV columns.

    ``open_ms`` holds bar open times in epoch milliseconds; ``ohlcv`` is an ``(n, 5)`` array.
    """
    frame = pd.DataFrame(np.asarray(ohlcv, dtype=np.float64), columns=list(OHLCV_COLUMNS))
    frame.insert(0, "timestamp", pd.to_datetime(np.asarray(open_ms, dtype=np.int64), unit="ms", utc=True))
    frame["timestamp"] = frame["timestamp"].dt.as_unit("ns")
    return frame
