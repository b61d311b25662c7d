"""A test venue for the ccxt broker on OKX spot: the OKX look-alike, its clock and bars, and brokers pointed at it."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.broker.ccxt_broker import CcxtBroker
from scalpbot.adapters.ccxt_common import rebased_api_urls
from scalpbot.adapters.clock import FixedClock
from scalpbot.core.execution import BrokerSnapshot, Signal

from support.binance_server import Series, sample_series
from support.broker_venue import NOW
from support.okx_server import KEY, PASSPHRASE, SECRET, OkxServer

BOT, SYMBOL = "bot-1", "BTC/USDT"
MINUTE = pd.Timedelta(minutes=1)


@functools.cache
def _series() -> dict[str, Series]:
    return sample_series()


class OkxVenue:
    """The server, its clock, the bars closed so far, and the pauses brokers took (``sleeps``)."""

    def __init__(self, server: OkxServer, clock: FixedClock) -> None:
        self.server = server
        self.clock = clock
        self.sleeps: list[float] = []

    def broker(self, **config: Any) -> CcxtBroker:
        """Return a new broker on the server (3 attempts, tiny backoff recorded in ``sleeps``)."""
        settings = {
            "apiKey": KEY,
            "secret": SECRET,
            "password": PASSPHRASE,
            "rateLimit": 1,
            "timeout": 2000,
            **config,
        }
        return CcxtBroker(
            "okx",
            bot=BOT,
            symbol=SYMBOL,
            timeframe="1m",
            config=settings,
            api_urls=rebased_api_urls("okx", self.server.url),
            fee_rate=0.001,
            max_attempts=3,
            base_delay=0.01,
            max_delay=0.04,
            sleep=self.sleeps.append,
        )

    def bars(self, n: int = 30) -> pd.DataFrame:
        """Return the last ``n`` bars closed at the clock's time (canonical frame)."""
        btc = _series()["BTCUSDT"]
        now_ms = int(self.clock.now().timestamp() * 1000)
        last = int(np.searchsorted(btc.open_ms, now_ms - 60_000, side="right"))
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


@contextmanager
def running_okx(monkeypatch: pytest.MonkeyPatch, **server: Any) -> Iterator[OkxVenue]:
    """Run an OKX look-alike at ``NOW`` with 10,000 USDT and 0.1 % fees; no proxy for 127.0.0.1."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    clock = FixedClock(NOW)
    with OkxServer(clock, _series(), **server) as okx:
        yield OkxVenue(okx, clock)
