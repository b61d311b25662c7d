"""Values of the execute path (pure): what the bot asks a broker for and what a broker reports back.

Times are bar **open** times (UTC). A decision taken on the close of bar ``t`` is labelled ``t`` and acts at
the open of bar ``t + 1``. Prices are quote currency, quantities base units, fees quote currency.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import pandas as pd

Intent = Literal["entry", "exit", "sl", "tp"]
ExitReasonName = Literal["sl", "tp", "time", "signal", "kill"]

_CLIENT_ID_LENGTH = 32  # Binance allows 36, OKX 32, Bybit 36: 32 fits them all


def client_order_id(bot: str, symbol: str, decided_at: pd.Timestamp, intent: str) -> str:
    """Return the venue client order id of one intent: the same inputs always give the same id.

    A retried or concurrent run re-submits the same id and the venue rejects the duplicate. The id is
    ``sb`` plus 30 hex digits of sha256 over (bot, symbol, decision bar time, intent): 32 characters.
    """
    stamp = decided_at.tz_convert("UTC").strftime("%Y%m%dT%H%M%S")
    digest = hashlib.sha256(f"{bot}|{symbol}|{stamp}|{intent}".encode()).hexdigest()
    return "sb" + digest[: _CLIENT_ID_LENGTH - 2]


@dataclass(frozen=True, slots=True)
class Signal:
    """The policy's wish for the next open, as the backtest kernel takes it (see ``scalpbot.core.backtest.frame``).

    ``side`` +1/-1/0 (a same-direction side while in a position is ignored, an opposite one reverses),
    ``size`` fraction of equity committed as notional at the fill, ``sl``/``tp`` fractional distances from
    the fill price, ``max_hold`` bars (0 = no time stop).
    """

    decided_at: pd.Timestamp
    side: int
    size: float
    sl: float
    tp: float
    max_hold: int


@dataclass(frozen=True, slots=True)
class Position:
    """An open position as the broker holds it, with its exchange-side protection."""

    side: int
    qty: float
    entry_price: float
    entry_time: pd.Timestamp
    sl_price: float
    tp_price: float
    max_hold: int
    entry_client_id: str


@dataclass(frozen=True, slots=True)
class Fill:
    """A completed entry or exit: ``reason`` is ``entry`` or the exit reason (sl, tp, time, signal, kill).

    ``time`` is the open time of the bar in which it filled; ``side`` the order side (+1 buy, -1 sell);
    ``pnl`` the realized PnL of the trade after both fees (exits only; ``None`` for entries);
    ``entry_client_id`` the client id of the entry this fill belongs to (an entry's own id for an entry).
    """

    client_id: str
    time: pd.Timestamp
    side: int
    qty: float
    price: float
    fee: float
    reason: str
    pnl: float | None = None
    entry_client_id: str | None = None


@dataclass(frozen=True, slots=True)
class BrokerSnapshot:
    """The account as reconciled with the venue after bar ``as_of`` closed.

    ``equity`` is cash plus the open position marked at the last close. ``fills`` are every fill with a
    time at or after the ``since`` asked for, oldest first. ``open_orders`` are client ids still working.
    """

    as_of: pd.Timestamp
    equity: float
    position: Position | None
    fills: tuple[Fill, ...]
    open_orders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OrderAck:
    """What the venue answered to one order: ``accepted``, ``duplicate`` (already known) or ``rejected``."""

    client_id: str
    intent: str
    status: Literal["accepted", "duplicate", "rejected"]
    message: str = ""
    venue_id: str | None = None
