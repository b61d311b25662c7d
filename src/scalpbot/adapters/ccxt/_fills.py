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


def execution_order(trade: Mapping[str, Any]) -> tuple[int, int, int, str]:
    """Return the sort key of a ccxt trade in the venue's execution order: its time (epoch ms), then its id.

    Venues number their trades (Binance and OKX ids are decimal integers, which ccxt hands over as text), so
    ids of digits compare as numbers: trade ``"10"`` comes after ``"9"`` in the same millisecond, as a time
    stop's sale does before the re-entry at the same open. Other ids compare as text, after the numbered ones.
    """
    trade_id = str(trade["id"])
    if trade_id.isdigit():
        return int(trade["timestamp"]), 0, int(trade_id), ""
    return int(trade["timestamp"]), 1, 0, trade_id


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
    for trade in sorted(trades, key=execution_order):
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


@dataclass(frozen=True, slots=True)
class Holdings:
    """What the bot's executions leave it, walked oldest first (see :func:`holdings`).

    ``entries`` maps each buy's order id to ``(quantity it added to the position, its fee in quote)``;
    ``position`` is the base quantity the bot holds in whole steps, ``dust`` what it holds below one step,
    ``entry`` the buy the position belongs to (``None`` when flat).
    """

    entries: dict[str, tuple[float, float]]
    position: float
    dust: float
    entry: Execution | None


def holdings(done: list[Execution], sellable: Callable[[float], float] = lambda qty: qty) -> Holdings:
    """Walk the bot's executions as the backtest kernel walks its buys (its rule 7).

    A buy receives its quantity net of the commission taken in base; with the dust earlier buys left, the
    account then holds whole steps (``sellable``, the venue's step rounding down) - added to the position - and
    less than one step of dust, carried to the next buy. The buy's fee is what it cost less what it added to
    the position, at its price. An exit of any reason removes what it sold; orders the bot did not make are
    ignored. The dust stays the bot's own coins (never foreign), under one step.
    """
    position, dust, entry = 0.0, 0.0, None
    entries: dict[str, tuple[float, float]] = {}
    for execution in done:
        if execution.tag == "entry" and execution.side > 0:  # the bot enters only when flat
            received = execution.qty - execution.base_fee
            total = received + dust
            added = sellable(total)
            dust = total - added
            entries[execution.order_id] = (added, execution.fee + (received - added) * execution.price)
            position, entry = max(position, 0.0) + added, execution
        elif execution.tag in EXIT_TAGS and execution.side < 0:
            position -= execution.qty
            if position <= 1e-12:
                dust = max(0.0, dust + position)  # a sale beyond the position took dust with it
                position, entry = 0.0, None
    return Holdings(entries, position, dust, entry)


def fills(
    done: list[Execution],
    entry_before: Callable[[Execution], Execution | None],
    bar: pd.Timedelta,
    sellable: Callable[[float], float] = lambda qty: qty,
) -> list[Fill]:
    """Return one ``Fill`` per execution: reason from its tag (``external`` if none), PnL on exits.

    ``entry_before(exit)`` returns the entry an exit closed (or ``None`` when it cannot be found): it gives the
    exit's ``entry_client_id`` and PnL, ``qty x (exit - entry) x position side`` less the fees of both.
    ``time`` is the open of the bar the first trade was in. An entry's ``qty`` and ``fee`` are what it added to
    the position and what it cost beyond that (:func:`holdings`), so the exit that sells the position closes
    the trade and ``qty x price + fee`` is still what the entry cost.
    """
    walked = holdings(done, sellable).entries
    result = []
    for execution in done:
        reason = execution.tag if execution.tag in ("entry", *EXIT_TAGS) else "external"
        pnl, entry_id = None, execution.client_id if reason == "entry" else None
        qty, fee = execution.qty, execution.fee
        if reason == "entry" and execution.side > 0:
            qty, fee = walked[execution.order_id]
        elif reason not in ("entry", "external"):
            entry = entry_before(execution)
            if entry is not None:
                gross = -execution.side * execution.qty * (execution.price - entry.price)
                entry_fee = walked[entry.order_id][1] if entry.order_id in walked else entry.fee
                pnl, entry_id = gross - execution.fee - entry_fee, entry.client_id
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
