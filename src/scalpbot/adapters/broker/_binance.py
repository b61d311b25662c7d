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
  ``-1021`` refusal re-measures it (see :mod:`scalpbot.adapters.ccxt_common`).
"""

from __future__ import annotations

from typing import Any

import ccxt

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


def max_hold_of(order: dict[str, Any]) -> int | None:
    """Return the ``max_hold`` carried by a ccxt order (its raw ``strategyType``), or ``None`` if absent."""
    raw = (order.get("info") or {}).get("strategyType")
    try:
        return max(0, int(raw) - _STRATEGY_BASE) if raw is not None else None
    except (TypeError, ValueError):
        return None


def trigger_price(order: dict[str, Any]) -> float:
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


def list_id(order: dict[str, Any]) -> int:
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
