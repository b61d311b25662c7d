"""Ports: the small interfaces that jobs depend on and adapters implement.

Each port has an in-memory or otherwise local implementation used by the tests
(``MemoryStore``, the synthetic market data source, ``FixedClock``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import pandas as pd


@dataclass(frozen=True, slots=True)
class StoredObject:
    """Bytes read from the store with the ETag to pass to a later compare-and-swap put."""

    data: bytes
    etag: str


class Store(Protocol):
    """Key-value object storage with conditional writes (a folder locally, S3 on AWS).

    Keys are ``/``-separated relative paths such as ``data/binance/BTC_USDT/1m/2024-01-01.parquet``.
    A reader never sees a half-written object. ETags are opaque strings.
    """

    def get(self, key: str) -> StoredObject:
        """Return the object and its ETag; raise ``ObjectNotFound`` when the key is absent."""
        ...

    def head(self, key: str) -> str | None:
        """Return the object's ETag, or ``None`` when the key is absent."""
        ...

    def put(self, key: str, data: bytes) -> str:
        """Write unconditionally and return the new ETag."""
        ...

    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create-only write; raise ``PreconditionFailed`` when the key already exists."""
        ...

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Compare-and-swap write; raise ``PreconditionFailed`` unless the current ETag equals ``etag``."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Return every key starting with ``prefix``, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Delete the key; deleting an absent key is not an error."""
        ...

    def describe(self) -> str:
        """Return a human-readable location, e.g. ``folder ./scalpbot-data`` or ``s3://bucket/prefix``."""
        ...


class MarketData(Protocol):
    """A source of closed OHLCV bars."""

    name: str

    def fetch_bars(
        self, symbol: str, timeframe: str, since: datetime | None, until: datetime | None
    ) -> Iterator[pd.DataFrame]:
        """Yield closed bars in chunks, oldest first.

        Each chunk has a ``timestamp`` column (UTC bar **open** time) and float columns
        ``open, high, low, close, volume``. ``since`` is inclusive, ``until`` exclusive (bar open
        times); ``None`` means from the source's first bar / up to the last closed bar.
        """
        ...


class Clock(Protocol):
    """The time source; injected so that replays and tests control it."""

    def now(self) -> datetime:
        """Return the current time as an aware UTC datetime."""
        ...
