"""A test venue for the OKX swap broker: the OKX look-alike with its linear-swap account, and brokers on it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from scalpbot.adapters.ccxt.common import RetryPolicy, rebased_api_urls
from scalpbot.adapters.ccxt.okx_swap import OkxSwapBroker
from scalpbot.adapters.clock import FixedClock

from support.broker_venue import NOW, SampleMarket, sample_series_cached
from support.okx_server import KEY, PASSPHRASE, SECRET, OkxServer
from support.okx_swap import SwapBook

BOT, SWAP_SYMBOL = "bot-1", "BTC/USDT:USDT"


class OkxSwapVenue(SampleMarket[OkxServer]):
    """The server, its swap account, its clock, and the pauses brokers took (``sleeps``)."""

    @property
    def book(self) -> SwapBook:
        assert self.server.swap is not None
        return self.server.swap

    def broker(self, *, leverage: float = 3.0, bot: str = BOT, **config: Any) -> OkxSwapBroker:
        """Return a new broker (a new process, as far as the venue can tell) at ``leverage``, isolated."""
        settings = {"apiKey": KEY, "secret": SECRET, "password": PASSPHRASE, "rateLimit": 1, "timeout": 2000}
        return OkxSwapBroker(
            bot=bot,
            symbol=SWAP_SYMBOL,
            timeframe="1m",
            leverage=leverage,
            config={**settings, **config},
            api_urls=rebased_api_urls("okx", self.server.url),
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.04),
            sleep=self.sleep,
        )


@contextmanager
def running_okx_swap(
    monkeypatch: pytest.MonkeyPatch,
    funding: Mapping[pd.Timestamp, float] | None = None,
    start: datetime = NOW,
    **swap: Any,
) -> Iterator[OkxSwapVenue]:
    """Run an OKX look-alike at ``start`` (default ``NOW``) with a 10,000 USDT swap account (0.05 % taker,
    leverage 10 until set); ``funding`` rates by funding time."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    clock = FixedClock(start)
    rates = {int(t.timestamp() * 1000): Decimal(repr(r)) for t, r in (funding or {}).items()}
    with OkxServer(clock, sample_series_cached(), swap={"funding": rates, **swap}) as okx:
        yield OkxSwapVenue(okx, clock)
