"""Order planning (pure): what a venue must be sent so that its fills follow the one execution model.

The backtest kernel (:mod:`scalpbot.core.backtest.nb`) applies a decision made on the close of bar ``t`` at the
open of bar ``t + 1``; a live broker sends the orders right after bar ``t`` closes, which is that open. Given
the policy's :class:`~scalpbot.core.execution.Signal` and the open position, :func:`plan_orders` returns the
orders in the order the kernel applies them:

1. **Time stop**: a position entered at the open of bar ``e`` is closed by the decision on bar ``t`` when
   ``t - e + 1 >= max_hold`` (so it exits at the open of bar ``e + max_hold``); ``max_hold`` 0 never expires.
2. **Reversal**: a signal opposite to the position closes it (reason ``signal``); a same-side signal is
   ignored while the position stays open.
3. **Entry**: when flat (or just closed by 1 or 2) a signal with ``side != 0`` and ``size > 0`` opens a
   position at market, followed by its stop loss and take profit, placed on the venue right after the fill
   at fractional distances from the fill price (a distance of ``inf`` means no such barrier).

SL/TP themselves fill on the venue. Client order ids come from
:func:`~scalpbot.core.execution.client_order_id` over (bot, symbol, decision bar, tag) where the tag is the
intent for entries and protection (``entry``, ``sl``, ``tp``) and the exit reason for exits (``signal``,
``time``, ``kill``), so a fill's reason can be read back from its id and a retried decision re-sends the
same ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from scalpbot.core.execution import Intent, Position, Signal, client_order_id
from scalpbot.errors import DataError

__all__ = [
    "EXIT_REASONS",
    "PlannedOrder",
    "Reason",
    "held_bars",
    "order_tag",
    "plan_flatten",
    "plan_orders",
    "protection_prices",
    "time_stop_due",
]

Reason = Literal["entry", "signal", "time", "kill", "sl", "tp"]
EXIT_REASONS: tuple[Reason, ...] = ("signal", "time", "kill")
"""Reasons of the exits the bot sends itself (SL and TP fill on the venue)."""


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """One order to send for a decision taken on the close of bar ``decided_at`` (bar open time, UTC).

    ``side`` is the order direction (+1 buy, -1 sell). ``size`` (entries) is the fraction of equity committed
    as notional at the fill; ``qty`` (exits) the base quantity to close, the whole position; ``distance``
    (sl/tp) the fraction of the entry fill price between the fill and the barrier; ``max_hold`` (entries and
    their protection) bars before the time stop, 0 for none.
    """

    intent: Intent
    side: int
    reason: Reason
    client_id: str
    decided_at: pd.Timestamp
    size: float = 0.0
    qty: float = 0.0
    distance: float = 0.0
    max_hold: int = 0


def order_tag(intent: Intent, reason: Reason) -> str:
    """Return the tag hashed into a client order id: the exit reason for exits, else the intent."""
    return reason if intent == "exit" else intent


def held_bars(entry_time: pd.Timestamp, decided_at: pd.Timestamp, bar_seconds: int) -> int:
    """Return ``t - e + 1``: bars held when deciding on bar ``t`` (open ``decided_at``) after entering in bar ``e``.

    ``entry_time`` may be the exact fill time inside bar ``e``: it is floored to that bar's open.
    """
    step = pd.Timedelta(seconds=bar_seconds)
    entered = entry_time.tz_convert("UTC").floor(step)
    return (decided_at.tz_convert("UTC") - entered) // step + 1


def time_stop_due(position: Position, decided_at: pd.Timestamp, bar_seconds: int) -> bool:
    """Return whether ``position``'s time stop closes it at the open after bar ``decided_at`` (its bars counted
    by time, :func:`held_bars`; ``max_hold`` 0: no time stop)."""
    return (
        position.max_hold > 0 and held_bars(position.entry_time, decided_at, bar_seconds) >= position.max_hold
    )


def protection_prices(entry_price: float, side: int, sl: float, tp: float) -> tuple[float, float]:
    """Return the ``(stop loss, take profit)`` prices of a position, as the kernel fixes them at entry.

    ``sl``/``tp`` are fractional distances from ``entry_price``; ``inf`` gives no barrier (``nan``).
    """
    sl_price = entry_price * (1.0 - side * sl) if math.isfinite(sl) else math.nan
    tp_price = entry_price * (1.0 + side * tp) if math.isfinite(tp) else math.nan
    return sl_price, tp_price


def plan_orders(
    signal: Signal, position: Position | None, *, bot: str, symbol: str, bar_seconds: int
) -> list[PlannedOrder]:
    """Return the orders that apply ``signal`` to ``position`` at the next open, in the order to send them.

    An exit (reason ``time`` before ``signal``) comes first, then an entry with its ``sl`` and ``tp``
    (distances taken from ``signal``). A same-side signal while the position stays open, a zero side, or a zero
    size when flat plan nothing. Raise ``DataError`` for a signal the kernel would refuse.
    """
    _check(signal, bar_seconds)
    orders: list[PlannedOrder] = []
    if position is not None:
        if time_stop_due(position, signal.decided_at, bar_seconds):
            orders.append(_exit(position, signal.decided_at, "time", bot, symbol))
        elif signal.side == -position.side:
            orders.append(_exit(position, signal.decided_at, "signal", bot, symbol))
        else:
            return []
    if signal.side != 0 and signal.size > 0.0:
        orders.extend(_entry(signal, bot, symbol))
    return orders


def plan_flatten(
    position: Position | None, decided_at: pd.Timestamp, *, bot: str, symbol: str
) -> list[PlannedOrder]:
    """Return the exit (reason ``kill``) that closes ``position`` at the next open, or nothing when flat."""
    if position is None:
        return []
    return [_exit(position, decided_at, "kill", bot, symbol)]


def _entry(signal: Signal, bot: str, symbol: str) -> list[PlannedOrder]:
    decided, side, hold = signal.decided_at, signal.side, signal.max_hold

    def planned(intent: Literal["entry", "sl", "tp"], direction: int, **values: float) -> PlannedOrder:
        client_id = client_order_id(bot, symbol, decided, intent)
        return PlannedOrder(intent, direction, intent, client_id, decided, max_hold=hold, **values)

    orders = [planned("entry", side, size=signal.size)]
    if math.isfinite(signal.sl):
        orders.append(planned("sl", -side, distance=signal.sl))
    if math.isfinite(signal.tp):
        orders.append(planned("tp", -side, distance=signal.tp))
    return orders


def _exit(
    position: Position, decided_at: pd.Timestamp, reason: Reason, bot: str, symbol: str
) -> PlannedOrder:
    client_id = client_order_id(bot, symbol, decided_at, order_tag("exit", reason))
    return PlannedOrder("exit", -position.side, reason, client_id, decided_at, qty=position.qty)


def _check(signal: Signal, bar_seconds: int) -> None:
    if bar_seconds <= 0:
        raise DataError(f"bar_seconds must be > 0 (e.g. 60 for 1m bars); got {bar_seconds}")
    if signal.decided_at.tzinfo is None:
        raise DataError(
            f"signal decided_at {signal.decided_at} must be an aware UTC bar open time; use tz_localize('UTC')"
        )
    if signal.side not in (-1, 0, 1):
        raise DataError(f"signal side must be -1 (short), 0 (nothing) or +1 (long); got {signal.side}")
    if signal.side == 0:
        return
    if not (math.isfinite(signal.size) and signal.size >= 0.0):
        raise DataError(f"signal size must be a finite fraction of equity >= 0; got {signal.size}")
    for name, value in (("sl", signal.sl), ("tp", signal.tp)):
        if not value > 0.0:
            raise DataError(
                f"signal {name} must be > 0 (a fraction of the fill price, e.g. 0.003; inf for none); got {value}"
            )
    if signal.max_hold < 0:
        raise DataError(
            f"signal max_hold must be a whole number of bars >= 0 (0 = none); got {signal.max_hold}"
        )
