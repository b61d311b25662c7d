"""Closed OHLCV bars from any ccxt exchange: paginated, rate limited, retried with backoff.

This module is the one place where ccxt's errors become scalpbot's, always with ``raise ... from e``::

    ccxt.OperationFailed or an HTTP 418/429/5xx reply    -> retried, then ExchangeTemporaryError
      (network, timeout, rate limit, server failure, garbled reply)
    ccxt.AuthenticationError                              -> ConfigError (fix the API keys)
    ccxt.BadSymbol, unknown symbol or timeframe           -> ConfigError (fix the series)
    any other ccxt.BaseError                              -> ExchangeError

Credentials passed in ``config`` are redacted from every message and never shown by ``repr``.
"""

from __future__ import annotations

import difflib
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import ccxt
import numpy as np
import pandas as pd

from scalpbot.adapters.marketdata._bars import bars_frame, iso_ms, utc_ms
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.errors import ConfigError, ExchangeError, ExchangeTemporaryError, ScalpbotError
from scalpbot.ports import Clock

__all__ = ["CcxtMarketData", "ccxt_exchange"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_SECRET_KEYS = (
    "apiKey",
    "secret",
    "password",
    "uid",
    "privateKey",
    "walletAddress",
    "token",
    "login",
    "twofa",
)


def ccxt_exchange(exchange_id: str, config: Mapping[str, Any] | None = None) -> Any:
    """Return a synchronous ``ccxt.Exchange`` with rate limiting always on; raise ``ConfigError`` if unknown.

    ``config`` is ccxt's constructor dict (``apiKey``, ``secret``, ``timeout`` in ms, ``options``, ``urls``,
    ``rateLimit`` in ms between requests of cost 1, ...), plus ``sandbox: True`` to switch to the venue's
    test network.
    """
    if exchange_id not in ccxt.exchanges:
        hints = difflib.get_close_matches(exchange_id.lower(), ccxt.exchanges, n=3)
        did_you_mean = f" (did you mean {' or '.join(repr(h) for h in hints)}?)" if hints else ""
        raise ConfigError(
            f"exchange '{exchange_id}' is not a ccxt exchange id{did_you_mean}; "
            "use a lower-case id from ccxt.exchanges such as 'binance', 'bybit' or 'kraken'"
        )
    settings = dict(config or {})
    sandbox = bool(settings.pop("sandbox", False))
    settings["enableRateLimit"] = True
    try:
        exchange = getattr(ccxt, exchange_id)(settings)
        if sandbox:
            exchange.set_sandbox_mode(True)
    except ccxt.NotSupported as e:
        raise ConfigError(f"exchange '{exchange_id}' has no sandbox; set sandbox to false") from e
    except ccxt.BaseError as e:
        message = _redact(str(e), settings)
        raise ConfigError(f"cannot configure exchange '{exchange_id}': {message}") from e
    return exchange


class CcxtMarketData:
    """Closed bars of one ccxt exchange, fetched page by page from ``since`` up to ``until`` or now.

    ``config`` is ccxt's constructor dict (see ``ccxt_exchange``); ``api_urls`` replaces ``urls['api']``
    (e.g. to point at a proxy or a local test server). Retries: a temporary failure (``ccxt.OperationFailed``
    or an HTTP 418/429/5xx reply, whatever class ccxt gave it) is retried up to ``max_attempts`` calls in all,
    pausing ``min(max_delay, base_delay * 2**(n-1))`` seconds before retry ``n``, less up to half of it at
    random (jitter). ``sleep`` and ``rng`` are injectable so that tests run fast and deterministically.
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
        max_attempts: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if page_limit < 1:
            raise ConfigError(f"page_limit must be at least 1 bar, got {page_limit}")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
        if base_delay < 0 or max_delay < base_delay:
            raise ConfigError(
                f"retry delays must satisfy 0 <= base_delay <= max_delay, got {base_delay}, {max_delay}"
            )
        settings = dict(config or {})
        if api_urls is not None:
            urls = dict(settings.get("urls") or {})
            urls["api"] = dict(api_urls)
            settings["urls"] = urls
        self.name = exchange_id
        self._exchange = ccxt_exchange(exchange_id, settings)
        self._secrets = [str(settings[k]) for k in _SECRET_KEYS if settings.get(k)]
        self._clock = clock
        self._page_limit = page_limit
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._last_status: int | None = None
        self._exchange.on_rest_response = self._record_status(self._exchange.on_rest_response)

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
        cursor, newest_yielded = start_ms, -1
        while cursor < end_ms:
            what = f"fetching {symbol} {timeframe} bars from {iso_ms(cursor)}"
            rows = self._call(what, self._exchange.fetch_ohlcv, symbol, timeframe, cursor, self._page_limit)
            if not rows:
                return
            open_ms, ohlcv = _page_arrays(rows)
            keep = (open_ms >= cursor) & (open_ms > newest_yielded) & (open_ms < end_ms)
            if keep.any():
                newest_yielded = int(open_ms[keep][-1])
                yield bars_frame(open_ms[keep], ohlcv[keep])
            next_cursor = int(open_ms[-1]) + step_ms
            if next_cursor <= cursor:
                _log.warning("%s: page did not advance past %s; stopping", self.name, iso_ms(cursor))
                return
            cursor = next_cursor

    def _check_series(self, symbol: str, timeframe: str) -> None:
        markets = self._call("loading markets", self._exchange.load_markets)
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

    def _call(self, what: str, fn: Callable[..., _T], *args: Any) -> _T:
        """Call ccxt, retrying temporary failures; translate every ccxt error (``what`` names the action)."""
        for attempt in range(1, self._max_attempts + 1):
            self._last_status = None
            try:
                return fn(*args)
            except ccxt.BaseError as e:
                error = self._translate(e, what, attempt)
                if error is not None:
                    raise error from e
                pause = self._backoff(attempt)
                _log.warning(
                    "%s: %s failed (%s); retry %d in %.2fs", self.name, what, type(e).__name__, attempt, pause
                )
                self._sleep(pause)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _translate(self, e: Exception, what: str, attempt: int) -> ScalpbotError | None:
        """Return the error to raise for ``e``, or ``None`` when the call should be retried."""
        detail = f"{type(e).__name__}: {_redact_values(str(e), self._secrets)}"
        if isinstance(e, ccxt.AuthenticationError):
            return ConfigError(
                f"{self.name} rejected the API credentials while {what} ({detail}); "
                "check apiKey/secret and their permissions"
            )
        if isinstance(e, ccxt.BadSymbol):
            return ConfigError(
                f"{self.name} does not know the symbol while {what} ({detail}); check the symbol"
            )
        temporary = isinstance(e, ccxt.OperationFailed) or _is_temporary_status(self._last_status)
        if not temporary:
            return ExchangeError(f"{self.name} refused {what} ({detail})")
        if attempt < self._max_attempts:
            return None
        plural = "s" if attempt > 1 else ""
        return ExchangeTemporaryError(
            f"{self.name}: {what} still failed after {attempt} attempt{plural} ({detail}); "
            "the exchange is unreachable, rate limiting or failing - retry later"
        )

    def _record_status(self, respond: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ccxt's response hook to keep the last HTTP status (ccxt's errors do not carry it)."""

        def record(code: int, *args: Any) -> Any:
            self._last_status = int(code)
            return respond(code, *args)

        return record

    def _backoff(self, retry: int) -> float:
        full = min(self._max_delay, self._base_delay * 2.0 ** (retry - 1))
        return full * (1.0 - 0.5 * self._rng.random())


def _page_arrays(rows: list[list[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Return a page's open times (epoch ms) and OHLCV values, sorted, keeping the last of equal times."""
    table = np.array([row[:6] for row in rows], dtype=np.float64)
    order = np.argsort(table[:, 0], kind="stable")
    table = table[order]
    open_ms = table[:, 0].astype(np.int64)
    last_of_each = np.append(open_ms[1:] != open_ms[:-1], True)
    return open_ms[last_of_each], table[last_of_each, 1:]


def _is_temporary_status(status: int | None) -> bool:
    """Return whether an HTTP status means "try again later": 418/429 (rate limits) or any 5xx."""
    return status is not None and (status in (418, 429) or status >= 500)


def _unified_symbol(symbol: str) -> str:
    """Accept the storage spelling ``BTC_USDT`` for the unified ``BTC/USDT``."""
    if "/" not in symbol and symbol.count("_") == 1:
        return symbol.replace("_", "/")
    return symbol


def _redact(message: str, settings: Mapping[str, Any]) -> str:
    return _redact_values(message, [str(settings[k]) for k in _SECRET_KEYS if settings.get(k)])


def _redact_values(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "***")
    return message
