"""The live broker: market orders with exchange-side stop loss and take profit through ccxt (Binance, OKX spot).

It mirrors the kernel's rules (:mod:`scalpbot.core.orders` decides what to send): a decision on the close of bar
``t`` is sent right after that close, so a market order fills near the open of bar ``t + 1``; the SL/TP prices
are fractions of the entry **fill** price and rest on the venue: on Binance as one OCO placed right after the
fill, on OKX attached to the entry and amended to the fill price once it is known (see :mod:`.family`); time
and signal exits (and the kill switch) cancel that protection, then sell at market. Spot cannot be shorted: a
short entry is answered with a ``rejected`` ack, so a short signal while long only closes the long.

Its rules, under the failures real venues produce:

* **Never unprotected.** Protection refused (a stop that would trigger at once, a price that moved between the
  fill and the OCO or the amendment, protection missing or mis-sized after the fill, any refusal) closes the position at market at once (client id tag ``unprotected``), with
  ``rejected`` acks saying why; a position found without SL/TP on the venue at any later ``submit`` (expired,
  cancelled, a run killed between fill and OCO) is closed the same way. The execute job calls ``submit`` on
  every cycle, whatever the model decides, so this check and the time stop run every bar.
* **Never twice.** Every order carries its deterministic client id and is looked up before it is sent. It is
  sent once: after an unknown outcome (timeout, 5xx, ``-1007``, a dropped connection) the broker looks the id up
  with backoff (``resolve_attempts`` look-ups) and never sends it again on a guess; an order still not found
  comes back ``rejected`` with the reason, and the next cycle's reconciliation sees what really happened.
* **Only its own inventory.** The position is what the bot's own executions left it (entries net of the
  commission taken in base, less its exits); protection and exits are sized to it, not to the free balance.
  An account holding other base coins above dust is refused at the first snapshot unless ``adopt`` is set.
* **Cheap when idle and polite**: bounded reads per snapshot (see :mod:`._account`); ``Retry-After`` honoured,
  the clock resynchronised on ``-1021`` (see :mod:`scalpbot.adapters.ccxt.common`).

Refusals of an order come back as ``rejected`` acks with the venue's reason; a venue that cannot be read raises
``ExchangeTemporaryError`` after retries (callers fail closed). Credentials never appear in messages.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pandas as pd

from scalpbot.adapters.ccxt._account import SpotAccount
from scalpbot.adapters.ccxt._fills import base_commission
from scalpbot.adapters.ccxt._sending import OrderSender, ack
from scalpbot.adapters.ccxt.common import connect
from scalpbot.adapters.ccxt.family import Desk, Entry, family_of
from scalpbot.core.execution import BrokerSnapshot, OrderAck, Position, Signal, client_order_id
from scalpbot.core.orders import PlannedOrder, plan_flatten, plan_orders
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, InsufficientFunds, OrderRejected

__all__ = ["CcxtBroker"]


class CcxtBroker:
    """A ``Broker`` on a ccxt spot market, one bot and one symbol per instance (not shared between threads).

    ``config`` is ccxt's constructor dict (``apiKey``, ``secret``, ``timeout`` ms, ``options``, ...; see
    ``ccxt_exchange``); ``api_urls`` replaces ``urls['api']`` (a proxy or a local test server). ``fee_rate``
    (fraction of notional) prices fees paid in a third asset such as BNB. ``venue`` gives the amount step and
    minimums orders are rounded to and checked against (default: the loaded market's). ``adopt`` takes base
    coins already on the account as the bot's position. Retries: up to ``max_attempts`` calls, backoff
    ``min(max_delay, base_delay * 2**(n-1))`` seconds with jitter, at least the venue's ``Retry-After`` (a wait
    beyond ``max_wait`` fails the call instead); an order of unknown outcome is looked up ``resolve_attempts``
    times with the same backoff. Pauses go through ``sleep``.
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
        adopt: bool = False,
        max_attempts: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        max_wait: float = 60.0,
        resolve_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        family = family_of(exchange_id)
        if not bot:
            raise ConfigError("bot must be a non-empty name: it is hashed into every client order id")
        if not (math.isfinite(fee_rate) and 0.0 <= fee_rate < 0.1):
            raise ConfigError(
                f"fee_rate must be a fraction of notional in [0, 0.1), e.g. 0.001; got {fee_rate}"
            )
        if resolve_attempts < 1:
            raise ConfigError(f"resolve_attempts must be at least 1, got {resolve_attempts}")
        self.name = f"ccxt:{exchange_id}"
        exchange, calls = connect(
            exchange_id,
            config,
            api_urls=api_urls,
            options=family.options,
            max_attempts=max_attempts,
            base_delay=base_delay,
            max_delay=max_delay,
            sleep=sleep,
            rng=rng,
            strict_json=True,
            max_wait=max_wait,
            rate_window=family.rate_window,
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
            adopt=adopt,
            family=family,
        )
        self._family = family
        self._exchange = exchange
        self._calls = calls
        self._fee_rate = fee_rate
        self._sender = OrderSender(
            calls,
            self._account.lookup,
            delays=[min(max_delay, base_delay * 2.0**k) for k in range(resolve_attempts)],
            sleep=sleep,
            is_duplicate=family.is_duplicate_message,
        )
        self._desk = Desk(exchange, calls, self._account, self._sender, bot, self._symbol)
        self._sold: list[dict[str, Any]] = []
        """Market sells sent in the current ``submit``: an exit and a re-entry at one open, sized with its proceeds."""

    def __repr__(self) -> str:
        return f"CcxtBroker(exchange={self._exchange.id!r}, bot={self._bot!r}, symbol={self._symbol!r})"

    # --- Broker port -----------------------------------------------------------------------------------------

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        """Rebuild the account from the venue after the last bar of ``bars`` closed; raise ``ExchangeError`` if not.

        Position: the bot's own base quantity above the market minimum (spot: long only) at its entry's average
        price, entered in the bar of that entry's first trade, with SL/TP from the open protection orders.
        Fills: one per order with a trade in a bar at or after ``since`` (among the most recent page of trades),
        ``time`` that bar's open, fees in quote. Equity: quote + base x the last close of ``bars``. Raise
        ``ConfigError`` at the first snapshot when the account holds base coins the bot did not buy (above dust)
        and ``adopt`` is off.
        """
        return self._account.snapshot(bars, since)

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Send what ``signal`` asks at the next open: exit, entry, then the entry's OCO.

        Called on every cycle (a zero-side signal when the model wants nothing): the time stop exits, and a
        position without SL/TP on the venue is closed at market.
        """
        self._account.market()
        self._sold = []
        position = snapshot.position
        plan = plan_orders(
            signal, position, bot=self._bot, symbol=self._symbol, bar_seconds=self._bar_seconds
        )
        if position is not None and not any(o.intent == "exit" for o in plan) and _unprotected(position):
            why = "the position has no SL/TP on the venue (refused, expired or cancelled)"
            return self._close_unprotected(signal.decided_at, position.qty, why)
        acks: list[OrderAck] = []
        distances = {o.intent: o.distance for o in plan if o.intent in ("sl", "tp")}
        for order in plan:
            if order.intent == "exit":
                acks += self._exit(order, order.qty)
            elif order.intent == "entry":
                sl, tp = distances.get("sl", math.inf), distances.get("tp", math.inf)
                ack, placed = self._enter(order, snapshot, sl, tp)
                acks.append(ack)
                if placed is not None:
                    acks += self._protect_entry(order, placed, sl, tp, again=ack.status == "duplicate")
        return acks

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Cancel the protection and sell the position at market (client id tag ``kill``)."""
        self._account.market()
        acks: list[OrderAck] = []
        for order in plan_flatten(snapshot.position, decided_at, bot=self._bot, symbol=self._symbol):
            acks += self._exit(order, order.qty)
        return acks

    # --- orders ----------------------------------------------------------------------------------------------

    def _enter(
        self, order: PlannedOrder, snapshot: BrokerSnapshot, sl: float, tp: float
    ) -> tuple[OrderAck, dict[str, Any] | None]:
        if order.side < 0:
            message = f"{self._symbol} is a spot market and cannot be shorted; the short entry was not sent"
            return OrderAck(order.client_id, "entry", "rejected", message), None
        last_close = self._account.close_at(snapshot.as_of)
        # Spend size x the cash the account holds once flat (the kernel's equity at the fill): the free quote
        # of the snapshot plus what an exit sent in this same cycle freed.
        cash = self._account.free_quote_at(snapshot.as_of) + sum(self._proceeds(o) for o in self._sold)
        cost = self._account.cost(order.size * cash)
        qty = self._account.amount(cost / last_close)
        too_small = self._account.below_minimum(qty, last_close)
        if too_small:
            return OrderAck(order.client_id, "entry", "rejected", f"entry not sent: {too_small}"), None
        entry = Entry(
            order.client_id,
            self._account.cost_text(cost),
            self._account.amount_text(qty),
            order.decided_at,
            sl,
            tp,
            order.max_hold,
            last_close,
        )
        ack, placed = self._sender.place(
            "placing the entry", order.client_id, "entry", lambda: self._family.send_entry(self._desk, entry)
        )
        if placed is not None and ack.status != "rejected":
            placed = self._family.settled(self._desk, placed)
        return ack, placed

    def _protect_entry(
        self, order: PlannedOrder, placed: dict[str, Any], sl: float, tp: float, *, again: bool
    ) -> list[OrderAck]:
        """Protect what the entry bought (its fill net of base commission); close it at once if refused."""
        bought = self._net_bought(placed)
        if bought <= 0:
            return []  # expired without a fill: nothing to protect
        price = _fill_price(placed)
        acks = self._family.protect(
            self._desk, order.decided_at, price, (sl, tp), order.max_hold, bought, again=again
        )
        refused = [a for a in acks if a.status == "rejected"]
        if refused:
            acks += self._close_unprotected(order.decided_at, bought, refused[0].message)
        return acks

    def _net_bought(self, placed: Mapping[str, Any]) -> float:
        """Return the base quantity an entry left on the account: its fill less commission taken in base."""
        filled = float(placed.get("filled") or 0.0)
        if filled <= 0:
            return 0.0
        trades = list(placed.get("trades") or [])
        if not trades:
            trades = self._account.order_trades(str(placed.get("id")))
        if not trades:  # not visible yet: assume the commission was taken in base
            return filled * (1.0 - self._fee_rate)
        base = self._account.market()["base"]
        return filled - sum(base_commission(t, base) for t in trades)

    def _exit(self, order: PlannedOrder, held: float, reason: str = "") -> list[OrderAck]:
        """Cancel the protection, then sell ``held`` (the bot's own quantity) at market; ``reason`` names the
        exit in messages (default: the planned order's)."""
        known = self._sender.known("looking up the exit", order.client_id)
        if known is not None:
            return [ack(order.client_id, "exit", "duplicate", known)]
        try:
            self._family.cancel_protection(self._desk)
        except (OrderRejected, InsufficientFunds) as e:
            return [OrderAck(order.client_id, "exit", "rejected", f"exit not sent: SL/TP not cancelled: {e}")]
        qty = self._account.amount(min(held, self._account.free_base()))
        if qty <= 0:
            return [
                OrderAck(order.client_id, "exit", "rejected", "exit not sent: no base balance left to sell")
            ]
        params = self._family.order_params(order.client_id, 0)
        amount = self._account.amount_text(qty)

        def send() -> dict[str, Any]:
            placed: dict[str, Any] = self._exchange.create_order(
                self._symbol, "market", "sell", amount, None, params
            )
            return placed

        what = f"closing the position ({reason or order.reason})"
        sold, placed = self._sender.place(what, order.client_id, "exit", send)
        if placed is not None and sold.status == "accepted":
            self._sold.append(placed)
        return [sold]

    def _proceeds(self, placed: dict[str, Any]) -> float:
        """Return the quote a market sell sent in this ``submit`` brought in, once executed: its cost less the
        commission paid in quote (estimated at ``fee_rate`` when the venue reports no fees)."""
        sold = self._family.settled(self._desk, placed)
        cost = float(sold.get("cost") or 0.0)
        fees = [f for f in (sold.get("fees") or [sold.get("fee")]) if f and f.get("cost") is not None]
        if not fees:
            return cost * (1.0 - self._fee_rate)
        quote = self._account.market()["quote"]
        return cost - sum(float(f["cost"]) for f in fees if f.get("currency") == quote)

    def _close_unprotected(self, decided_at: pd.Timestamp, held: float, why: str) -> list[OrderAck]:
        """Close a position that has no protection on the venue, at market, now (tag ``unprotected``)."""
        client_id = client_order_id(self._bot, self._symbol, decided_at, "unprotected")
        exit_ = PlannedOrder("exit", -1, "kill", client_id, decided_at, qty=held)
        acks = self._exit(exit_, held, "unprotected")
        return [
            replace(
                a, message=f"closed at market: {why}" if a.status != "rejected" else f"{a.message}; {why}"
            )
            for a in acks
        ]


def _unprotected(position: Position) -> bool:
    return math.isnan(position.sl_price) and math.isnan(position.tp_price)


def _fill_price(order: Mapping[str, Any]) -> float:
    average = order.get("average")
    if average:
        return float(average)
    filled, cost = float(order.get("filled") or 0.0), float(order.get("cost") or 0.0)
    return cost / filled if filled > 0 else math.nan
