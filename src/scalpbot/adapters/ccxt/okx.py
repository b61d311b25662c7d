"""What the ccxt broker does differently on OKX spot (API v5, ccxt 4.5): SL/TP attached to the entry.

* The entry is one ``POST /api/v5/trade/order`` (market buy, ``tdMode=cash``, ``tgtCcy=quote_ccy``: ``sz`` is
  the quote amount to spend, as the backtest kernel sizes a spot buy) whose ``attachAlgoOrds`` carry the stop loss and the take profit. ccxt builds them from its
  unified ``stopLoss`` / ``takeProfit`` params (``slTriggerPx``, ``slOrdPx=-1``, ``tpTriggerPx``,
  ``tpOrdPx=-1``: market orders once triggered) but sets no ``attachAlgoClOrdId``, so the request is built with
  ccxt's ``create_order_request`` and given the bot's ``oco`` client id before it is sent. Once the buy
  fills, OKX turns the attachment into an algo order (``oco`` with both barriers, ``conditional`` with one)
  whose ``algoClOrdId`` is that id, listed by ``GET /api/v5/trade/orders-algo-pending``.
* The barriers are priced before the fill (at the decision bar's close). After the fill the broker finds the
  algo order and amends it (``POST /api/v5/trade/amend-algos``: ``newSlTriggerPx``, ``newTpTriggerPx``,
  ``newSz``) to the fill-price distances and to the quantity the bot holds, net of the commission OKX takes
  in the base coin on a spot buy. OKX documents that the attachment is placed "once the general order is
  filled completely", not how it is sized: a market buy cancelled after a partial fill leaves no algo order,
  and one sized to the gross fill would fail to sell when it fires. So the broker always sets the size, and
  when no algo order is there after the fill it places a standalone one (``POST /api/v5/trade/order-algo``,
  same ``algoClOrdId``). An amendment or placement the venue refuses (``51280`` "SL trigger price can not be
  higher than the last price" when the price has moved through the stop, ``51279`` for the take profit) or
  whose outcome is unknown comes back as a refused protection: the broker cancels whatever is left and closes
  the position at market.
* A triggered algo order places a market sell with no ``clOrdId`` of its own; it names the algo order
  (``algoClOrdId``, ``algoId``). Which barrier fired is the algo order's ``actualSide`` (``sl``/``tp``) in
  ``GET /api/v5/trade/orders-algo-history``; the broker reads it once per algo order and gives the sell the
  bot's ``sl``/``tp`` client id of that decision, so fills and exit reasons read as on Binance.
* ``clOrdId`` (up to 32 letters and digits) is refused with ``51016`` "Duplicated client order ID" only
  while an order holding it is open; the broker looks the id up (``GET /api/v5/trade/order?clOrdId=``)
  before it sends. ``tag`` (up to 16 letters and digits) carries the position's ``max_hold``.
* A market order is acknowledged before it executes (the reply has ``ordId``, no fill): the broker reads the
  order back until it is ``filled`` or ``canceled`` (a partial fill of a market order ends ``canceled``).
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
from scalpbot.errors import ExchangeError, OrderOutcomeUnknown

if TYPE_CHECKING:
    from scalpbot.adapters.ccxt._account import SpotAccount

OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["spot"]},
    "defaultType": "spot",
    "adjustForTimeDifference": True,
    "createOrder": "privatePostTradeOrder",
}
"""ccxt options for a spot broker: spot markets only, one order per ``trade/order`` request, clock adjusted."""

ALGO_TYPES = "conditional,oco"
"""The algo order types an attached SL/TP becomes (one barrier, both); OKX takes both in one query."""
_TAG = "sbh"
_DONE = ("closed", "canceled", "expired", "rejected")


def is_duplicate_message(message: str) -> bool:
    """Return whether a translated refusal is OKX refusing a client order id it holds open (``51016``)."""
    return "51016" in message or "duplicated client order id" in message.lower()


def order_params(client_id: str, max_hold: int) -> dict[str, Any]:
    """Return ``create_order`` params carrying the client id and the position's ``max_hold`` (bars) as ``tag``."""
    return {"clOrdId": client_id, "tag": f"{_TAG}{max_hold}"}


