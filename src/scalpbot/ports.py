"""Ports: the small interfaces that jobs depend on and adapters implement.

Each port has an in-memory or otherwise local implementation used by the tests
(``MemoryStore``, the synthetic market data source, ``FixedClock``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import pandas as pd

from scalpbot.core.execution import BrokerSnapshot, OrderAck, Signal


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
        ``open, high, low, close, volume``, then ``trades, taker_buy_volume`` where the source reports order
        flow (:mod:`scalpbot.core.bars`; absent, not zero, where it does not). ``since`` is inclusive, ``until`` exclusive (bar open
        times); ``None`` means from the source's first bar / up to the last closed bar.
        """
        ...


class FundingHistory(Protocol):
    """A source of a perpetual swap's settled funding rates."""

    def __call__(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        """Return the rates (fractions of position value per settlement) with funding time in ``[start, end)``,
        on a UTC index of funding times, oldest first; raise ``ExchangeError`` when the venue fails."""
        ...


class BarHistory(Protocol):
    """Closed bars of one series for the execute path (open times, UTC); see ``scalpbot.state.history``."""

    def between(self, start: pd.Timestamp | None, last: pd.Timestamp) -> pd.DataFrame:
        """Return the bars with open time in ``[start, last]`` (``start`` ``None``: from the first)."""
        ...

    def tail(self, last: pd.Timestamp, count: int) -> pd.DataFrame:
        """Return the last ``count`` bars with open time ``<= last`` (fewer when less history exists)."""
        ...

    def newest(self) -> pd.Timestamp | None:
        """Return the open time of the newest bar, or ``None`` when there is none."""
        ...


class Predictor(Protocol):
    """A release's model as the trading path uses it (``scalpbot.inference.onnx.OnnxModel`` in production).

    ``predict(features)`` takes float32 rows ``(n, n_features)`` of the model's inputs (the feature matrix, then
    any trailing window: :func:`scalpbot.core.window_features.model_inputs`) and returns the class
    probabilities ``(n, 3)`` of {short wins, neither, long wins} and the predicted forward volatility ``(n,)``
    (a fraction of price over the label horizon).
    """

    @property
    def n_features(self) -> int:
        """The number of feature columns the model reads."""
        ...

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(probs, vol)`` for each row of ``features``."""
        ...


class Clock(Protocol):
    """The time source; injected so that replays and tests control it."""

    def now(self) -> datetime:
        """Return the current time as an aware UTC datetime."""
        ...


class Broker(Protocol):
    """Where orders go: the paper broker (the kernel's fill rules) or an exchange through ccxt.

    A broker applies the one execution model: an entry decided on bar ``t`` fills at the next open with
    stop loss and take profit attached (held on the exchange by a live broker), an opposite signal reverses,
    a same-direction signal is ignored, a time stop exits after ``max_hold`` bars. Client order ids come from
    :func:`scalpbot.core.execution.client_order_id`, so a re-submitted order is a duplicate, never a second
    order.
    """

    name: str

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        """Reconcile with the venue after the last bar of ``bars`` closed; raise ``ExchangeError`` if it can't.

        ``bars`` are closed bars (canonical frame) ending with the bar just closed; ``since``: report fills
        from this time on (``None``: all that the broker knows).
        """
        ...

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Act on the policy's signal for the next open; return the venue's answer to each order sent."""
        ...

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Close any open position at the next open and cancel its protection (the kill switch)."""
        ...


class Notifier(Protocol):
    """A channel for results and errors (console locally, SNS on AWS, apprise URLs)."""

    def notify(self, subject: str, message: str, *, level: str = "info") -> None:
        """Send one message; ``level`` is ``info``, ``warning`` or ``error``. Never raises for a dead channel."""
        ...
