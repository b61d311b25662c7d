"""The bot's stop loss and take profit on Binance USDⓈ-M's Algo Service (since December 2025): place, find, list,
cancel.

A leg is a reduce-only conditional market order (``STOP_MARKET`` / ``TAKE_PROFIT_MARKET``) for a quantity:
ccxt 4.5's ``create_order`` with ``stopLossPrice``/``takeProfitPrice`` sends it to ``POST /fapi/v1/algoOrder``
(``algoType=CONDITIONAL``, ``triggerPrice``, ``clientAlgoId``). Finding, listing and cancelling go to the algo
endpoints directly (``GET``/``DELETE /fapi/v1/algoOrder``, ``GET /fapi/v1/openAlgoOrders``): ccxt's
``fetch_order``/``cancel_order`` reach them only with ``{'trigger': True}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ccxt

from scalpbot.adapters.ccxt._fills import IdDecoder
from scalpbot.adapters.ccxt._swap_reads import as_int
from scalpbot.adapters.ccxt.common import CcxtCalls
from scalpbot.errors import ExchangeError

_GONE = ('"code":-2011', '"code":-2013')
"""Refusals of a cancel that mean the leg is no longer open (fired, cancelled or unknown): gone either way."""


class AlgoLegs:
    """The bot's conditional orders on one USDⓈ-M symbol (``market`` is ccxt's), through ``calls``."""

    def __init__(self, exchange: Any, calls: CcxtCalls, decoder: IdDecoder, symbol: str) -> None:
        self._exchange = exchange
        self._calls = calls
        self._decoder = decoder
        self._symbol = symbol

    def send(self, client_id: str, intent: str, side: int, qty: str, trigger: str) -> dict[str, Any]:
        """Send one reduce-only leg closing a position of ``side`` (``qty``/``trigger`` as the venue writes them);
        return the venue's row plus ``id`` (the ``algoId``). Called once, inside ``calls.place``."""
        key = "stopLossPrice" if intent == "sl" else "takeProfitPrice"
        params = {key: trigger, "reduceOnly": True, "clientAlgoId": client_id}
        closing = "sell" if side > 0 else "buy"
        placed = self._exchange.create_order(self._symbol, "market", closing, float(qty), None, params)
        return {**dict(placed.get("info") or {}), "id": placed.get("id")}

    def find(self, client_id: str) -> dict[str, Any] | None:
        """Return the leg with ``client_id`` in any state (raw row plus ``id``), or ``None``."""
        try:
            row = dict(self._exchange.fapiPrivateGetAlgoOrder({"clientAlgoId": client_id}))
        except ccxt.OrderNotFound:
            return None
        return {**row, "id": str(row.get("algoId"))}

    def open(self, market: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return the symbol's open conditional orders."""
        read = self._exchange.fapiPrivateGetOpenAlgoOrders
        reply = self._calls.call("reading the SL/TP orders", read, {"symbol": market["id"]})
        return [dict(row) for row in reply or []]

    def cancel(self, market: Mapping[str, Any], algo: Mapping[str, Any]) -> None:
        """Cancel one conditional order; one no longer open is not an error."""
        request = {"symbol": market["id"], "algoId": str(algo["algoId"])}
        try:
            cancel = self._exchange.fapiPrivateDeleteAlgoOrder
            self._calls.call("cancelling the SL/TP", cancel, request, placing=True)
        except ExchangeError as e:
            if not any(code in str(e).replace(" ", "") for code in _GONE):
                raise

    def cancel_own(self, market: Mapping[str, Any]) -> str | None:
        """Cancel the bot's open legs on the symbol; return why one could not be cancelled, or ``None``."""
        for algo in self.open(market):
            if self._decoder.tag(str(algo.get("clientAlgoId")), as_int(algo.get("createTime"))) in (
                "sl",
                "tp",
            ):
                try:
                    self.cancel(market, algo)
                except ExchangeError as e:
                    return f"SL/TP not cancelled: {e}"
        return None
