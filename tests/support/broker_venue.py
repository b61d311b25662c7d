"""A test venue for the ccxt broker: the Binance trading look-alike, its clock and bars, and brokers pointed at it."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.ccxt.broker import CcxtBroker
from scalpbot.adapters.ccxt.common import RetryPolicy, rebased_api_urls
from scalpbot.adapters.clock import FixedClock
from scalpbot.core.execution import BrokerSnapshot, OrderAck, Signal

from support.binance_server import Series, sample_series
from support.binance_trading import KEY, SECRET, BinanceTradingServer

NOW = datetime(2024, 12, 1, 12, 0, 5, tzinfo=UTC)  # 5 s into the 12:00 bar: 11:59 has just closed
OPEN_1200 = 97108.89  # the open of the 12:00 bar: where an entry decided on 11:59 fills
BOT, SYMBOL = "bot-1", "BTC/USDT"
MINUTE = pd.Timedelta(minutes=1)


@functools.cache
def sample_series_cached() -> dict[str, Series]:
    """Return the bundled sample's series, read once per test session."""
    return sample_series()


class Waits(Protocol):
    """A venue double whose rate-limit clock a broker's pause advances."""

    def wait(self, seconds: float) -> None: ...


S = TypeVar("S", bound=Waits)


class SampleMarket(Generic[S]):
    """A venue double's ``server`` at its ``clock``'s time: the bundled sample's BTC/USDT bars as it serves them,
    and the pauses brokers took (``sleeps``)."""

    def __init__(self, server: S, clock: FixedClock) -> None:
        self.server = server
        self.clock = clock
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        """Record a broker's pause and let it pass on the venue's rate-limit clock."""
        self.sleeps.append(seconds)
        self.server.wait(seconds)

    def bars(self, n: int = 30) -> pd.DataFrame:
        """Return the last ``n`` bars closed at the clock's time (canonical frame)."""
        btc = sample_series_cached()["BTCUSDT"]
        last = int(
            np.searchsorted(btc.open_ms, int(self.clock.now().timestamp() * 1000) - 60_000, side="right")
        )
        stamps = pd.to_datetime(btc.open_ms[last - n : last], unit="ms", utc=True)
        columns = ["open", "high", "low", "close", "volume"]
        return pd.DataFrame(
            btc.ohlcv[last - n : last], index=pd.DatetimeIndex(stamps, name="timestamp"), columns=columns
        )

    def snapshot(self, broker: CcxtBroker, since: pd.Timestamp | None = None) -> BrokerSnapshot:
        return broker.snapshot(self.bars(), since)

    def decided(self) -> pd.Timestamp:
        """Return the bar that just closed: a decision on it acts at the open of the bar the clock is in."""
        return pd.Timestamp(self.clock.now()).floor("1min") - MINUTE

    def signal(
        self, side: int, *, size: float = 0.5, sl: float = 0.01, tp: float = 0.01, hold: int = 0
    ) -> Signal:
        return Signal(self.decided(), side, size, sl, tp, hold)


class Venue(SampleMarket[BinanceTradingServer]):
    """The server, its clock, the bars closed so far, and the retry pauses brokers took (``sleeps``)."""

    def broker(self, *, adopt: bool = False, max_wait: float = 60.0, **config: Any) -> CcxtBroker:
        """Return a new broker on the server (3 attempts, tiny backoff through :meth:`sleep`); ``config`` adds
        ccxt settings."""
        settings = {"apiKey": KEY, "secret": SECRET, "rateLimit": 1, "timeout": 2000, **config}
        return CcxtBroker(
            "binance",
            bot=BOT,
            symbol=SYMBOL,
            timeframe="1m",
            config=settings,
            api_urls=rebased_api_urls("binance", self.server.url),
            fee_rate=0.001,
            adopt=adopt,
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.04, max_wait=max_wait),
            sleep=self.sleep,
        )

    def enter(self, **signal: Any) -> tuple[CcxtBroker, BrokerSnapshot, Signal]:
        """Go long on the bar that just closed; return the broker, the snapshot it decided on and the signal."""
        trader = self.broker()
        before = self.snapshot(trader)
        sig = self.signal(1, **signal)
        acks = trader.submit(sig, before)
        assert statuses(acks) == [("entry", "accepted"), ("sl", "accepted"), ("tp", "accepted")]
        return trader, before, sig


def statuses(acks: list[OrderAck]) -> list[tuple[str, str]]:
    """Return ``(intent, status)`` of each ack."""
    return [(a.intent, a.status) for a in acks]


@contextmanager
def running_venue(monkeypatch: pytest.MonkeyPatch, now: datetime = NOW) -> Iterator[Venue]:
    """Run a trading server at ``now`` (default ``NOW``) with 10,000 USDT and 0.1 % fees; no proxy for 127.0.0.1."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    clock = FixedClock(now)
    with BinanceTradingServer(clock, sample_series_cached()) as server:
        yield Venue(server, clock)
