"""What the live brokers of linear perpetual swaps share: the Broker port's order flow over venue hooks.

Each venue module (:mod:`.okx_swap`, :mod:`.binance_swap`) loads and checks its market and account settings
(``_ready``), rebuilds the account (``snapshot``), and implements the three order steps this base calls in the
order the execute cycle needs them: ``_exit`` (cancel the protection, close reduce-only), ``_enter`` (the market
entry sized at the decision bar's close, with its SL/TP) and ``_reprotect`` (protect a position found without
its stop loss and take profit). The rules that hold on every venue - one plan per signal, exit before entry,
protection restored before anything else - live here once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import pandas as pd

from scalpbot.core.execution import BrokerSnapshot, OrderAck, Position, Signal
from scalpbot.core.orders import PlannedOrder, plan_flatten, plan_orders
from scalpbot.errors import ConfigError


class SwapBroker(ABC):
    """A ``Broker`` on one linear perpetual swap, one bot per instance (see the module docstring)."""

    _bot: str
    _symbol: str
    _bar: pd.Timedelta

    @staticmethod
    def check_names(bot: str, symbol: str) -> None:
        """Raise ``ConfigError`` for an empty bot name or a spot symbol (a swap is ``BASE/QUOTE:SETTLE``)."""
        if not bot:
            raise ConfigError("bot must be a non-empty name: it is hashed into every client order id")
        if ":" not in symbol:
            raise ConfigError(
                f"'{symbol}' is a spot symbol; a perpetual swap is written BASE/QUOTE:SETTLE, e.g. BTC/USDT:USDT"
            )

    def submit(self, signal: Signal, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Send what ``signal`` asks at the next open: exit, entry with its SL/TP; protect an unprotected position."""
        self._ready()
        position = snapshot.position
        plan = plan_orders(
            signal, position, bot=self._bot, symbol=self._symbol, bar_seconds=int(self._bar.total_seconds())
        )
        if position is not None and not any(o.intent == "exit" for o in plan) and unprotected(position):
            return self._reprotect(position, snapshot)
        acks: list[OrderAck] = []
        distances = {o.intent: o.distance for o in plan if o.intent in ("sl", "tp")}
        for order in plan:
            if order.intent == "exit":
                acks += self._exit(order.client_id, order.decided_at, position, order.reason)
            elif order.intent == "entry":
                acks += self._enter(
                    order, snapshot, distances.get("sl", math.inf), distances.get("tp", math.inf)
                )
        return acks

    def flatten(self, decided_at: pd.Timestamp, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Cancel the protection and close the position with a reduce-only market order (tag ``kill``)."""
        self._ready()
        acks: list[OrderAck] = []
        for order in plan_flatten(snapshot.position, decided_at, bot=self._bot, symbol=self._symbol):
            acks += self._exit(order.client_id, decided_at, snapshot.position, "kill")
        return acks

    @abstractmethod
    def _ready(self) -> dict[str, Any]:
        """Return the market, loading it and checking (or setting) the account's settings the first time."""

    @abstractmethod
    def _exit(
        self, client_id: str, decided_at: pd.Timestamp, position: Position | None, reason: str
    ) -> list[OrderAck]:
        """Cancel the bot's protection, then close ``position`` with a reduce-only market order."""

    @abstractmethod
    def _enter(self, order: PlannedOrder, snapshot: BrokerSnapshot, sl: float, tp: float) -> list[OrderAck]:
        """Send the market entry of ``order`` and protect it at ``sl``/``tp`` (fractions of the fill price)."""

    @abstractmethod
    def _reprotect(self, position: Position, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Protect ``position``, found without its stop loss and take profit, once."""


def linear_swap(markets: Mapping[str, Any], symbol: str, venue: str) -> dict[str, Any]:
    """Return ``symbol``'s market from ccxt's ``markets``; ``ConfigError`` unless it is a linear perpetual swap."""
    market: dict[str, Any] | None = markets.get(symbol)
    if market is None or not market.get("swap") or not market.get("linear"):
        raise ConfigError(f"{symbol} is not a linear perpetual swap on {venue}; use e.g. BTC/USDT:USDT")
    return market


def unprotected(position: Position) -> bool:
    """Return whether ``position`` has neither a stop loss nor a take profit on the venue."""
    return math.isnan(position.sl_price) and math.isnan(position.tp_price)


def ms_after(time_: pd.Timestamp) -> int:
    """Return the epoch milliseconds one minute after ``time_`` (the end of a 1m bar opened then)."""
    return int(time_.timestamp() * 1000) + 60_000
