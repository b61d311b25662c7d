"""Sending one new order so that it can never be placed twice: look up, send once, resolve an unknown outcome.

The venue is asked for the client id first (a retried cycle finds its order); the order is then sent once
(:meth:`~scalpbot.adapters.ccxt.common.CcxtCalls.place` repeats only requests the venue provably refused
unprocessed). When no answer says whether the venue took it - a timeout, a 5xx, Binance's ``-1007``, a dropped
connection - the id is looked up with backoff, ``len(delays)`` times; an order still not found is reported
``rejected`` and never sent again on a guess: the next cycle's reconciliation sees what the venue did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from scalpbot.adapters.ccxt.common import CcxtCalls
from scalpbot.core.execution import OrderAck
from scalpbot.errors import InsufficientFunds, OrderOutcomeUnknown, OrderRejected

Status = Literal["accepted", "duplicate", "rejected"]
Lookup = Callable[[str], dict[str, Any] | None]


class OrderSender:
    """Send orders once through ``calls``; ``lookup(client_id)`` finds an order on the venue (or ``None``).

    ``delays`` are the pauses (seconds) before each look-up of an order of unknown outcome, through ``sleep``;
    ``is_duplicate(message)`` recognises the venue refusing a client id it holds open.
    """

    def __init__(
        self,
        calls: CcxtCalls,
        lookup: Lookup,
        *,
        delays: Sequence[float],
        sleep: Callable[[float], None],
        is_duplicate: Callable[[str], bool],
    ) -> None:
        self._calls = calls
        self._lookup = lookup
        self._delays = list(delays)
        self._sleep = sleep
        self._is_duplicate = is_duplicate

    def known(self, what: str, client_id: str) -> dict[str, Any] | None:
        """Return the venue's order with ``client_id``, or ``None`` (reads retried)."""
        return self._calls.call(what, self._lookup, client_id)

    def place(
        self, what: str, client_id: str, intent: str, send: Callable[[], dict[str, Any]]
    ) -> tuple[OrderAck, dict[str, Any] | None]:
        """Send one order unless its id is known; return the ack and the venue's order (``None``: not placed)."""
        known = self.known(f"looking up the order before {what}", client_id)
        if known is not None:
            return ack(client_id, intent, "duplicate", known), known
        try:
            order = self._calls.place(what, send)
        except OrderOutcomeUnknown as e:
            found = self.resolve(client_id)
            if found is None:
                return OrderAck(client_id, intent, "rejected", self.unresolved(e)), None
            message = "found after an unknown outcome"
            return OrderAck(client_id, intent, "accepted", message, str(found.get("id"))), found
        except (OrderRejected, InsufficientFunds) as e:
            if self._is_duplicate(str(e)):
                known = self.known("looking up a duplicate", client_id)
                return ack(client_id, intent, "duplicate", known), known
            return OrderAck(client_id, intent, "rejected", str(e)), None
        return ack(client_id, intent, "accepted", order), order

    def resolve(
        self, client_id: str, until: Callable[[dict[str, Any]], bool] = lambda order: True
    ) -> dict[str, Any] | None:
        """Look an order of unknown outcome up with backoff; return it (once ``until`` holds for it), or
        ``None`` when never found so."""
        for pause in self._delays:
            self._sleep(pause)
            found = self.known("resolving an order of unknown outcome", client_id)
            if found is not None and until(found):
                return found
        return None

    def unresolved(self, error: Exception) -> str:
        """Return the reason given for an order of unknown outcome that the look-ups never found."""
        return (
            f"{error}; not found on the venue after {len(self._delays)} look-ups over {sum(self._delays):.0f} s "
            "and not sent again: the next cycle reconciles what the venue did"
        )


def ack(client_id: str, intent: str, status: Status, order: Mapping[str, Any] | None) -> OrderAck:
    """Return the ack of an order the venue holds (``order``) or refused."""
    message = "already on the venue" if status == "duplicate" else ""
    venue_id = None if order is None else str(order.get("id"))
    return OrderAck(client_id, intent, status, message, venue_id)
