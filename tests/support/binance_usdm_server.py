"""A Binance USDⓈ-M look-alike: the Binance trading double's HTTP server, signing, timestamp/``recvWindow`` checks,
request weight (429 then 418 with ``Retry-After``) and fault injection, serving the ``/fapi`` endpoints of one
futures account (:mod:`support.binance_usdm`), and brokers pointed at it.

Public: ``GET /fapi/v1/ping``, ``/fapi/v1/time``, ``/fapi/v1/exchangeInfo``, ``/fapi/v1/klines`` (the sample's
bars), ``/fapi/v1/fundingRate``. Signed: ``/fapi/v1/positionSide/dual``, ``leverage``, ``marginType``,
``symbolConfig``, ``/fapi/v3/positionRisk``, ``/fapi/v3/balance``, ``order``, ``allOrders``, ``userTrades``,
``income``, ``algoOrder`` (POST/GET/DELETE), ``openAlgoOrders``, ``allAlgoOrders``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from scalpbot.adapters.ccxt.binance_swap import BinanceSwapBroker
from scalpbot.adapters.ccxt.common import RetryPolicy, rebased_api_urls
from scalpbot.adapters.clock import FixedClock

from support.binance_server import Series
from support.binance_trading import KEY, SECRET, BinanceTradingServer
from support.binance_usdm import UsdmBook, exchange_info, funding_rows
from support.broker_venue import NOW, SampleMarket, sample_series_cached

ORDER = "/fapi/v1/order"
ALGO_ORDER = "/fapi/v1/algoOrder"
LEVERAGE = "/fapi/v1/leverage"
MARGIN_TYPE = "/fapi/v1/marginType"
BOT, SWAP_SYMBOL = "bot-1", "BTC/USDT:USDT"


class BinanceUsdmServer(BinanceTradingServer):
    """The Binance look-alike with a USDⓈ-M futures account (``usdm``); use as a context manager.

    ``usdm`` keyword arguments go to :class:`~support.binance_usdm.UsdmBook` (``cash``, ``fee_rate``,
    ``leverage``, ``funding``).
    """

    def __init__(self, clock: FixedClock, series: Mapping[str, Series], **usdm: Any) -> None:
        super().__init__(clock, series)
        ids = itertools.count(4_000_000_001)
        self.usdm = UsdmBook(self._series, next_id=lambda: next(ids), **usdm)
        book = self.usdm
        self._routes = {
            ("GET", "/fapi/v1/positionSide/dual"): lambda p, now: book.position_mode(),
            ("POST", LEVERAGE): lambda p, now: book.set_leverage(p),
            ("POST", MARGIN_TYPE): lambda p, now: book.set_margin_type(p),
            ("GET", "/fapi/v1/symbolConfig"): lambda p, now: book.symbol_config(p),
            ("GET", "/fapi/v3/positionRisk"): book.position_risk,
            ("GET", "/fapi/v3/balance"): lambda p, now: book.balance(now),
            ("POST", ORDER): book.new_order,
            ("GET", ORDER): lambda p, now: book.find(p),
            ("GET", "/fapi/v1/allOrders"): lambda p, now: book.all_orders(p),
            ("GET", "/fapi/v1/userTrades"): lambda p, now: book.user_trades(p),
            ("GET", "/fapi/v1/income"): lambda p, now: book.income_history(p),
            ("POST", ALGO_ORDER): book.new_algo,
            ("DELETE", ALGO_ORDER): book.cancel_algo,
            ("GET", ALGO_ORDER): lambda p, now: book.query_algo(p),
            ("GET", "/fapi/v1/openAlgoOrders"): lambda p, now: book.open_algos(p),
            ("GET", "/fapi/v1/allAlgoOrders"): lambda p, now: book.all_algos(p),
        }

    def advance_bar(self) -> None:
        """Let the bar holding the clock finish (liquidation, then conditional orders), move the clock 1 minute;
        a position pays funding as the next bar opens at a funding time."""
        with self._lock:
            self.usdm.settle_bar(self._now_ms())
            self.clock.advance(timedelta(minutes=1))
            self.usdm.settle_funding(self._now_ms())

    def _respond(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path == "/fapi/v1/ping":
            return 200, {}
        if path == "/fapi/v1/time":
            return 200, {"serverTime": self.server_ms()}
        if path == "/fapi/v1/exchangeInfo":
            return 200, exchange_info(self._now_ms())
        if path == "/fapi/v1/klines":
            return self._klines(params)
        if path == "/fapi/v1/fundingRate":
            return 200, funding_rows(self.usdm.funding, params, self._now_ms())
        return 404, {"code": -1000, "msg": f"Unknown path {path}"}


class UsdmVenue(SampleMarket[BinanceUsdmServer]):
    """The server, its futures account, its clock, and the pauses brokers took (``sleeps``)."""

    @property
    def book(self) -> UsdmBook:
        return self.server.usdm

    def broker(self, *, leverage: float = 3.0, bot: str = BOT, **config: Any) -> BinanceSwapBroker:
        """Return a new broker (a new process, as far as the venue can tell) at ``leverage``, isolated."""
        settings = {"apiKey": KEY, "secret": SECRET, "rateLimit": 1, "timeout": 2000}
        return BinanceSwapBroker(
            bot=bot,
            symbol=SWAP_SYMBOL,
            timeframe="1m",
            leverage=leverage,
            config={**settings, **config},
            api_urls=rebased_api_urls("binanceusdm", self.server.url),
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.04),
            sleep=self.sleep,
        )

    def clock_ms(self) -> int:
        """Return the market clock (ms): where an order sent now fills."""
        return self.server._now_ms()

    def posts(self, path: str) -> list[dict[str, str]]:
        """Return the parameters of every ``POST`` to ``path``."""
        return self.server.posts(path)


@contextmanager
def running_usdm(
    monkeypatch: pytest.MonkeyPatch,
    funding: Mapping[pd.Timestamp, float] | None = None,
    start: datetime = NOW,
    **usdm: Any,
) -> Iterator[UsdmVenue]:
    """Run a Binance USDⓈ-M look-alike at ``start`` (default ``NOW``) with a 10,000 USDT futures wallet (0.05 %
    taker, 20x cross until set); ``funding`` rates by funding time."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    clock = FixedClock(start)
    rates = {int(t.timestamp() * 1000): Decimal(repr(r)) for t, r in (funding or {}).items()}
    with BinanceUsdmServer(clock, sample_series_cached(), funding=rates, **usdm) as server:
        yield UsdmVenue(server, clock)