def max_hold_of(order: Mapping[str, Any]) -> int | None:
    """Return the ``max_hold`` carried by a ccxt order's raw ``tag``, or ``None``."""
    tag = str((order.get("info") or {}).get("tag") or "")
    digits = tag[len(_TAG) :]
    return int(digits) if tag.startswith(_TAG) and digits.isdigit() else None


def algo_order_request(
    inst_id: str,
    td_mode: str,
    side: str,
    amount: str,
    algo_client_id: str,
    prices: Mapping[str, str | None],
    *,
    reduce_only: bool = False,
) -> dict[str, Any]:
    """Return a ``POST /api/v5/trade/order-algo`` request: ``oco`` with both barriers, ``conditional`` with one.

    ``prices`` maps ``sl``/``tp`` to trigger prices (text in the venue's precision, ``None`` for no barrier);
    both act as market orders once triggered (``OrdPx=-1``) on the last price.
    """
    both = all(price is not None for price in prices.values())
    request: dict[str, Any] = {
        "instId": inst_id,
        "tdMode": td_mode,
        "side": side,
        "ordType": "oco" if both else "conditional",
        "sz": amount,
        "algoClOrdId": algo_client_id,
    }
    if reduce_only:
        request["reduceOnly"] = "true"
    for intent, price in prices.items():
        if price is not None:
            request |= {f"{intent}TriggerPx": price, f"{intent}OrdPx": "-1", f"{intent}TriggerPxType": "last"}
    return request


