"""A test venue for the ccxt broker on OKX spot: the OKX look-alike, its clock and bars, and brokers pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from scalpbot.adapters.ccxt.broker import CcxtBroker
from scalpbot.adapters.ccxt.common import RetryPolicy, rebased_api_urls
from scalpbot.adapters.clock import FixedClock

from support.broker_venue import NOW, SampleMarket, sample_series_cached
from support.okx_server import KEY, PASSPHRASE, SECRET, OkxServer

BOT, SYMBOL = "bot-1", "BTC/USDT"
MINUTE = pd.Timedelta(minutes=1)


class OkxVenue(SampleMarket[OkxServer]):
    """The server, its clock, the bars closed so far, and the pauses brokers took (``sleeps``)."""

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
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.04),
            sleep=self.sleep,
        )


@contextmanager
def running_okx(monkeypatch: pytest.MonkeyPatch, start: datetime = NOW, **server: Any) -> Iterator[OkxVenue]:
    """Run an OKX look-alike at ``start`` (default ``NOW``) with 10,000 USDT and 0.1 % fees; no proxy for
    127.0.0.1."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    clock = FixedClock(start)
    with OkxServer(clock, sample_series_cached(), **server) as okx:
        yield OkxVenue(okx, clock)
