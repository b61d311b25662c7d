"""The ccxt broker's reading of the venue (pure): client ids back to intents, trades into fills.

Client ids are hashes (:func:`scalpbot.core.execution.client_order_id`), so an id is read back by hashing the
candidates: the tags the bot uses over the decision bars just before the order was created (an order decided on
bar ``t`` is sent during bar ``t + 1``; up to ``LOOKBACK_BARS`` late). An id that matches none is ``external``:
an order the bot did not place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from scalpbot.core.execution import Fill, client_order_id

TAGS = ("entry", "sl", "tp", "oco", "signal", "time", "kill", "unprotected")
"""Tags hashed into client ids: intents for entries and protection (``oco`` names the list), reasons for exits
(``unprotected``: closed at market because its protection was refused or is gone)."""
EXIT_TAGS = ("sl", "tp", "signal", "time", "kill", "unprotected")
LOOKBACK_BARS = 16


class IdDecoder:
    """Read the tag of a client id from the decision bars before the order's creation; cache what it learns."""

    def __init__(self, bot: str, symbol: str, bar_seconds: int) -> None:
        self._bot = bot
        self._symbol = symbol
        self._step_ms = bar_seconds * 1000
        self._known: dict[str, tuple[str, pd.Timestamp] | None] = {}

    def tag(self, client_id: str | None, created_ms: int | None) -> str | None:
        """Return the tag of ``client_id`` (see ``TAGS``) or ``None`` when the bot did not make it."""
        found = self.decision(client_id, created_ms)
        return None if found is None else found[0]

    def decision(self, client_id: str | None, created_ms: int | None) -> tuple[str, pd.Timestamp] | None:
        """Return the tag of ``client_id`` and the decision bar it was made for, or ``None``."""
        if not client_id or created_ms is None:
            return None
        if client_id not in self._known:
            self._known[client_id] = self._search(client_id, created_ms)
        return self._known[client_id]

    def client_id(self, decided_at: pd.Timestamp, tag: str) -> str:
        """Return the bot's client id of ``tag`` for the decision on bar ``decided_at``."""
        return client_order_id(self._bot, self._symbol, decided_at, tag)

    def _search(self, client_id: str, created_ms: int) -> tuple[str, pd.Timestamp] | None:
        bar_ms = created_ms // self._step_ms * self._step_ms
        for k in range(LOOKBACK_BARS + 1):
            decided = pd.Timestamp(bar_ms - k * self._step_ms, unit="ms", tz="UTC")
            for tag in TAGS:
                if client_order_id(self._bot, self._symbol, decided, tag) == client_id:
                    return tag, decided
        return None


@dataclass(frozen=True, slots=True)
class Execution:
    """The trades of one order, aggregated: ``side`` +1 buy / -1 sell, ``price`` volume-weighted,
    ``fee`` in quote currency, ``time_ms`` the first trade (epoch ms), ``tag`` its decoded client-id tag,
    ``base_fee`` the commission taken in the base asset (base units: a buy's quantity received is
    ``qty - base_fee``)."""

    order_id: str
    client_id: str
    side: int
    qty: float
    price: float
    fee: float
    time_ms: int
    tag: str | None
    order: Mapping[str, Any]
    base_fee: float = 0.0


