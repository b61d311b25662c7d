"""A local HTTP server that speaks Binance's spot REST format, for testing ccxt adapters offline.

It serves what ccxt's ``binance`` class needs for public market data:

* ``GET /api/v3/exchangeInfo``: the served symbols that are listed (BTCUSDT, ETHUSDT, SOLUSDT by default, or
  the ``markets`` given) with Binance's real field names and filters.
* ``GET /api/v3/klines``: kline arrays ``[openTime, "open", "high", "low", "close", "volume", closeTime,
  "quoteVolume", trades, "takerBuyBase", "takerBuyQuote", "0"]`` honouring ``symbol``, ``interval``,
  ``startTime``, ``endTime`` and ``limit`` (default 500, at most 1000), with Binance's error bodies. The sample
  has no order flow: the trade count grows with the volume, and takers buy 20-80 % of each minute's volume,
  leaning with its move.

Bars come from the bundled real sample (BTCUSDT, 2024-11-20..2024-12-31, 1m); ETHUSDT is the same series
rescaled. The server has its own clock: a kline whose open time is at or before ``clock.now()`` is served, so
the last one can still be forming (its close is interpolated and its volume partial, like Binance's).
Faults can be injected for the next N matching requests: an HTTP status with Binance's JSON error body
(429, 418, 500, 503...) or a slow reply (for client timeouts). Every request is recorded.

Point ccxt at it with ``scalpbot.adapters.ccxt.common.rebased_api_urls("binance", server.url)`` (the
``exchange.api_url`` setting does the same).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from scalpbot.adapters.clock import FixedClock

from support.http_double import JoiningHTTPServer

MINUTE_MS = 60_000
INTERVAL_MINUTES = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
}
INTERVAL_MS = {name: minutes * MINUTE_MS for name, minutes in INTERVAL_MINUTES.items()}
ERROR_BODIES = {
    418: {"code": -1003, "msg": "Way too much request weight used; IP banned until 1735689600000."},
    429: {
        "code": -1003,
        "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
    },
    500: {"code": -1000, "msg": "An unknown error occurred while processing the request."},
    503: {
        "code": -1008,
        "msg": "Server is currently overloaded with other requests. Please try again in a few minutes.",
    },
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received: path, query parameters and arrival (``time.monotonic()`` s)."""

    method: str
    path: str
    params: dict[str, str]
    received_at: float


@dataclass(slots=True)
class _Fault:
    path: str
    remaining: int
    status: int | None
    body: str | None
    delay_s: float
    method: str | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """1m bars of one market: open times (epoch ms) and an ``(n, 5)`` OHLCV array."""

    open_ms: np.ndarray
    ohlcv: np.ndarray