class OkxSpot:
    """The OKX spot family: SL/TP attached to the entry, amended to the fill after it (see the module)."""

    options: Mapping[str, Any] = OPTIONS
    page = 100
    rate_window = (
        2.0  # OKX counts requests per endpoint over 2 s and answers 50011 (HTTP 429), no Retry-After
    )

    def __init__(self) -> None:
        self._fired: dict[str, tuple[str, int]] = {}

    def is_duplicate_message(self, message: str) -> bool:
        return is_duplicate_message(message)

    def order_params(self, client_id: str, max_hold: int) -> dict[str, Any]:
        return order_params(client_id, max_hold)

    def max_hold_of(self, order: Mapping[str, Any]) -> int | None:
        return max_hold_of(order)

    def order_trades_params(self, order_id: str) -> dict[str, Any]:
        return {"ordId": order_id}

    def recent_orders(self, account: SpotAccount, limit: int) -> list[dict[str, Any]]:
        fetch = account.exchange.fetch_closed_orders
        return list(account.calls.call("reading recent orders", fetch, account.symbol, None, limit))

    # --- the entry and its protection ------------------------------------------------------------------------

    def send_entry(self, desk: Desk, entry: Entry) -> dict[str, Any]:
        """Send the market buy with its SL/TP attached, priced at ``entry.reference``."""
        account = desk.account
        params = {**order_params(entry.client_id, entry.max_hold), "tgtCcy": "quote_ccy", "cost": entry.cost}
        sl, tp = protection_prices(entry.reference, 1, entry.sl, entry.tp)
        if math.isfinite(entry.sl):
            params["stopLoss"] = {"triggerPrice": account.price(sl), "type": "market"}
        if math.isfinite(entry.tp):
            params["takeProfit"] = {"triggerPrice": account.price(tp), "type": "market"}
        exchange = desk.exchange
        request = exchange.create_order_request(desk.symbol, "market", "buy", None, None, params)
        for attached in request.get("attachAlgoOrds") or []:
            attached["attachAlgoClOrdId"] = desk.client_id(entry.decided_at, "oco")
        reply = exchange.private_post_trade_order(request)
        data = (reply.get("data") or [{}])[0]
        placed: dict[str, Any] = exchange.parse_order(data, account.market())
        return placed

    def settled(self, desk: Desk, placed: dict[str, Any]) -> dict[str, Any]:
        """Read the entry back until it is done (filled, or canceled after a partial fill)."""
        client_id = str(placed.get("clientOrderId") or "")
        found = desk.sender.known("reading the entry's fill", client_id) if client_id else None
        if found is not None and found.get("status") in _DONE:
            return found
        done = desk.sender.resolve(client_id, until=lambda order: order.get("status") in _DONE)
        return done if done is not None else (found or placed)

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
        """Amend the attached algo order to fill-price distances and to ``held`` (or, when it is not on the venue,
        place a standalone one); refusals as ``rejected``.

        On a retried cycle (``again``) an algo order no longer pending has finished (fired or cancelled) since
        an earlier run: nothing is amended, and the every-cycle check closes whatever is left unprotected.
        """
        sl, tp = distances
        legs = [
            (desk.client_id(decided_at, intent), intent)
            for intent, d in (("sl", sl), ("tp", tp))
            if math.isfinite(d)
        ]
        if not legs:
            return []
        account = desk.account

        def refused(message: str) -> list[OrderAck]:
            return [OrderAck(i, intent, "rejected", message) for i, intent in legs]

        if not (math.isfinite(entry_price) and entry_price > 0):
            return refused(f"protection not amended: the entry fill price is unknown ({entry_price})")
        algo_id = desk.client_id(decided_at, "oco")
        qty = account.amount(held)
        if account.below_minimum(qty, entry_price):
            return []  # dust: the caller has nothing the venue would take as an order
        sl_price, tp_price = (account.price(p) for p in protection_prices(entry_price, 1, sl, tp))
        prices = {
            "sl": sl_price if math.isfinite(sl) else None,
            "tp": tp_price if math.isfinite(tp) else None,
        }
        algo: dict[str, Any] | None = None
        try:
            algo = self._pending(account, algo_id)
            if algo is None and again:
                return []  # placed by an earlier run and finished since; the next snapshot reads what is held
            if algo is None:
                venue_id = self._place(desk, algo_id, account.amount_text(qty), prices)
            else:
                venue_id = str(algo["algoId"])
                self._amend(desk, venue_id, account.amount_text(qty), prices)
        except OrderOutcomeUnknown as e:
            return refused(f"protection not confirmed: {e}")
        except ExchangeError as e:
            action = "placed" if algo is None else "amended to the fill price"
            return refused(f"protection not {action}: {e}")
        message = (
            ""
            if algo is not None
            else "placed after the fill: the entry's attached SL/TP was not on the venue"
        )
        return [OrderAck(i, intent, "accepted", message, venue_id) for i, intent in legs]

    def _amend(self, desk: Desk, algo_id: str, amount: str, prices: Mapping[str, str | None]) -> None:
        """Amend a pending algo order to ``prices`` (by intent) and ``amount``; the same request twice is harmless."""
        request: dict[str, Any] = {"instId": desk.account.market()["id"], "algoId": algo_id, "newSz": amount}
        for intent, price in prices.items():
            if price is not None:
                request |= {f"new{intent.title()}TriggerPx": price, f"new{intent.title()}OrdPx": "-1"}
        amend = desk.exchange.private_post_trade_amend_algos
        desk.calls.call("amending the SL/TP to the fill price", amend, request, placing=True)

    def _place(self, desk: Desk, algo_client_id: str, amount: str, prices: Mapping[str, str | None]) -> str:
        """Place a standalone sell algo order (``oco``, or ``conditional`` for one barrier) once; return its id.

        Sent once: an unknown outcome raises ``OrderOutcomeUnknown`` and the caller closes the position, which
        cancels the algo order if it did reach the venue.
        """
        request = algo_order_request(
            desk.account.market()["id"], "cash", "sell", amount, algo_client_id, prices
        )
        reply = desk.calls.place("placing the SL/TP", desk.exchange.private_post_trade_order_algo, request)
        return str(((reply.get("data") or [{}])[0]).get("algoId") or "")

    def cancel_protection(self, desk: Desk) -> None:
        """Cancel the bot's pending algo orders on the symbol."""
        account = desk.account
        for algo in self.pending(account):
            if account.decoder.tag(algo.get("algoClOrdId"), _int(algo.get("cTime"))) != "oco":
                continue
            request = [{"instId": account.market()["id"], "algoId": str(algo["algoId"])}]
            desk.calls.call("cancelling the SL/TP", _cancel_algos, desk.exchange, request, placing=True)

    # --- reading the venue -----------------------------------------------------------------------------------

    def pending(self, account: SpotAccount) -> list[dict[str, Any]]:
        """Return the symbol's pending algo orders of the types an attached SL/TP becomes (raw OKX rows)."""
        request = {"ordType": ALGO_TYPES, "instType": "SPOT", "instId": account.market()["id"]}
        reply = account.calls.call(
            "reading the SL/TP orders", account.exchange.private_get_trade_orders_algo_pending, request
        )
        return [dict(row) for row in reply.get("data") or []]

    def _pending(self, account: SpotAccount, algo_client_id: str) -> dict[str, Any] | None:
        return next((a for a in self.pending(account) if a.get("algoClOrdId") == algo_client_id), None)

    def guards(
        self, account: SpotAccount, open_orders: list[dict[str, Any]]
    ) -> tuple[dict[str, float], int | None]:
        guards: dict[str, float] = {}
        for algo in self.pending(account):
            if account.decoder.tag(algo.get("algoClOrdId"), _int(algo.get("cTime"))) != "oco":
                continue
            for intent, key in (("sl", "slTriggerPx"), ("tp", "tpTriggerPx")):
                price = _float(algo.get(key))
                if price > 0:
                    guards[intent] = price
        return guards, None  # the attached algo order carries no tag: max_hold rides on the entry

    def read_order(self, account: SpotAccount, order: dict[str, Any]) -> dict[str, Any]:
        """Give a sell placed by a triggered SL/TP the bot's ``sl``/``tp`` client id of that decision."""
        info = order.get("info") or {}
        algo_id, algo_client_id = str(info.get("algoId") or ""), str(info.get("algoClOrdId") or "")
        if order.get("clientOrderId") or not algo_id or not algo_client_id:
            return order
        side, created_ms = self._fired.get(algo_id) or self._fired_side(account, algo_id)
        if side in ("sl", "tp"):
            self._fired[algo_id] = (side, created_ms)  # final: read once; unknown yet: read again next time
        decision = account.decoder.decision(algo_client_id, created_ms)
        if decision is None or decision[0] != "oco" or side not in ("sl", "tp"):
            return order
        client_id = account.decoder.client_id(decision[1], side)
        return {**order, "clientOrderId": client_id, "timestamp": created_ms}

    def _fired_side(self, account: SpotAccount, algo_id: str) -> tuple[str, int]:
        """Return which barrier of a finished algo order fired (``actualSide``) and when it was created."""
        request = {"ordType": ALGO_TYPES, "algoId": algo_id}
        reply = account.calls.call(
            "reading a triggered SL/TP", account.exchange.private_get_trade_orders_algo_history, request
        )
        rows = reply.get("data") or [{}]
        return str(rows[0].get("actualSide") or ""), _int(rows[0].get("cTime")) or 0


def _cancel_algos(exchange: Any, request: list[dict[str, str]]) -> None:
    """Cancel algo orders; one already triggered, cancelled or unknown is gone either way."""
    try:
        exchange.private_post_trade_cancel_algos(request)
    except ccxt.OrderNotFound:
        return


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