def executions(
    trades: list[dict[str, Any]],
    orders: Mapping[str, Mapping[str, Any]],
    decoder: IdDecoder,
    *,
    base: str,
    quote: str,
    fee_rate: float,
) -> list[Execution]:
    """Aggregate ccxt trades per order, oldest first; ``orders`` maps order id to the ccxt order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for trade in sorted(trades, key=lambda t: (int(t["timestamp"]), str(t["id"]))):
        groups.setdefault(str(trade["order"]), []).append(trade)
    result = []
    for order_id, rows in groups.items():
        order = orders[order_id]
        qty = sum(float(t["amount"]) for t in rows)
        notional = sum(float(t["amount"]) * float(t["price"]) for t in rows)
        fee = sum(_quote_fee(t, base, quote, fee_rate) for t in rows)
        client_id = str(order.get("clientOrderId") or "")
        result.append(
            Execution(
                order_id,
                client_id,
                1 if rows[0]["side"] == "buy" else -1,
                qty,
                notional / qty if qty > 0 else math.nan,
                fee,
                int(rows[0]["timestamp"]),
                decoder.tag(client_id, _created_ms(order, rows[0])),
                order,
                sum(base_commission(t, base) for t in rows),
            )
        )
    return result


def fills(
    done: list[Execution],
    entry_before: Callable[[Execution], Execution | None],
    bar: pd.Timedelta,
    sellable: Callable[[float], float] = lambda qty: qty,
) -> list[Fill]:
    """Return one ``Fill`` per execution: reason from its tag (``external`` if none), PnL on exits.

    ``entry_before(exit)`` returns the entry an exit closed (or ``None`` when it cannot be found): it gives the
    exit's ``entry_client_id`` and PnL, ``qty x (exit - entry) x position side`` less the fees of both.
    ``time`` is the open of the bar the first trade was in. An entry's ``qty`` is what the bot can sell of it:
    the quantity received net of commission taken in base, rounded down by ``sellable`` (the venue's step);
    what is left below one step is charged to the entry's ``fee`` at its price, so the exit that sells the
    position closes the trade and ``qty x price + fee`` is still what the entry cost.
    """
    result = []
    for execution in done:
        reason = execution.tag if execution.tag in ("entry", *EXIT_TAGS) else "external"
        pnl, entry_id = None, execution.client_id if reason == "entry" else None
        qty, fee = execution.qty, execution.fee
        if reason == "entry" and execution.side > 0:
            qty, fee = _held(execution, sellable)
        elif reason not in ("entry", "external"):
            entry = entry_before(execution)
            if entry is not None:
                gross = -execution.side * execution.qty * (execution.price - entry.price)
                pnl, entry_id = gross - execution.fee - _held(entry, sellable)[1], entry.client_id
        time = pd.Timestamp(execution.time_ms, unit="ms", tz="UTC").floor(bar)
        result.append(
            Fill(
                execution.client_id,
                time,
                execution.side,
                qty,
                execution.price,
                fee,
                str(reason),
                pnl,
                entry_id,
            )
        )
    return result


def _held(entry: Execution, sellable: Callable[[float], float]) -> tuple[float, float]:
    """Return an entry's sellable quantity and its fee in quote, the sub-step dust included."""
    received = entry.qty - entry.base_fee
    qty = sellable(received)
    return qty, entry.fee + (received - qty) * entry.price


def own_quantity(
    done: list[Execution], sellable: Callable[[float], float] = lambda qty: qty
) -> tuple[float, float, Execution | None]:
    """Return the bot's position (base units), its dust and the entry the position belongs to.

    Walks the bot's executions oldest first: an entry (a buy) adds what it received net of the commission taken
    in base, rounded down by ``sellable`` (the venue's step) - the position the backtest kernel holds; the rest
    below one step is dust, kept apart: charged to the entry's fee, never sold by the bot, still the bot's own
    (not foreign) coins. An exit of any reason removes what it sold; orders the bot did not make are ignored.
    """
    held, dust, entry = 0.0, 0.0, None
    for execution in done:
        if execution.tag == "entry" and execution.side > 0:  # the bot enters only when flat
            received = execution.qty - execution.base_fee
            entry = execution
            held = max(held, 0.0) + sellable(received)
            dust += received - sellable(received)
        elif execution.tag in EXIT_TAGS and execution.side < 0:
            held -= execution.qty
            if held <= 1e-12:
                dust = max(0.0, dust + held)  # a sale beyond the position took dust with it
                held, entry = 0.0, None
    return held, dust, entry


def base_commission(trade: Mapping[str, Any], base: str) -> float:
    """Return the commission a ccxt trade took in the base asset (0 when paid in quote or a third asset)."""
    fee = trade.get("fee") or {}
    return float(fee.get("cost") or 0.0) if fee.get("currency") == base else 0.0


def _created_ms(order: Mapping[str, Any], first_trade: Mapping[str, Any]) -> int:
    stamp = order.get("timestamp")
    return int(stamp) if stamp is not None else int(first_trade["timestamp"])


def _quote_fee(trade: Mapping[str, Any], base: str, quote: str, fee_rate: float) -> float:
    """Return a trade's fee in quote currency (estimated at ``fee_rate`` when paid in a third asset)."""
    fee = trade.get("fee") or {}
    cost = float(fee.get("cost") or 0.0)
    currency = fee.get("currency")
    if currency == quote:
        return cost
    if currency == base:
        return cost * float(trade["price"])
    return float(trade["amount"]) * float(trade["price"]) * fee_rate