def sample_series() -> dict[str, Series]:
    """Return BTCUSDT from the bundled real sample and ETHUSDT as the same bars rescaled."""
    path = resources.files("scalpbot.sample").joinpath("BTC_USDT-1m.csv.gz")
    with resources.as_file(path) as file:
        frame = pd.read_csv(file)
    open_ms = pd.to_datetime(frame["timestamp"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
    ohlcv = frame[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)
    eth = ohlcv * np.array([0.0365, 0.0365, 0.0365, 0.0365, 18.0])
    return {"BTCUSDT": Series(open_ms, ohlcv), "ETHUSDT": Series(open_ms, np.round(eth, 2))}


class BinanceServer:
    """A threaded Binance look-alike on ``127.0.0.1`` (ephemeral port); use as a context manager."""

    def __init__(
        self,
        clock: FixedClock,
        series: Mapping[str, Series] | None = None,
        markets: Mapping[str, Market] | None = None,
    ) -> None:
        self.clock = clock
        self._series = dict(series if series is not None else sample_series())
        self._markets = dict(markets if markets is not None else MARKETS)
        self._opens: dict[tuple[str, int], np.ndarray] = {}
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._outages: list[tuple[datetime, datetime, str]] = []
        self._stopping = threading.Event()
        self._httpd = JoiningHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="binance-server", daemon=True
        )

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:54321``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> BinanceServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut short any injected delay and close the socket."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BinanceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        path: str = "/api/v3/klines",
        body: str | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests to ``path`` (of ``method``, any if ``None``) with ``status`` and
        Binance's error body."""
        default = json.dumps(ERROR_BODIES.get(status, {"code": -1000, "msg": "An unknown error occurred."}))
        with self._lock:
            self._faults.append(_Fault(path, count, status, body or default, 0.0, method))

    def unavailable(self, start: datetime, end: datetime) -> None:
        """Answer every request with 503 while the server's clock is in ``[start, end)`` (an outage)."""
        body = json.dumps(ERROR_BODIES.get(503, {"code": -1000, "msg": "An unknown error occurred."}))
        with self._lock:
            self._outages.append((start, end, body))

    def delay_next(self, count: int, seconds: float, *, path: str = "/api/v3/klines") -> None:
        """Hold the next ``count`` requests to ``path`` for ``seconds`` before answering normally."""
        with self._lock:
            self._faults.append(_Fault(path, count, None, None, seconds))

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return a copy of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Return the recorded requests whose path is ``path``."""
        return [r for r in self.requests if r.path == path]

    def _record(self, request: RecordedRequest) -> _Fault | None:
        with self._lock:
            self._requests.append(request)
            now = self.clock.now()
            for start, end, body in self._outages:
                if start <= now < end:
                    return _Fault(request.path, 1, 503, body, 0.0)
            for fault in self._faults:
                if (
                    fault.path == request.path
                    and fault.remaining > 0
                    and fault.method in (None, request.method)
                ):
                    fault.remaining -= 1
                    return fault
        return None

    def _respond(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path == "/api/v3/ping":
            return 200, {}
        if path == "/api/v3/time":
            return 200, {"serverTime": self._now_ms()}
        if path == "/api/v3/exchangeInfo":
            return 200, exchange_info(self._now_ms(), self._series, self._markets)
        if path == "/api/v3/klines":
            return self._klines(params)
        return 404, {"code": -1000, "msg": f"Unknown path {path}"}

    def _now_ms(self) -> int:
        return (self.clock.now() - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

    def _klines(self, params: dict[str, str]) -> tuple[int, Any]:
        symbol = params.get("symbol", "")
        if not symbol:
            return 400, {
                "code": -1102,
                "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            }
        if symbol not in self._series:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        step = INTERVAL_MS.get(params.get("interval", ""))
        if step is None:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        try:
            limit = int(params.get("limit", "500"))
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError:
            return 400, {"code": -1100, "msg": "Illegal characters found in a parameter."}
        if not 1 <= limit <= 1000:
            return 400, {"code": -1130, "msg": "Invalid data sent for a parameter."}
        return 200, list(self._kline_rows(symbol, step, start, end, limit))

    def _kline_opens(self, symbol: str, step: int) -> np.ndarray:
        """Return the sorted open times (ms) of ``symbol``'s klines of ``step`` ms, computed once."""
        opens = self._opens.get((symbol, step))
        if opens is None:
            opens = self._opens[(symbol, step)] = np.unique(self._series[symbol].open_ms // step * step)
        return opens

    def _kline_rows(
        self, symbol: str, step: int, start: int | None, end: int | None, limit: int
    ) -> Iterator[list[Any]]:
        now = self._now_ms()
        series, opens = self._series[symbol], self._kline_opens(symbol, step)
        last = now if end is None else min(now, end)
        first = 0 if start is None else int(np.searchsorted(opens, start, side="left"))
        opens = opens[first : int(np.searchsorted(opens, last, side="right"))]
        opens = opens[:limit] if start is not None else opens[-limit:]
        for open_ms in opens:
            row = _aggregate(series, int(open_ms), step, now)
            if row is not None:
                yield row


def _aggregate(series: Series, open_ms: int, step: int, now: int) -> list[Any] | None:
    """Return one Binance kline over ``[open_ms, open_ms + step)`` as known at ``now`` (ms)."""
    i, j = np.searchsorted(series.open_ms, [open_ms, min(open_ms + step, now + 1)])
    if i >= j:
        return None
    bars = series.ohlcv[i:j].copy()
    minute_open = int(series.open_ms[j - 1])
    if now < minute_open + MINUTE_MS:  # the current minute is still forming
        done = (now - minute_open) / MINUTE_MS
        o, _, _, c, v = bars[-1]
        close = o + (c - o) * done
        bars[-1] = [o, max(o, close), min(o, close), close, v * done]
    o, h, lo, c, v = bars[0, 0], bars[:, 1].max(), bars[:, 2].min(), bars[-1, 3], bars[:, 4].sum()
    quote = v * (o + c) / 2
    trades = int(v * 40) + len(bars)
    # Takers lean with each minute's move: the share they buy rises with the close against the open.
    span = bars[:, 1] - bars[:, 2]
    lean = np.divide(bars[:, 3] - bars[:, 0], span, out=np.zeros(len(bars)), where=span > 0)
    taker = float(np.sum(bars[:, 4] * (0.5 + 0.3 * lean)))
    return [
        open_ms,
        f"{o:.8f}",
        f"{h:.8f}",
        f"{lo:.8f}",
        f"{c:.8f}",
        f"{v:.8f}",
        open_ms + step - 1,
        f"{quote:.8f}",
        trades,
        f"{min(taker, v):.8f}",
        f"{min(taker, v) * (o + c) / 2:.8f}",
        "0",
    ]


def exchange_info(
    now_ms: int, series: Mapping[str, Series], markets: Mapping[str, Market] | None = None
) -> dict[str, Any]:
    """Return a minimal ``/api/v3/exchangeInfo`` reply with Binance's real layout for the served symbols that
    ``markets`` (default :data:`MARKETS`) lists."""
    listed = MARKETS if markets is None else markets
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": [_symbol_info(name, listed[name]) for name in series if name in listed],
    }


Market = tuple[str, str, str, str, str]
"""A spot market's listing: (baseAsset, quoteAsset, tickSize, stepSize, MARKET_LOT_SIZE maxQty)."""

MARKETS: dict[str, Market] = {
    # symbol: (base, quote, tickSize, stepSize, marketMaxQty)
    "BTCUSDT": ("BTC", "USDT", "0.01000000", "0.00001000", "123.45678900"),
    "ETHUSDT": ("ETH", "USDT", "0.01000000", "0.00010000", "2876.99873000"),
    "SOLUSDT": ("SOL", "USDT", "0.01000000", "0.00100000", "9000.00000000"),
}


def _symbol_info(symbol: str, market: Market) -> dict[str, Any]:
    base, quote, tick, step, market_max = market
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000", "stepSize": step},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": market_max,
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN", "TRD_GRP_004", "TRD_GRP_005", "TRD_GRP_006"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"],
    }


def _handler_for(server: BinanceServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = dict(parse_qsl(parts.query))
            fault = server._record(RecordedRequest("GET", parts.path, params, time.monotonic()))
            if fault is not None and fault.delay_s > 0 and server._stopping.wait(fault.delay_s):
                return
            if fault is not None and fault.status is not None:
                self._send(fault.status, fault.body or "")
                return
            status, payload = server._respond(parts.path, params)
            self._send(status, json.dumps(payload))

        def _send(self, status: int, body: str, headers: Mapping[str, str] | None = None) -> None:
            data = body.encode()
            extra = dict(headers or {})
            if status in (418, 429):
                extra.setdefault("Retry-After", "1")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout) and closed the connection
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet; requests are recorded instead."""

    return Handler
