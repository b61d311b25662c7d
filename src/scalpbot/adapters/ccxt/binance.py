"""What the ccxt broker does differently on Binance spot (ccxt 4.5): protection as an OCO, ids, duplicates.

* ccxt has no unified OCO method for Binance and its spot ``createOrder`` has no attached SL/TP
  (``features.spot.createOrder.attachedStopLossTakeProfit`` is ``None``), so protection is one
  ``POST /api/v3/orderList/oco`` through ccxt's implicit ``private_post_orderlist_oco``: a ``TAKE_PROFIT`` leg
  above and a ``STOP_LOSS`` leg below, both market orders once triggered (a bar opening beyond the price
  fills near that open, as in the kernel), sharing one quantity; when one fills the venue expires the other.
* A re-used ``newClientOrderId`` is answered ``-2010 Duplicate order sent.``, which ccxt raises as
  ``InvalidOrder`` (it has no mapping to ``DuplicateOrderId``). Binance only refuses an id that is still
  open: a filled market order's id can be sent again, which is why the broker looks an id up before it
  sends (``GET /api/v3/order?origClientOrderId=``).
* ``strategyType`` (an integer >= 1,000,000 echoed on every order report) carries the position's
  ``max_hold``, so a restarted broker knows the time stop of a position it did not open.
* ``load_markets`` with API keys set would also call the ``sapi`` currency and margin endpoints:
  ``OPTIONS`` turns them off. They also turn on ccxt's time-difference adjustment: ``load_markets`` measures
  the offset to the venue's clock (``GET /api/v3/time``) and every signed request's ``timestamp`` uses it; a
  ``-1021`` refusal re-measures it (see :mod:`scalpbot.adapters.ccxt.common`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ccxt
import pandas as pd

from scalpbot.adapters.ccxt.family import Desk, Entry
from scalpbot.core.execution import OrderAck
from scalpbot.core.orders import protection_prices
from scalpbot.errors import ExchangeError, OrderOutcomeUnknown, OrderRejected

if TYPE_CHECKING:
    from scalpbot.adapters.ccxt._account import SpotAccount

OPTIONS: dict[str, Any] = {
    "fetchCurrencies": False,
    "fetchMargins": False,
    "fetchMarkets": {"types": ["spot"]},
    "defaultType": "spot",
    "adjustForTimeDifference": True,
}
"""ccxt options for a spot broker: no ``sapi`` calls in ``load_markets``, spot markets only."""

_STRATEGY_BASE = 1_000_000


def is_duplicate(error: Exception) -> bool:
    """Return whether ccxt's error is the venue refusing a client order id it already knows."""
    return isinstance(error, ccxt.DuplicateOrderId) or (
        isinstance(error, ccxt.InvalidOrder) and "duplicate order" in str(error).lower()
    )


def is_duplicate_message(message: str) -> bool:
    """Return whether a translated refusal's message is the venue refusing a client id it holds open."""
    return "duplicate order" in message.lower()


def order_params(client_id: str, max_hold: int) -> dict[str, Any]:
    """Return ``create_order`` params carrying the client id and the position's ``max_hold`` (bars)."""
    return {"newClientOrderId": client_id, "strategyType": _STRATEGY_BASE + max_hold}


def max_hold_of(order: Mapping[str, Any]) -> int | None:
    """Return the ``max_hold`` carried by a ccxt order (its raw ``strategyType``), or ``None`` if absent."""
    raw = (order.get("info") or {}).get("strategyType")
    try:
        return max(0, int(raw) - _STRATEGY_BASE) if raw is not None else None
    except (TypeError, ValueError):
        return None


def trigger_price(order: Mapping[str, Any]) -> float:
    """Return the price at which a resting protection order acts (stop price, else limit price)."""
    info = order.get("info") or {}
    for value in (info.get("stopPrice"), order.get("triggerPrice"), info.get("price"), order.get("price")):
        if value is None:
            continue
        try:
            price = float(value)
        except (TypeError, ValueError):
            continue
        if price > 0:
            return price
    return float("nan")


