"""The live broker: market orders with exchange-side stop loss and take profit through ccxt (Binance spot).

It mirrors the kernel's rules (:mod:`scalpbot.core.orders` decides what to send): a decision on the close of bar
``t`` is sent right after that close, so a market order fills near the open of bar ``t + 1``; the SL/TP prices
are fractions of the entry **fill** price and rest on the venue as one OCO placed right after the fill; time and
signal exits (and the kill switch) cancel that OCO, then sell at market. Spot cannot be shorted: a short entry is
answered with a ``rejected`` ack, so a short signal while long only closes the long.

Reliability:

* every order carries its deterministic client id, and the broker looks the id up on the venue before sending
  (also before each retry), so a retried, concurrent or restarted run answers ``duplicate`` instead of trading
  twice; a venue refusing a known id is ``duplicate`` too.
* ``snapshot`` rebuilds the account from the venue alone (balances, open orders, trades): a restarted broker
  sees the position, its protection and its fills; ``submit`` re-protects a position whose OCO is missing.
* temporary failures are retried with backoff, then raised (``ExchangeTemporaryError``): callers fail closed.
  Refusals of an order come back as ``rejected`` acks with the venue's reason. See
  :mod:`scalpbot.adapters.ccxt_common` for the mapping of ccxt errors; credentials never appear in messages.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import ccxt
import pandas as pd

from scalpbot.adapters.broker import _binance
from scalpbot.adapters.broker._account import SpotAccount
from scalpbot.adapters.ccxt_common import connect
from scalpbot.core.execution import BrokerSnapshot, OrderAck, Position, Signal, client_order_id
from scalpbot.core.orders import PlannedOrder, plan_flatten, plan_orders, protection_prices
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, ExchangeError, InsufficientFunds, OrderRejected

__all__ = ["CcxtBroker"]

_SUPPORTED = ("binance",)
_Status = Literal["accepted", "duplicate", "rejected"]


class CcxtBroker:
    """A ``Broker`` on a ccxt spot market, one bot and one symbol per instance (not shared between threads).

    The account should be the bot's alone on that market: the base balance is the position, and orders whose
    client ids the bot did not derive are reported as ``external`` fills and never cancelled.

    ``config`` is ccxt's constructor dict (``apiKey``, ``secret``, ``timeout`` ms, ``options``, ...; see
    ``ccxt_exchange``); ``api_urls`` replaces ``urls['api']`` (a proxy or a local test server). ``fee_rate``
    (fraction of notional) prices fees paid in a third asset such as BNB. ``venue`` gives the amount step and
    minimums orders are rounded to and checked against (default: the loaded market's). Retries: up to ``max_attempts`` calls,
    backoff ``min(max_delay, base_delay * 2**(n-1))`` seconds with jitter, through ``sleep``.
    """

    def __init__(
        self,
        exchange_id: str,
        *,
        bot: str,
        symbol: str,
        timeframe: str,
        config: Mapping[str, Any] | None = None,
        api_urls: Mapping[str, Any] | None = None,
        fee_rate: float = 0.001,
        venue: Venue | None = None,
        max_attempts: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if exchange_id not in _SUPPORTED:
            raise ConfigError(
                f"the ccxt broker holds SL/TP on the exchange as Binance OCO orders; '{exchange_id}' is not "
                f"supported yet (use one of {', '.join(_SUPPORTED)}, or the paper broker)"
            )
        if not bot:
            raise ConfigError("bot must be a non-empty name: it is hashed into every client order id")
        if not (math.isfinite(fee_rate) and 0.0 <= fee_rate < 0.1):
            raise ConfigError(
                f"fee_rate must be a fraction of notional in [0, 0.1), e.g. 0.001; got {fee_rate}"
            )
        self.name = f"ccxt:{exchange_id}"
        exchange, calls = connect(
            exchange_id,
            config,
            api_urls=api_urls,
            options=_binance.OPTIONS,
            max_attempts=max_attempts,
            base_delay=base_delay,
            max_delay=max_delay,
            sleep=sleep,
            rng=rng,
            strict_json=True,
        )
        self._bot = bot
        self._symbol = symbol.replace("_", "/") if "/" not in symbol else symbol
        self._bar_seconds = timeframe_seconds(timeframe)
        bar = pd.Timedelta(seconds=self._bar_seconds)
        self._account = SpotAccount(
            exchange,
            calls,
            bot=bot,
            symbol=self._symbol,
            timeframe=timeframe,
            bar=bar,
            fee_rate=fee_rate,
            venue=venue,
        )
        self._exchange = exchange
        self._calls = calls

    def __repr__(self) -> str:
        return f"CcxtBroker(exchange={self._exchange.id!r}, bot={self._bot!r}, symbol={self._symbol!r})"

    # --- Broker port -----------------------------------------------------------------------------------------

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        """Rebuild the account from the venue after the last bar of ``bars`` closed; raise ``ExchangeError`` if not.

        Position: the base balance above the market minimum (spot: long only) at its entry order's average
        price, entered in the bar of that order's first trade, with SL/TP from the open protection orders.
        Fills: one per order with a trade in a bar at or after ``since`` (the 1000 most recent trades when
        ``None``), ``time`` that bar's open, fees in quote. Equity: quote + base x the last close of ``bars``.
        """
        return self._account.snapshot(bars, since)

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Send what ``signal`` asks at the next open: exit, entry, then the entry's OCO; re-protect if needed.

        A position without SL/TP on the venue (its OCO was never placed, or was cancelled) gets them at the
        signal's distances from its entry price, unless the signal closes it.
        """
        self._account.market()
        plan = plan_orders(
            signal, snapshot.position, bot=self._bot, symbol=self._symbol, bar_seconds=self._bar_seconds
        )
        acks: list[OrderAck] = []
        position = snapshot.position
        if position is not None and not any(o.intent == "exit" for o in plan) and _unprotected(position):
            acks += self._protect_again(position, signal)
        distances = {o.intent: o.distance for o in plan if o.intent in ("sl", "tp")}
        for order in plan:
            if order.intent == "exit":
                acks += self._exit(order)
            elif order.intent == "entry":
                ack, placed = self._enter(order, snapshot)
                acks.append(ack)
                if placed is not None:
                    sl, tp = distances.get("sl", math.inf), distances.get("tp", math.inf)
                    acks += self._protect(order.decided_at, _fill_price(placed), sl, tp, order.max_hold)
        return acks

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Cancel the protection and sell the position at market (client id tag ``kill``)."""
        self._account.market()
        acks: list[OrderAck] = []
        for order in plan_flatten(snapshot.position, decided_at, bot=self._bot, symbol=self._symbol):
            acks += self._exit(order)
        return acks

    # --- orders ----------------------------------------------------------------------------------------------

    def _enter(self, order: PlannedOrder, snapshot: BrokerSnapshot) -> tuple[OrderAck, dict[str, Any] | None]:
        if order.side < 0:
            message = f"{self._symbol} is a spot market and cannot be shorted; the short entry was not sent"
            return OrderAck(order.client_id, "entry", "rejected", message), None
        last_close = self._account.close_at(snapshot.as_of)
        qty = self._account.amount(order.size * snapshot.equity / last_close)
        too_small = self._account.below_minimum(qty, last_close)
        if too_small:
            return OrderAck(order.client_id, "entry", "rejected", f"entry not sent: {too_small}"), None
        params = _binance.order_params(order.client_id, order.max_hold)

        def send() -> dict[str, Any]:
            placed: dict[str, Any] = self._exchange.create_order(
                self._symbol, "market", "buy", qty, None, params
            )
            return placed

        return self._place("placing the entry", order.client_id, "entry", send)

    def _exit(self, order: PlannedOrder) -> list[OrderAck]:
        known = self._calls.call("looking up the exit", self._account.lookup, order.client_id)
        if known is not None:
            return [_ack(order.client_id, "exit", "duplicate", known)]
        try:
            self._cancel_protection()
        except (OrderRejected, InsufficientFunds) as e:
            return [OrderAck(order.client_id, "exit", "rejected", f"exit not sent: SL/TP not cancelled: {e}")]
        qty = self._account.amount(self._account.free_base())
        if qty <= 0:
            return [
                OrderAck(order.client_id, "exit", "rejected", "exit not sent: no base balance left to sell")
            ]
        params = _binance.order_params(order.client_id, 0)

        def send() -> dict[str, Any]:
            placed: dict[str, Any] = self._exchange.create_order(
                self._symbol, "market", "sell", qty, None, params
            )
            return placed

        ack, _ = self._place(f"closing the position ({order.reason})", order.client_id, "exit", send)
        return [ack]

    def _protect_again(self, position: Position, signal: Signal) -> list[OrderAck]:
        if not (signal.sl > 0 and signal.tp > 0):
            sl_id = client_order_id(self._bot, self._symbol, signal.decided_at, "sl")
            message = (
                "the position has no SL/TP on the venue and the signal has no sl/tp distances to place them"
            )
            return [OrderAck(sl_id, "sl", "rejected", message)]
        return self._protect(signal.decided_at, position.entry_price, signal.sl, signal.tp, position.max_hold)

    def _protect(
        self, decided_at: pd.Timestamp, entry_price: float, sl: float, tp: float, max_hold: int
    ) -> list[OrderAck]:
        """Protect the long held now with an OCO (or the one finite barrier); client ids from ``decided_at``.

        A venue refusal or failure comes back as ``rejected`` acks (the entry is already done): the next
        ``submit`` sees the position unprotected and places the protection again.
        """
        oco_id, sl_id, tp_id = (
            client_order_id(self._bot, self._symbol, decided_at, t) for t in ("oco", "sl", "tp")
        )
        legs = [(i, intent) for i, intent, d in ((sl_id, "sl", sl), (tp_id, "tp", tp)) if math.isfinite(d)]
        if not legs:
            return []
        if not (math.isfinite(entry_price) and entry_price > 0):
            message = f"protection not placed: the entry fill price is unknown ({entry_price})"
            return [OrderAck(i, intent, "rejected", message) for i, intent in legs]
        try:
            qty = self._account.amount(self._account.free_base())
            if self._account.below_minimum(qty, entry_price):
                known = self._calls.call("looking up the protection", self._account.lookup, legs[0][0])
                if known is None:
                    return []  # nothing free to protect: the position is gone or other orders hold it
                return [OrderAck(i, intent, "duplicate", "already on the venue") for i, intent in legs]
            sl_price, tp_price = (self._account.price(p) for p in protection_prices(entry_price, 1, sl, tp))

            def send() -> list[tuple[str, str]]:
                if len(legs) == 2:
                    market = self._account.market()
                    return _binance.place_oco(
                        self._exchange,
                        market,
                        qty=self._account.amount_text(qty),
                        sl_price=sl_price,
                        tp_price=tp_price,
                        ids=(oco_id, sl_id, tp_id),
                        max_hold=max_hold,
                    )
                ((leg_id, intent),) = legs
                trigger = {"stopLossPrice": sl_price} if intent == "sl" else {"takeProfitPrice": tp_price}
                params = {**_binance.order_params(leg_id, max_hold), **trigger}
                placed = self._exchange.create_order(self._symbol, "market", "sell", qty, None, params)
                return [(leg_id, str(placed.get("id")))]

            status, placed = self._calls.call("placing the SL/TP", self._once, legs[0][0], send, placing=True)
        except ExchangeError as e:
            message = f"protection not placed: {e}; the next submit places it again"
            return [OrderAck(i, intent, "rejected", message) for i, intent in legs]
        venue_ids = dict(placed) if isinstance(placed, list) else {}
        message = "already on the venue" if status == "duplicate" else ""
        return [OrderAck(i, intent, status, message, venue_ids.get(i)) for i, intent in legs]

    def _cancel_protection(self) -> None:
        """Cancel the bot's open SL/TP orders on the symbol (an OCO as a whole list)."""
        market = self._account.market()
        lists: set[int] = set()
        for order in self._account.open_orders():
            tag = self._account.decoder.tag(order.get("clientOrderId"), order.get("timestamp"))
            if tag not in ("sl", "tp"):
                continue
            order_list = _binance.list_id(order)
            if order_list >= 0:
                lists.add(order_list)
            else:
                self._calls.call(
                    "cancelling an SL/TP order", self._cancel_order, str(order["id"]), placing=True
                )
        for order_list in sorted(lists):
            cancel = _binance.cancel_list
            self._calls.call("cancelling the OCO", cancel, self._exchange, market, order_list, placing=True)

    def _place(
        self, what: str, client_id: str, intent: str, send: Callable[[], dict[str, Any]]
    ) -> tuple[OrderAck, dict[str, Any] | None]:
        """Send one order unless its id is known; return the ack and the venue's order (``None`` if rejected)."""
        try:
            status, order = self._calls.call(what, self._once, client_id, send, placing=True)
        except (OrderRejected, InsufficientFunds) as e:
            return OrderAck(client_id, intent, "rejected", str(e)), None
        if order is None:  # refused as a duplicate before we could see it
            order = self._calls.call("looking up a duplicate", self._account.lookup, client_id)
        return _ack(client_id, intent, status, order), order

    def _once(self, client_id: str, send: Callable[[], Any]) -> tuple[_Status, Any]:
        """One attempt: send only if the venue does not know ``client_id``; a duplicate refusal is no error."""
        known = self._account.lookup(client_id)
        if known is not None:
            return "duplicate", known
        try:
            return "accepted", send()
        except ccxt.InvalidOrder as e:
            if _binance.is_duplicate(e):
                return "duplicate", None
            raise

    def _cancel_order(self, order_id: str) -> None:
        try:
            self._exchange.cancel_order(order_id, self._symbol)
        except ccxt.OrderNotFound:
            return


def _unprotected(position: Position) -> bool:
    return math.isnan(position.sl_price) and math.isnan(position.tp_price)


def _fill_price(order: Mapping[str, Any]) -> float:
    average = order.get("average")
    if average:
        return float(average)
    filled, cost = float(order.get("filled") or 0.0), float(order.get("cost") or 0.0)
    return cost / filled if filled > 0 else math.nan


def _ack(client_id: str, intent: str, status: _Status, order: Mapping[str, Any] | None) -> OrderAck:
    message = "already on the venue" if status == "duplicate" else ""
    venue_id = None if order is None else str(order.get("id"))
    return OrderAck(client_id, intent, status, message, venue_id)
