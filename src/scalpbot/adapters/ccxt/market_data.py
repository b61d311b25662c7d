"""Closed OHLCV bars from any ccxt exchange: paginated, rate limited, retried with backoff.

Every ccxt call goes through :class:`~scalpbot.adapters.ccxt.common.CcxtCalls`, which retries temporary
failures and maps ccxt's errors to scalpbot's (see that module); a symbol or timeframe the exchange does not
list is a ``ConfigError`` raised here before any bar is requested.

Credentials passed in ``config`` are redacted from every message and never shown by ``repr``.

Order flow: on Binance spot and USD-M linear markets (ccxt ids ``binance`` and ``binanceusdm``) the pages are
Binance's raw klines, fetched with ccxt's own endpoint methods (``publicGetKlines``, ``fapiPublicGetKlines``:
the same request ``fetch_ohlcv`` sends, with its rate limiting and error mapping), because ``fetch_ohlcv``
keeps only OHLCV. Their chunks carry ``trades`` (number of trades) and ``taker_buy_volume`` (taker-buy base
volume) as well. Other venues and markets report no order flow: their chunks have OHLCV only.
"""

from __future__ import annotations

import difflib
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.adapters.ccxt.common import RetryPolicy, ccxt_exchange, connect
from scalpbot.adapters.marketdata._bars import bars_frame, iso_ms, utc_ms
from scalpbot.core.bars import ORDER_FLOW_COLUMNS
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.errors import ConfigError
from scalpbot.ports import Clock

__all__ = ["CcxtMarketData", "ccxt_exchange"]  # ccxt_exchange: re-exported from .common

_log = logging.getLogger(__name__)
_BINANCE_IDS = ("binance", "binanceusdm")
_BINANCE_KLINE_LIMIT = 1000  # the spot endpoint's maximum (USD-M allows 1500)
_KLINE_FIELDS = (0, 1, 2, 3, 4, 5, 8, 9)  # open time, OHLCV, number of trades, taker-buy base volume