def list_id(order: Mapping[str, Any]) -> int:
    """Return the order list (OCO) an order belongs to, or -1."""
    try:
        return int((order.get("info") or {}).get("orderListId", -1))
    except (TypeError, ValueError):
        return -1


def place_oco(
    exchange: Any,
    market: dict[str, Any],
    *,
    qty: str,
    sl_price: str,
    tp_price: str,
    ids: tuple[str, str, str],
    max_hold: int,
) -> list[tuple[str, str]]:
    """Place the SELL OCO protecting a long; ``ids`` = (list, stop loss, take profit) client ids.

    Return ``(client id, venue order id)`` of the stop loss and take profit legs, in that order.
    """
    list_client_id, sl_id, tp_id = ids
    strategy = _STRATEGY_BASE + max_hold
    reply = exchange.private_post_orderlist_oco(
        {
            "symbol": market["id"],
            "side": "SELL",
            "quantity": qty,
            "listClientOrderId": list_client_id,
            "aboveType": "TAKE_PROFIT",
            "aboveStopPrice": tp_price,
            "aboveClientOrderId": tp_id,
            "aboveStrategyType": strategy,
            "belowType": "STOP_LOSS",
            "belowStopPrice": sl_price,
            "belowClientOrderId": sl_id,
            "belowStrategyType": strategy,
            "newOrderRespType": "RESULT",
        }
    )
    legs = {str(o.get("clientOrderId")): str(o.get("orderId")) for o in reply.get("orders", [])}
    if sl_id not in legs or tp_id not in legs:
        raise ccxt.BadResponse(f"binance OCO reply lacks its legs: {sorted(legs)}")
    return [(sl_id, legs[sl_id]), (tp_id, legs[tp_id])]


def cancel_list(exchange: Any, market: dict[str, Any], order_list: int) -> None:
    """Cancel a whole OCO; an unknown or finished list is not an error (it is gone either way)."""
    try:
        exchange.private_delete_orderlist({"symbol": market["id"], "orderListId": order_list})
    except ccxt.OrderNotFound:
        return


