"""The request rules of the Binance spot look-alike: signatures, timestamps, decimal format and request weight.

Each rule follows Binance's spot API documentation ("General API Information", "Request security",
"LIMITS"):

* **Signed endpoints** carry ``X-MBX-APIKEY`` and a ``signature`` parameter: the HMAC-SHA256, in hex, of the
  query string concatenated with the request body (the ``signature`` itself left out), keyed by the API secret.
  An unknown key is ``-2015``, a wrong signature ``-1022``.
* **Timing**: ``timestamp`` (ms) must satisfy ``serverTime - recvWindow <= timestamp < serverTime + 1000``
  (``recvWindow`` 5000 by default, at most 60000), else ``-1021``. The server's clock is the wall clock plus a
  skew the tests set (``GET /api/v3/time`` answers it, so a client can measure the difference).
* **Decimals**: quantities and prices must match ``^([0-9]{1,20})(\\.[0-9]{1,20})?$`` (``8e-05`` is ``-1100``).
* **Request weight** per IP and minute, answered in ``X-MBX-USED-WEIGHT-1M`` on every reply. Over the limit the
  reply is 429 with ``Retry-After`` (seconds to the end of the minute); a client that asks again before then
  is banned: 418 with ``Retry-After`` (2 minutes for a first ban, doubled for each repeat).

The limiter's clock is the venue's market clock (the simulated minute the bars are in) plus ``waited`` seconds,
which a test's ``sleep`` advances: a bar lasts a minute of weight, as it does live, and a broker that honours
``Retry-After`` sees the limit lifted without the test waiting in real time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from support.binance_orders import BinanceError

DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
DECIMAL_PARAMS = (
    "quantity",
    "quoteOrderQty",
    "price",
    "stopPrice",
    "abovePrice",
    "aboveStopPrice",
    "belowPrice",
    "belowStopPrice",
    "triggerPrice",
)
WEIGHTS = {
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/account"): 20,
    ("GET", "/api/v3/order"): 4,
    ("GET", "/api/v3/openOrders"): 6,
    ("GET", "/api/v3/allOrders"): 20,
    ("GET", "/api/v3/myTrades"): 20,
    ("POST", "/api/v3/order"): 1,
    ("POST", "/api/v3/orderList/oco"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/orderList"): 1,
    ("GET", "/fapi/v1/allOrders"): 5,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/income"): 30,
    ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v3/balance"): 5,
    ("GET", "/fapi/v1/symbolConfig"): 5,
    ("GET", "/fapi/v1/allAlgoOrders"): 5,
    ("GET", "/fapi/v1/positionSide/dual"): 30,
}
FIRST_BAN_S = 120


def check_decimals(params: Mapping[str, str]) -> None:
    """Refuse a quantity or price that is not a plain decimal (``-1100``), as Binance does."""
    for name in DECIMAL_PARAMS:
        value = params.get(name)
        if value is not None and not DECIMAL.match(value):
            raise BinanceError(
                400,
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is "
                "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            )


def check_signature(secrets: Mapping[str, str], api_key: str, query: str, body: str) -> None:
    """Refuse an unknown key (``-2015``) or a signature that is not HMAC-SHA256 of query + body (``-1022``)."""
    secret = secrets.get(api_key)
    if secret is None:
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    signed: list[str] = []
    given = ""
    for part in (query, body):
        kept = []
        for item in part.split("&") if part else []:
            if item.startswith("signature="):
                given = item[len("signature=") :]
            else:
                kept.append(item)
        signed.append("&".join(kept))
    payload = "".join(signed)
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise BinanceError(400, -1022, "Signature for this request is not valid.")


def check_timestamp(params: Mapping[str, str], server_ms: int) -> None:
    """Refuse a request outside ``[serverTime - recvWindow, serverTime + 1000)`` (``-1021``)."""
    try:
        stamp = int(params["timestamp"])
        window = int(params.get("recvWindow", "5000"))
    except (KeyError, ValueError):
        raise BinanceError(
            400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
        ) from None
    if window > 60_000:
        raise BinanceError(400, -1131, "recvWindow must be less than 60000")
    if stamp >= server_ms + 1000:
        raise BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_ms - stamp > window:
        raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")


@dataclass(slots=True)
class WeightLimiter:
    """Request weight per minute with Binance's 429-then-418 escalation; see the module docstring."""

    limit: int = 6000
    clock: Callable[[], float] = time.time
    waited: float = 0.0
    used: int = 0
    minute: int = -1
    warned_until: float = 0.0
    banned_until: float = 0.0
    bans: int = 0
    retry_afters: list[tuple[int, int]] = field(default_factory=list)
    """Every ``(status, Retry-After)`` the limiter answered, in order."""

    def now(self) -> float:
        return self.clock() + self.waited

    def admit(self, method: str, path: str) -> tuple[int, int, int]:
        """Count one request; return ``(status, used weight, Retry-After)``: status 200 when admitted."""
        now = self.now()
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0
        if now < self.banned_until:
            return self._refuse(418, self.banned_until - now)
        if now < self.warned_until:
            self.bans += 1
            self.banned_until = now + FIRST_BAN_S * 2 ** (self.bans - 1)
            return self._refuse(418, self.banned_until - now)
        weight = WEIGHTS.get((method, path), 1)
        if self.used + weight > self.limit:
            self.warned_until = (minute + 1) * 60.0
            return self._refuse(429, self.warned_until - now)
        self.used += weight
        return 200, self.used, 0

    def _refuse(self, status: int, seconds: float) -> tuple[int, int, int]:
        retry_after = max(1, math.ceil(seconds))
        self.retry_afters.append((status, retry_after))
        return status, self.used, retry_after
