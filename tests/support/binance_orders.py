"""Orders and OCO lists of the Binance look-alike, with Binance's reply layout and the kernel's trigger rule.

Quantities and prices are ``Decimal``; replies use Binance's field names and 8-decimal strings. A resting order
fills when a bar reaches its price; a bar opening beyond it fills at that open (a gap). A ``*_LIMIT`` stop is
simplified: it fills like its market twin at the trigger price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT")
TAKE_PROFIT_TYPES = ("TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
LIMIT_TYPES = ("LIMIT", "LIMIT_MAKER")
ORDER_TYPES = ("MARKET", *LIMIT_TYPES, *STOP_TYPES, *TAKE_PROFIT_TYPES)
E8 = Decimal("0.00000001")


class BinanceError(Exception):
    """A refusal with Binance's HTTP status and JSON body ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def missing(name: str) -> BinanceError:
    return BinanceError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def fmt(value: Decimal) -> str:
    return f"{value.quantize(E8):f}"


@dataclass(slots=True)
class Order:
    """One order as the book keeps it."""

    order_id: int
    list_id: int
    client_id: str
    symbol: str
    side: str
    type: str
    qty: Decimal
    price: Decimal
    stop: Decimal
    created_ms: int
    strategy: dict[str, int] = field(default_factory=dict)
    reserved: tuple[str, Decimal] | None = None
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    updated_ms: int = 0

    def report(self) -> dict[str, Any]:
        """Return the order as ``GET /api/v3/order`` shows it."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": self.list_id,
            "clientOrderId": self.client_id,
            "price": fmt(self.price),
            "origQty": fmt(self.qty),
            "executedQty": fmt(self.executed),
            "cummulativeQuoteQty": fmt(self.quote),
            "status": self.status,
            "timeInForce": "GTC",
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(self.stop),
            "icebergQty": "0.00000000",
            "time": self.created_ms,
            "updateTime": self.updated_ms or self.created_ms,
            "isWorking": self.type in ("MARKET", *LIMIT_TYPES) or self.status != "NEW",
            "workingTime": self.created_ms,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            **self.strategy,
        }


@dataclass(slots=True)
class OrderList:
    """An OCO: two legs, one fills and the other expires."""

    list_id: int
    client_id: str
    symbol: str
    legs: list[Order]
    created_ms: int
    status: str = "EXECUTING"

    def report(self, reports: bool) -> dict[str, Any]:
        """Return the list as the order-list endpoints answer (``orderReports`` on create and cancel)."""
        body: dict[str, Any] = {
            "orderListId": self.list_id,
            "contingencyType": "OCO",
            "listStatusType": "EXEC_STARTED" if self.status == "EXECUTING" else "ALL_DONE",
            "listOrderStatus": self.status,
            "listClientOrderId": self.client_id,
            "transactionTime": self.created_ms,
            "symbol": self.symbol,
            "orders": [
                {"symbol": o.symbol, "orderId": o.order_id, "clientOrderId": o.client_id} for o in self.legs
            ],
        }
        if reports:
            body["orderReports"] = [o.report() for o in self.legs]
        return body


def trigger(order: Order) -> Decimal:
    return order.stop or order.price


def triggered(order: Order, o: Decimal, h: Decimal, lo: Decimal) -> Decimal | None:
    """Return the fill price of a resting order on a bar ``(open, high, low)``, or ``None``."""
    sell = order.side == "SELL"
    if order.type in STOP_TYPES:
        if sell:
            return min(o, order.stop) if lo <= order.stop else None
        return max(o, order.stop) if h >= order.stop else None
    if order.type in TAKE_PROFIT_TYPES:
        if sell:
            return max(o, order.stop) if h >= order.stop else None
        return min(o, order.stop) if lo <= order.stop else None
    if sell:
        return max(o, order.price) if h >= order.price else None
    return min(o, order.price) if lo <= order.price else None
