"""A local HTTP server that speaks OKX's REST API v5 for spot trading, as ccxt's ``okx`` class calls it.

Public: ``GET /api/v5/public/time``, ``/public/instruments`` (BTC-USDT with OKX's fields), ``/market/candles``
and ``/market/history-candles`` (rows ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``, newest first,
``after``/``before``/``limit`` as OKX pages them) over the bundled real sample (with the swap account, for
BTC-USDT-SWAP too, at the same prices). Private, signed: account
balance, currencies, orders (place, look up, pending, history), fills, and algo orders (place, pending,
history, amend, cancel). The account and its matching live in :mod:`support.okx_book`.

Strict as the venue: every private request must carry ``OK-ACCESS-KEY``, ``OK-ACCESS-PASSPHRASE``,
``OK-ACCESS-TIMESTAMP`` (ISO 8601 with milliseconds, within 30 s of the server's clock: the wall clock plus
``skew_ms``) and ``OK-ACCESS-SIGN``, the base64 HMAC-SHA256 of ``timestamp + METHOD + path?query + body``
with the key's secret (``50103``-``50113`` otherwise, HTTP 401). Every reply is ``{"code", "msg", "data"}``.

Rate limits as OKX's: each endpoint allows :data:`LIMITS` requests per 2 s (on the market clock plus the time a
test's sleep "waited", :meth:`OkxServer.wait`); one more is answered HTTP 429 ``50011`` with no ``Retry-After``.

:meth:`OkxServer.advance_bar` lets one bar pass (algo orders are matched against it). Faults:
:meth:`OkxServer.drop_reply_next` (the request is executed, the connection closed unanswered) and
:meth:`OkxServer.lose_reply_next` (executed, answered 503 ``50001``). Every request is recorded.

Point ccxt at it with ``scalpbot.adapters.ccxt.common.rebased_api_urls("okx", server.url)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from scalpbot.adapters.clock import FixedClock

from support.binance_server import Series
from support.http_double import JoiningHTTPServer
from support.okx_book import INSTRUMENTS, Book, OkxError, Order
from support.okx_swap import SWAP, SwapBook, funding_rows, swap_instrument

KEY, SECRET, PASSPHRASE = (
    "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
    "9F8E7D6C5B4A39281706F5E4D3C2B1A0",
    "Pass-phrase1",
)
V5 = "/api/v5"
ORDER = f"{V5}/trade/order"
ORDER_ALGO = f"{V5}/trade/order-algo"
AMEND_ALGOS = f"{V5}/trade/amend-algos"
CANCEL_ALGOS = f"{V5}/trade/cancel-algos"
ALGOS_PENDING = f"{V5}/trade/orders-algo-pending"
LOST_REPLY = {"code": "50001", "msg": "Service temporarily unavailable. Please try again later.", "data": []}
RATE_LIMITED = {
    "code": "50011",
    "msg": "Rate limit reached. Please refer to API documentation and throttle requests accordingly",
    "data": [],
}
WINDOW_MS = 2_000
LIMITS: dict[str, int] = {
    f"{V5}/public/time": 10,
    f"{V5}/public/instruments": 20,
    f"{V5}/market/candles": 40,
    f"{V5}/market/history-candles": 20,
    f"{V5}/account/balance": 10,
    f"{V5}/asset/currencies": 6,
    ORDER: 60,
    f"{V5}/trade/orders-pending": 60,
    f"{V5}/trade/orders-history": 40,
    f"{V5}/trade/fills": 60,
    f"{V5}/trade/fills-history": 10,
    ORDER_ALGO: 20,
    AMEND_ALGOS: 20,
    CANCEL_ALGOS: 20,
    ALGOS_PENDING: 20,
    f"{V5}/trade/orders-algo-history": 20,
}
"""Requests per 2 s OKX allows on each endpoint (its API v5 documentation, per user or IP; placing and looking up
an order share the path, and ``GET``/``POST`` on it are counted together here, stricter than OKX)."""
DROPPED = object()
Endpoint = Callable[[Any, int], Any]


@dataclass(frozen=True, slots=True)
class Request:
    """One request the server received: method, path, query parameters and JSON body."""

    method: str
    path: str
    params: dict[str, str]
    body: Any


class OkxServer:
    """A threaded OKX look-alike with one spot account on ``127.0.0.1``; use as a context manager.

    ``balances``: starting free balance per currency (default 10,000 USDT); ``fee_rate``: commission on every
    fill (OKX's base spot taker rate, 0.1 %); ``attached_size``: how an attached SL/TP is sized once the entry
    fills (see :mod:`support.okx_book`); ``skew_ms``: how far the server's clock is ahead of the wall clock.
    """

    def __init__(
        self,
        clock: FixedClock,
        series: Mapping[str, Series],
        *,
        balances: Mapping[str, str] | None = None,
        fee_rate: str = "0.001",
        attached_size: str = "filled",
        keys: Mapping[str, tuple[str, str]] | None = None,
        skew_ms: int = 0,
        swap: Mapping[str, Any] | None = None,
    ) -> None:
        self.clock = clock
        self._series = dict(series)
        start = {k: Decimal(v) for k, v in (balances or {"USDT": "10000"}).items()}
        self.book = Book(self._series, start, Decimal(fee_rate), attached_size)
        self.keys = dict(keys if keys is not None else {KEY: (SECRET, PASSPHRASE)})
        self.skew_ms = skew_ms
        self.requests: list[Request] = []
        self.limits = dict(LIMITS)
        self.waited_ms = 0
        self.rate_limited: list[str] = []
        """The path of every request refused with ``50011``, in order."""
        self._counts: dict[tuple[str, int], int] = {}
        self._lost: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._lock = threading.Lock()
        self._private: dict[tuple[str, str], Endpoint] = {
            ("GET", f"{V5}/account/balance"): lambda p, now: self.book.balance(now),
            ("GET", f"{V5}/asset/currencies"): lambda p, now: _currencies(),
            ("GET", ORDER): lambda p, now: [self.book.find(p)],
            ("GET", f"{V5}/trade/orders-pending"): lambda p, now: [],
            ("GET", f"{V5}/trade/orders-history"): lambda p, now: self.book.history(p),
            ("GET", f"{V5}/trade/fills"): lambda p, now: self.book.fills_of(p),
            ("GET", f"{V5}/trade/fills-history"): lambda p, now: self.book.fills_of(p),
            ("GET", ALGOS_PENDING): lambda p, now: self.book.algos_pending(p),
            ("GET", f"{V5}/trade/orders-algo-history"): lambda p, now: self.book.algos_history(p),
            ("POST", ORDER): lambda p, now: [self.book.place(p, now)],
            ("POST", ORDER_ALGO): lambda p, now: [self.book.place_algo(p, now)],
            ("POST", AMEND_ALGOS): lambda p, now: [self.book.amend(p, now)],
            ("POST", CANCEL_ALGOS): lambda p, now: [self.book.cancel(x, now) for x in p],
        }
        self.swap: SwapBook | None = None
        if swap is not None:  # the linear-swap account (see support.okx_swap); its orders go to its own book
            self.swap = SwapBook(self._series, next_id=self.book._next_id, **swap)
            self._add_swap_endpoints(self.swap)
        self._httpd = JoiningHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="okx-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> OkxServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def server_ms(self) -> int:
        """Return the venue's own clock (ms): the wall clock plus ``skew_ms``."""
        return int(time.time() * 1000) + self.skew_ms

    def advance_bar(self) -> None:
        """Let the bar holding the clock finish: match algo orders against it, then move the clock 1 minute
        (a swap position pays funding as the next bar opens at a funding time)."""
        with self._lock:
            self.book.settle_bar(self._now_ms())
            if self.swap is not None:
                self.swap.settle_bar(self._now_ms())
            self.clock.advance(timedelta(minutes=1))
            if self.swap is not None:
                self.swap.settle_funding(self._now_ms())

    def _add_swap_endpoints(self, swap: SwapBook) -> None:
        def routed(spot: Endpoint, on_swap: Endpoint) -> Endpoint:
            def endpoint(p: Any, now: int) -> Any:
                inst = p[0].get("instId") if isinstance(p, list) and p else (p or {}).get("instId")
                algo = (p[0] if isinstance(p, list) and p else p or {}).get("algoId")
                is_swap = inst == "BTC-USDT-SWAP" or (p or {}).get("instType") == "SWAP"
                is_swap = is_swap or (algo is not None and any(a.algo_id == algo for a in swap.algos))
                return on_swap(p, now) if is_swap else spot(p, now)

            return endpoint

        table = self._private
        table[("GET", f"{V5}/account/config")] = lambda p, now: swap.config()
        table[("GET", f"{V5}/account/leverage-info")] = lambda p, now: swap.leverage_info(p)
        table[("POST", f"{V5}/account/set-leverage")] = lambda p, now: swap.set_leverage(p)
        table[("GET", f"{V5}/account/positions")] = lambda p, now: swap.positions(p, now)
        table[("GET", f"{V5}/account/bills")] = lambda p, now: swap.funding_bills(p)
        table[("GET", f"{V5}/account/balance")] = lambda p, now: swap.balance(now)
        table[("GET", ORDER)] = routed(table[("GET", ORDER)], lambda p, now: [swap.find(p)])
        table[("POST", ORDER)] = routed(table[("POST", ORDER)], lambda p, now: [swap.place(p, now)])
        table[("GET", f"{V5}/trade/orders-history")] = routed(
            table[("GET", f"{V5}/trade/orders-history")], lambda p, now: swap.history(p)
        )
        table[("GET", ALGOS_PENDING)] = routed(
            table[("GET", ALGOS_PENDING)], lambda p, now: swap.algos_pending(p)
        )
        table[("GET", f"{V5}/trade/orders-algo-history")] = routed(
            table[("GET", f"{V5}/trade/orders-algo-history")], lambda p, now: swap.algos_history(p)
        )
        table[("POST", ORDER_ALGO)] = routed(
            table[("POST", ORDER_ALGO)], lambda p, now: [swap.place_algo(p, now)]
        )
        table[("POST", AMEND_ALGOS)] = routed(
            table[("POST", AMEND_ALGOS)], lambda p, now: [swap.amend(p, now)]
        )
        table[("POST", CANCEL_ALGOS)] = routed(
            table[("POST", CANCEL_ALGOS)], lambda p, now: [swap.cancel(x, now) for x in p]
        )

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the rate limiter's clock (a test's stand-in for sleeping)."""
        with self._lock:
            self.waited_ms += round(seconds * 1000)

    def _admit(self, path: str) -> bool:
        """Count a request in its endpoint's 2-s window (market clock plus time waited); ``False`` when over."""
        window = (self._now_ms() + self.waited_ms) // WINDOW_MS
        key = (path, window)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._counts[key] > self.limits.get(path, 20):
            self.rate_limited.append(path)
            return False
        return True

    def lose_reply_next(self, count: int, path: str) -> None:
        """Execute the next ``count`` requests to ``path`` but answer 503 ``50001``."""
        with self._lock:
            self._lost[path] = self._lost.get(path, 0) + count

    def drop_reply_next(self, count: int, path: str) -> None:
        """Execute the next ``count`` requests to ``path``, then close the connection without an answer."""
        with self._lock:
            self._dropped[path] = self._dropped.get(path, 0) + count

    def orders(self) -> list[Order]:
        with self._lock:
            return list(self.book.orders)

    def posts(self, path: str) -> list[Any]:
        """Return the JSON body of every ``POST`` to ``path``, in arrival order."""
        return [r.body for r in self.requests if r.method == "POST" and r.path == path]

    def _now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    # --- serving ---------------------------------------------------------------------------------------------

    def serve(self, method: str, raw_path: str, headers: Mapping[str, str], body: str) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        params = dict(parse_qsl(parts.query))
        payload = json.loads(body) if body else None
        with self._lock:
            self.requests.append(Request(method, parts.path, params, payload))
            if not self._admit(parts.path):
                return 429, RATE_LIMITED
            try:
                if parts.path == f"{V5}/public/time":
                    return 200, _ok([{"ts": str(self.server_ms())}])
                if parts.path == f"{V5}/public/instruments":
                    kind = params.get("instType")
                    listed = _instruments() if kind == "SPOT" else []
                    if kind == "SWAP" and self.swap is not None:
                        listed = [swap_instrument()]
                    return 200, _ok(listed)
                if parts.path == f"{V5}/public/funding-rate-history" and self.swap is not None:
                    return 200, _ok(funding_rows(self.swap.funding, params, self._now_ms()))
                if parts.path in (f"{V5}/market/candles", f"{V5}/market/history-candles"):
                    return 200, _ok(self._candles(params))
                endpoint = self._private.get((method, parts.path))
                if endpoint is None:
                    return 404, {"code": "50115", "msg": f"Invalid request method {method} {parts.path}"}
                self._authenticate(method, raw_path, headers, body)
                data = endpoint(payload if method == "POST" else params, self._now_ms())
            except OkxError as e:
                failed = [e.row] if e.row else []
                return e.status, {"code": e.code, "msg": e.msg, "data": failed}
            if self._lost.get(parts.path, 0) > 0:
                self._lost[parts.path] -= 1
                return 503, LOST_REPLY
            if self._dropped.get(parts.path, 0) > 0:
                self._dropped[parts.path] -= 1
                return 0, DROPPED
            return 200, _ok(data)

    def _authenticate(self, method: str, raw_path: str, headers: Mapping[str, str], body: str) -> None:
        key, sign, stamp, phrase = (
            headers.get(f"OK-ACCESS-{h}") for h in ("KEY", "SIGN", "TIMESTAMP", "PASSPHRASE")
        )
        for value, code, name in (
            (key, "50103", "KEY"),
            (phrase, "50104", "PASSPHRASE"),
            (sign, "50106", "SIGN"),
            (stamp, "50107", "TIMESTAMP"),
        ):
            if not value:
                raise OkxError(401, code, f'Request header "OK-ACCESS-{name}" can\'t be empty.')
        if key not in self.keys:
            raise OkxError(401, "50111", "Invalid OK-ACCESS-KEY.")
        secret, passphrase = self.keys[str(key)]
        if phrase != passphrase:
            raise OkxError(401, "50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.')
        try:
            sent = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            raise OkxError(401, "50112", "Invalid OK-ACCESS-TIMESTAMP.") from None
        if abs(sent.timestamp() * 1000 - self.server_ms()) > 30_000:
            raise OkxError(401, "50102", "Timestamp request expired.")
        expected = base64.b64encode(
            hmac.new(secret.encode(), f"{stamp}{method}{raw_path}{body}".encode(), hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(expected, str(sign)):
            raise OkxError(401, "50113", "Invalid Sign.")

    def _candles(self, p: Mapping[str, str]) -> list[list[str]]:
        inst_id = p.get("instId", "")
        listed = {k: v[5] for k, v in INSTRUMENTS.items()}
        if self.swap is not None:
            listed[SWAP] = INSTRUMENTS["BTC-USDT"][5]  # the swap trades at the spot series' prices
        if inst_id not in listed or p.get("bar", "1m") != "1m":
            raise OkxError(400, "51001", "Instrument ID or bar does not exist.")
        series = self._series[listed[inst_id]]
        now = self._now_ms()
        after = int(p.get("after") or now + 1)  # rows older than ``after``
        before = int(p.get("before") or -1)  # rows newer than ``before``
        mask = (series.open_ms < after) & (series.open_ms > before) & (series.open_ms <= now)
        rows = []
        for i in np.flatnonzero(mask)[::-1][: int(p.get("limit") or 100)]:
            o, h, lo, c, v = (f"{x:.8f}".rstrip("0").rstrip(".") for x in series.ohlcv[i])
            confirm = "1" if int(series.open_ms[i]) + 60_000 <= now else "0"
            rows.append([str(int(series.open_ms[i])), o, h, lo, c, v, v, v, confirm])
        return rows


def _ok(data: Any) -> dict[str, Any]:
    return {"code": "0", "msg": "", "data": data}


def _instruments() -> list[dict[str, Any]]:
    rows = []
    for inst_id, (base, quote, tick, lot, min_sz, _) in INSTRUMENTS.items():
        rows.append(
            {
                "alias": "",
                "baseCcy": base,
                "category": "1",
                "ctMult": "",
                "ctType": "",
                "ctVal": "",
                "ctValCcy": "",
                "expTime": "",
                "instFamily": "",
                "instId": inst_id,
                "instType": "SPOT",
                "lever": "10",
                "listTime": "1548133413000",
                "lotSz": lot,
                "maxIcebergSz": "9999999999.0000000000000000",
                "maxLmtAmt": "1000000",
                "maxLmtSz": "9999999999",
                "maxMktAmt": "1000000",
                "maxMktSz": "",
                "maxStopSz": "",
                "maxTriggerSz": "9999999999.0000000000000000",
                "maxTwapSz": "9999999999.0000000000000000",
                "minSz": min_sz,
                "optType": "",
                "quoteCcy": quote,
                "settleCcy": "",
                "state": "live",
                "ruleType": "normal",
                "stk": "",
                "tickSz": tick,
                "uly": "",
            }
        )
    return rows


def _currencies() -> list[dict[str, Any]]:
    return [
        {
            "ccy": ccy,
            "name": ccy,
            "chain": f"{ccy}-{chain}",
            "canDep": True,
            "canWd": True,
            "canInternal": True,
            "minDep": "0.00005",
            "minWd": "0.0005",
            "maxWd": "500",
            "wdTickSz": "8",
            "wdQuota": "10000000",
            "usedWdQuota": "0",
            "minFee": "0.0001",
            "maxFee": "0.0002",
            "mainNet": True,
            "needTag": False,
            "logoLink": "",
        }
        for ccy, chain in (("BTC", "Bitcoin"), ("USDT", "TRC20"))
    ]


def _handler_for(server: OkxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, no delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            headers = {k.upper(): v for k, v in self.headers.items()}
            status, payload = server.serve(method, self.path, headers, body)
            if payload is DROPPED:
                self.close_connection = True
                return
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