class BinanceSpot:
    """The Binance spot family: a plain market entry, then one OCO at fill-price distances (see the module)."""

    options: Mapping[str, Any] = OPTIONS
    page = 1000
    rate_window = 0.0  # its 429/418 replies carry Retry-After, which is honoured instead

    def is_duplicate_message(self, message: str) -> bool:
        return is_duplicate_message(message)

    def order_params(self, client_id: str, max_hold: int) -> dict[str, Any]:
        return order_params(client_id, max_hold)

    def max_hold_of(self, order: Mapping[str, Any]) -> int | None:
        return max_hold_of(order)

    def send_entry(self, desk: Desk, entry: Entry) -> dict[str, Any]:
        """Send a MARKET buy of ``entry.cost`` quote (``quoteOrderQty``): Binance fills what that buys at its
        price, rounded down to the LOT_SIZE step, as the backtest kernel does."""
        params = {**order_params(entry.client_id, entry.max_hold), "quoteOrderQty": entry.cost}
        placed: dict[str, Any] = desk.exchange.create_order(desk.symbol, "market", "buy", None, None, params)
        return placed

    def settled(self, desk: Desk, placed: dict[str, Any]) -> dict[str, Any]:
        return placed  # newOrderRespType=FULL (ccxt's default for market orders): the fill is in the reply

    def recent_orders(self, account: SpotAccount, limit: int) -> list[dict[str, Any]]:
        fetch = account.exchange.fetch_orders
        return list(account.calls.call("reading recent orders", fetch, account.symbol, None, limit))

    def order_trades_params(self, order_id: str) -> dict[str, Any]:
        return {"orderId": order_id}

    def read_order(self, account: SpotAccount, order: dict[str, Any]) -> dict[str, Any]:
        return order  # every leg of an OCO carries its own client id

    def guards(
        self, account: SpotAccount, open_orders: list[dict[str, Any]]
    ) -> tuple[dict[str, float], int | None]:
        guards: dict[str, float] = {}
        max_hold: int | None = None
        for order in open_orders:
            tag = account.decoder.tag(order.get("clientOrderId"), order.get("timestamp"))
            if tag in ("sl", "tp"):
                guards[tag] = trigger_price(order)
                max_hold = max_hold_of(order)
        return guards, max_hold

    def protect(
        self,
        desk: Desk,
        decided_at: pd.Timestamp,
        entry_price: float,
        distances: tuple[float, float],
        max_hold: int,
        held: float,
        *,
        again: bool = False,
    ) -> list[OrderAck]:
        """Protect ``held`` with an OCO (or the one finite barrier); client ids from ``decided_at``.

        Any refusal, or an outcome still unknown after the look-ups, comes back as ``rejected`` acks: the caller
        closes the position.
        """
        sl, tp = distances
        oco_id, sl_id, tp_id = (desk.client_id(decided_at, t) for t in ("oco", "sl", "tp"))
        legs = [(i, intent) for i, intent, d in ((sl_id, "sl", sl), (tp_id, "tp", tp)) if math.isfinite(d)]
        if not legs:
            return []
        if not (math.isfinite(entry_price) and entry_price > 0):
            message = f"protection not placed: the entry fill price is unknown ({entry_price})"
            return [OrderAck(i, intent, "rejected", message) for i, intent in legs]
        account = desk.account
        qty = account.amount(held)
        if account.below_minimum(qty, entry_price):
            return []  # dust: nothing the venue would take as an order
        sl_price, tp_price = (account.price(p) for p in protection_prices(entry_price, 1, sl, tp))
        amount = account.amount_text(qty)

        def send() -> list[tuple[str, str]]:
            if len(legs) == 2:
                return place_oco(
                    desk.exchange,
                    account.market(),
                    qty=amount,
                    sl_price=sl_price,
                    tp_price=tp_price,
                    ids=(oco_id, sl_id, tp_id),
                    max_hold=max_hold,
                )
            ((leg_id, intent),) = legs
            trigger = {"stopLossPrice": sl_price} if intent == "sl" else {"takeProfitPrice": tp_price}
            params = {**order_params(leg_id, max_hold), **trigger}
            placed = desk.exchange.create_order(desk.symbol, "market", "sell", amount, None, params)
            return [(leg_id, str(placed.get("id")))]

        try:
            known = desk.sender.known("looking up the protection", legs[0][0])
            if known is not None:
                return [OrderAck(i, intent, "duplicate", "already on the venue") for i, intent in legs]
            try:
                placed = desk.calls.place("placing the SL/TP", send)
            except OrderOutcomeUnknown as e:
                if desk.sender.resolve(legs[0][0]) is None:
                    raise OrderRejected(desk.sender.unresolved(e)) from e
                return [
                    OrderAck(i, intent, "accepted", "found after an unknown outcome") for i, intent in legs
                ]
        except ExchangeError as e:
            message = f"protection not placed: {e}"
            return [OrderAck(i, intent, "rejected", message) for i, intent in legs]
        venue_ids = dict(placed)
        return [OrderAck(i, intent, "accepted", "", venue_ids.get(i)) for i, intent in legs]

    def cancel_protection(self, desk: Desk) -> None:
        """Cancel the bot's open SL/TP orders on the symbol (an OCO as a whole list)."""
        account = desk.account
        market = account.market()
        lists: set[int] = set()
        for order in account.open_orders():
            tag = account.decoder.tag(order.get("clientOrderId"), order.get("timestamp"))
            if tag not in ("sl", "tp"):
                continue
            order_list = list_id(order)
            if order_list >= 0:
                lists.add(order_list)
            else:
                desk.calls.call(
                    "cancelling an SL/TP order", _cancel_order, desk, str(order["id"]), placing=True
                )
        for order_list in sorted(lists):
            desk.calls.call(
                "cancelling the OCO", cancel_list, desk.exchange, market, order_list, placing=True
            )


def _cancel_order(desk: Desk, order_id: str) -> None:
    try:
        desk.exchange.cancel_order(order_id, desk.symbol)
    except ccxt.OrderNotFound:
        return
