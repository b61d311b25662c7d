"""The Binance look-alike with a spot account: signed trading endpoints on top of the public market data.

:class:`BinanceTradingServer` extends :class:`support.binance_server.BinanceServer` (same bars, clock, fault
injection and request record) with the signed endpoints ccxt's ``binance`` class uses for spot trading:

* ``GET /api/v3/account``, ``GET /api/v3/openOrders``, ``GET /api/v3/allOrders``, ``GET /api/v3/order``,
  ``GET /api/v3/myTrades``;
* ``POST /api/v3/order`` (MARKET fills at once at the open of the bar holding the server clock; LIMIT,
  LIMIT_MAKER, STOP_LOSS(_LIMIT), TAKE_PROFIT(_LIMIT) rest), ``POST /api/v3/orderList/oco`` (Binance's
  request and reply format: ``above*``/``below*`` legs), ``DELETE /api/v3/order``, ``DELETE /api/v3/orderList``.

Strict by default, as the venue is (:mod:`support.binance_rules`): requests are signed with HMAC-SHA256 and
checked against ``keys``; ``timestamp``/``recvWindow`` are checked against the server's own clock (the wall
clock plus ``skew_ms``, answered by ``GET /api/v3/time``); quantities and prices must be plain decimals; every
request is weighed and the weight answered in ``X-MBX-USED-WEIGHT-1M``, 429 then 418 with ``Retry-After``
past ``weight_limit``. The account, matching and fees live in :mod:`support.binance_book` (client ids refused
only while open, commission in the received asset, the quote or BNB, partial fills, late visibility).

:meth:`advance_bar` lets one bar pass: resting orders are matched against it, then the clock moves one minute.
Faults: everything ``BinanceServer`` injects (HTTP errors, slow replies), plus :meth:`garble_next` (malformed
JSON), :meth:`lose_reply_next` (the order is executed but answered 503 ``-1007``), :meth:`drop_reply_next`
(executed, then the connection is closed unanswered) and :attr:`down` (connections are dropped unanswered).
Every request is recorded with its query and form parameters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from scalpbot.adapters.clock import FixedClock

from support.binance_book import BinanceError, Book, Order
from support.binance_rules import WeightLimiter, check_decimals, check_signature, check_timestamp
from support.binance_server import ERROR_BODIES, BinanceServer, RecordedRequest, Series

KEY, SECRET = "K3yAbCdEfGhIjKlMnOp", "S3cretQrStUvWxYz0123"

ACCOUNT = "/api/v3/account"
ORDER = "/api/v3/order"
OCO = "/api/v3/orderList/oco"
ORDER_LIST = "/api/v3/orderList"
OPEN_ORDERS = "/api/v3/openOrders"
ALL_ORDERS = "/api/v3/allOrders"
MY_TRADES = "/api/v3/myTrades"
LOST_REPLY = {
    "code": -1007,
    "msg": "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
}
GARBLED = '{"symbol": "BTCUSDT", "orderId": 12, "status": "NEW", "price'
DROPPED = object()

Endpoint = Callable[[dict[str, str], int], Any]


class BinanceTradingServer(BinanceServer):
    """A Binance spot look-alike with one account, on ``127.0.0.1``; use as a context manager.

    ``balances``: starting free balance per asset (default 10,000 USDT); ``fee_rate``: commission as a fraction
    of the notional on every fill (Binance's default 0.1 %), paid in ``commission`` (``received``, ``quote`` or
    ``BNB``); ``keys``: API key -> secret accepted (default ``KEY``/``SECRET``); ``skew_ms``: how far the
    server's clock is ahead of the wall clock; ``weight_limit``: request weight per minute (Binance: 6000).
    ``check_auth=False`` is the lenient mode: signatures and timestamps are not checked.
    """

    def __init__(
        self,
        clock: FixedClock,
        series: Mapping[str, Series] | None = None,
        *,
        balances: Mapping[str, str] | None = None,
        fee_rate: str = "0.001",
        commission: str = "received",
        keys: Mapping[str, str] | None = None,
        skew_ms: int = 0,
        weight_limit: int = 6000,
        check_auth: bool = True,
    ) -> None:
        super().__init__(clock, series)
        start = {k: Decimal(v) for k, v in (balances or {"USDT": "10000"}).items()}
        self.book = Book(self._series, start, Decimal(fee_rate), commission)
        self.keys = dict(keys if keys is not None else {KEY: SECRET})
        self.skew_ms = skew_ms
        self.limiter = WeightLimiter(limit=weight_limit, clock=lambda: self.clock.now().timestamp())
        self.check_auth = check_auth
        self.down = False
        self._lost: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._routes: dict[tuple[str, str], Endpoint] = {
            ("GET", ACCOUNT): lambda p, now: self.book.account(now, p.get("omitZeroBalances") == "true"),
            ("GET", ORDER): lambda p, now: self.book.find(p).report(),
            ("GET", OPEN_ORDERS): lambda p, now: self.book.open_orders(p),
            ("GET", ALL_ORDERS): lambda p, now: self.book.all_orders(p),
            ("GET", MY_TRADES): lambda p, now: self.book.my_trades(p),
            ("POST", ORDER): self.book.new_order,
            ("POST", OCO): self.book.new_oco,
            ("DELETE", ORDER): self.book.cancel_order,
            ("DELETE", ORDER_LIST): self.book.cancel_list,
        }
        self._httpd.RequestHandlerClass = _trading_handler(self, self._httpd.RequestHandlerClass)

    def server_ms(self) -> int:
        """Return the venue's own clock (ms): the wall clock plus ``skew_ms``."""
        return int(time.time() * 1000) + self.skew_ms

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the rate limiter's clock (a test's stand-in for sleeping)."""
        with self._lock:
            self.limiter.waited += seconds

    def advance_bar(self) -> None:
        """Let the bar holding the clock finish: match resting orders against it, then move the clock 1 minute."""
        with self._lock:
            for symbol in self._series:
                self.book.settle_bar(symbol, self._now_ms())
            self.clock.advance(timedelta(minutes=1))

    def garble_next(self, count: int, path: str, method: str | None = None) -> None:
        """Answer the next ``count`` requests to ``path`` (of ``method``, any if ``None``) with HTTP 200 and
        truncated JSON, without acting on them."""
        self.fail_next(count, 200, path=path, body=GARBLED, method=method)

    def lose_reply_next(self, count: int, path: str) -> None:
        """Execute the next ``count`` requests to ``path`` but answer 503 ``-1007`` (status unknown)."""
        with self._lock:
            self._lost[path] = self._lost.get(path, 0) + count

    def drop_reply_next(self, count: int, path: str) -> None:
        """Execute the next ``count`` requests to ``path``, then close the connection without an answer."""
        with self._lock:
            self._dropped[path] = self._dropped.get(path, 0) + count

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """Return ``(free, locked)`` of ``asset``."""
        with self._lock:
            free, locked = self.book.balances.get(asset, [Decimal(0), Decimal(0)])
            return free, locked

    def orders(self, status: str | None = None) -> list[Order]:
        """Return every order placed so far (optionally only those with ``status``), oldest first."""
        with self._lock:
            return [o for o in self.book.orders if status in (None, o.status)]

    def posts(self, path: str) -> list[dict[str, str]]:
        """Return the parameters of every ``POST`` to ``path``, in arrival order."""
        return [r.params for r in self.requests if r.method == "POST" and r.path == path]

    def _trade(
        self, method: str, path: str, params: dict[str, str], api_key: str | None, raw: tuple[str, str]
    ) -> tuple[int, Any]:
        endpoint = self._routes.get((method, path))
        if endpoint is None:
            if method == "GET" and path == "/api/v3/time":
                return 200, {"serverTime": self.server_ms()}
            if method == "GET":
                return self._respond(path, params)
            return 404, {"code": -1000, "msg": f"Unknown path {method} {path}"}
        with self._lock:
            try:
                if not api_key:
                    raise BinanceError(401, -2014, "API-key format invalid.")
                for name in ("timestamp", "signature"):
                    if not params.get(name):
                        raise BinanceError(
                            400,
                            -1102,
                            f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
                        )
                if self.check_auth:
                    check_signature(self.keys, api_key, *raw)
                    check_timestamp(params, self.server_ms())
                check_decimals(params)
                reply = endpoint(params, self._now_ms())
            except BinanceError as e:
                return e.status, {"code": e.code, "msg": e.msg}
            if self._lost.get(path, 0) > 0:
                self._lost[path] -= 1
                return 503, LOST_REPLY
            if self._dropped.get(path, 0) > 0:
                self._dropped[path] -= 1
                return 0, DROPPED
            return 200, reply

    def _admit(self, method: str, path: str) -> tuple[int, dict[str, str]]:
        """Weigh one request; return the refusal status (200: admitted) and the headers to answer with."""
        with self._lock:
            status, used, retry_after = self.limiter.admit(method, path)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if status != 200:
            headers["Retry-After"] = str(retry_after)
        return status, headers


def _trading_handler(
    server: BinanceTradingServer, base: type[BaseHTTPRequestHandler]
) -> type[BaseHTTPRequestHandler]:
    class TradingHandler(base):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:  # noqa: N802 (http.server names)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            params = dict(parse_qsl(parts.query))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params.update(parse_qsl(body))
            if server.down:
                self.close_connection = True  # drop it unanswered, like a host that is gone
                return
            fault = server._record(RecordedRequest(method, parts.path, params, time.monotonic()))
            admitted, headers = server._admit(method, parts.path)
            if admitted != 200:
                refusal = ERROR_BODIES[admitted]
                self._send(admitted, json.dumps(refusal), headers)
                return
            if fault is not None and fault.delay_s > 0 and server._stopping.wait(fault.delay_s):
                return
            if fault is not None and fault.status is not None:
                self._send(fault.status, fault.body or "", headers)
                return
            api_key = self.headers.get("X-MBX-APIKEY")
            status, payload = server._trade(method, parts.path, params, api_key, (parts.query, body))
            if payload is DROPPED:
                self.close_connection = True
                return
            self._send(status, json.dumps(payload), headers)

    return TradingHandler