class CcxtMarketData:
    """Closed bars of one ccxt exchange, fetched page by page from ``since`` up to ``until`` or now.

    ``config`` is ccxt's constructor dict (see ``ccxt_exchange``); ``api_urls`` replaces ``urls['api']``
    (e.g. to point at a proxy or a local test server). Retries: a temporary failure (``ccxt.OperationFailed``
    or an HTTP 418/429/5xx reply, whatever class ccxt gave it) is retried as ``retry`` says (:class:`RetryPolicy`);
    see ``CcxtCalls``. ``sleep`` and ``rng`` are injectable so that tests run fast and
    deterministically.
    Rate limits: ccxt's throttle spaces requests by ``rateLimit`` (ms) times each endpoint's cost.
    """

    def __init__(
        self,
        exchange_id: str,
        clock: Clock,
        *,
        config: Mapping[str, Any] | None = None,
        api_urls: Mapping[str, Any] | None = None,
        page_limit: int = 1000,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008  (a frozen value)
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if page_limit < 1:
            raise ConfigError(f"page_limit must be at least 1 bar, got {page_limit}")
        self.name = exchange_id
        self._exchange, self._calls = connect(
            exchange_id,
            config,
            api_urls=api_urls,
            retry=retry,
            sleep=sleep,
            rng=rng,
            strict_json=False,
        )
        self._clock = clock
        self._page_limit = page_limit

    def __repr__(self) -> str:
        return f"CcxtMarketData(exchange={self.name!r}, page_limit={self._page_limit})"

    @property
    def exchange(self) -> Any:
        """Return the underlying ``ccxt.Exchange`` (for inspection; errors from direct calls are untranslated)."""
        return self._exchange

    def fetch_bars(
        self, symbol: str, timeframe: str, since: datetime | None, until: datetime | None
    ) -> Iterator[pd.DataFrame]:
        """Yield closed bars, one chunk per exchange page, oldest first.

        ``since`` is inclusive and ``until`` exclusive (bar open times, aware UTC); ``since=None`` starts at
        the exchange's first bar (epoch 0 is requested), ``until=None`` ends at the last bar closed at
        ``clock.now()``, read once when the fetch starts. A bar whose close time (open + timeframe) is after
        that moment is still forming and is never yielded. Chunks are sorted and never repeat a bar.
        """
        step_ms = timeframe_seconds(timeframe) * 1000
        start_ms = 0 if since is None else -(-utc_ms(since, "since") // step_ms) * step_ms
        until_ms = None if until is None else utc_ms(until, "until")
        return self._pages(_unified_symbol(symbol), timeframe, step_ms, start_ms, until_ms)

    def _pages(
        self, symbol: str, timeframe: str, step_ms: int, start_ms: int, until_ms: int | None
    ) -> Iterator[pd.DataFrame]:
        self._check_series(symbol, timeframe)
        now_ms = utc_ms(self._clock.now(), "clock.now()")
        end_ms = now_ms - step_ms + 1  # exclusive bound on open times: open + step <= now
        if until_ms is not None:
            end_ms = min(end_ms, until_ms)
        klines = self._kline_endpoint(symbol)
        cursor, newest_yielded = start_ms, -1
        while cursor < end_ms:
            what = f"fetching {symbol} {timeframe} bars from {iso_ms(cursor)}"
            if klines is None:
                rows = self._calls.call(
                    what, self._exchange.fetch_ohlcv, symbol, timeframe, cursor, self._page_limit
                )
            else:
                request = {
                    "symbol": self._exchange.market(symbol)["id"],
                    "interval": self._exchange.timeframes.get(timeframe, timeframe),
                    "startTime": cursor,
                    "limit": min(self._page_limit, _BINANCE_KLINE_LIMIT),
                }
                rows = self._calls.call(what, klines, request)
            if not rows:
                return
            open_ms, values = _page_arrays(rows, _KLINE_FIELDS if klines is not None else range(6))
            keep = (open_ms >= cursor) & (open_ms > newest_yielded) & (open_ms < end_ms)
            if keep.any():
                newest_yielded = int(open_ms[keep][-1])
                chunk = bars_frame(open_ms[keep], values[keep, :5])
                for k, name in enumerate(ORDER_FLOW_COLUMNS[: values.shape[1] - 5]):
                    chunk[name] = values[keep, 5 + k]
                yield chunk
            next_cursor = int(open_ms[-1]) + step_ms
            if next_cursor <= cursor:
                _log.warning("%s: page did not advance past %s; stopping", self.name, iso_ms(cursor))
                return
            cursor = next_cursor

    def _kline_endpoint(self, symbol: str) -> Callable[[dict[str, Any]], Any] | None:
        """Return ccxt's raw Binance klines method for ``symbol``'s market, or ``None`` (use ``fetch_ohlcv``)."""
        if self._exchange.id not in _BINANCE_IDS:
            return None
        market = self._exchange.market(symbol)
        if market.get("spot"):
            return self._exchange.publicGetKlines  # type: ignore[no-any-return]
        if market.get("linear") and not market.get("option"):
            return self._exchange.fapiPublicGetKlines  # type: ignore[no-any-return]
        return None  # coin-M (volume in contracts) and options: OHLCV through fetch_ohlcv

    def _check_series(self, symbol: str, timeframe: str) -> None:
        markets = self._calls.call("loading markets", self._exchange.load_markets)
        if symbol not in markets:
            hints = difflib.get_close_matches(symbol, list(markets), n=3)
            did_you_mean = f" (did you mean {' or '.join(repr(h) for h in hints)}?)" if hints else ""
            raise ConfigError(
                f"symbol '{symbol}' is not listed on {self.name}{did_you_mean}; "
                "use the exchange's unified BASE/QUOTE symbol, e.g. BTC/USDT"
            )
        if not self._exchange.has.get("fetchOHLCV"):
            raise ConfigError(
                f"{self.name} does not provide OHLCV bars through ccxt; choose another exchange"
            )
        timeframes = self._exchange.timeframes or {}
        if timeframes and timeframe not in timeframes:
            offered = ", ".join(timeframes)
            raise ConfigError(f"{self.name} has no '{timeframe}' bars; it offers {offered}")


def _page_arrays(rows: list[list[Any]], fields: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Return a page's open times (epoch ms) and the values of ``fields`` after the first (OHLCV, then the
    order flow of a raw kline), sorted, keeping the last of equal times. Binance sends decimals as strings."""
    chosen = list(fields)
    table = np.array([[row[i] for i in chosen] for row in rows], dtype=np.float64)
    order = np.argsort(table[:, 0], kind="stable")
    table = table[order]
    open_ms = table[:, 0].astype(np.int64)
    last_of_each = np.append(open_ms[1:] != open_ms[:-1], True)
    return open_ms[last_of_each], table[last_of_each, 1:]


def _unified_symbol(symbol: str) -> str:
    """Accept the storage spelling ``BTC_USDT`` for the unified ``BTC/USDT``."""
    if "/" not in symbol and symbol.count("_") == 1:
        return symbol.replace("_", "/")
    return symbol
