"""The seam between the live broker and a venue family: how one exchange protects, names and reports orders.

The broker's rules (never unprotected, never twice, only its own inventory) live in :mod:`.broker` and
:mod:`._account`; what differs between venues is behind :class:`Family`, one module per venue:

* :mod:`.binance`: Binance spot. The entry is a plain market buy of a quote amount; protection is one OCO
  order list placed right after the fill, at fill-price distances.
* :mod:`.okx`: OKX spot. The entry carries its stop loss and take profit (ccxt's unified ``stopLoss`` /
  ``takeProfit``, attached algo orders priced at the last close); after the fill they are found on the venue
  and amended to fill-price distances and to the quantity the bot holds.

:func:`family_of` picks the family from the ccxt exchange id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from scalpbot.adapters.ccxt._sending import OrderSender
from scalpbot.adapters.ccxt.common import CcxtCalls
from scalpbot.core.execution import OrderAck, client_order_id
from scalpbot.errors import ConfigError

if TYPE_CHECKING:
    from scalpbot.adapters.ccxt._account import SpotAccount


@dataclass(frozen=True, slots=True)
class Desk:
    """What a family acts through: the ccxt exchange, its call layer, the account, the order sender, names."""

    exchange: Any
    calls: CcxtCalls
    account: SpotAccount
    sender: OrderSender
    bot: str
    symbol: str

    def client_id(self, decided_at: pd.Timestamp, tag: str) -> str:
        """Return the client id of ``tag`` for the decision on bar ``decided_at``."""
        return client_order_id(self.bot, self.symbol, decided_at, tag)


@dataclass(frozen=True, slots=True)
class Entry:
    """A market buy to send: its client id, quote amount to spend (``cost``, text in the venue's precision),
    the base amount that buys at ``reference``, decision bar, barrier distances and time stop.

    The buy is sent as ``cost`` (quote currency), so it gets what that buys at the fill price, as the backtest
    kernel sizes it (:meth:`scalpbot.core.venue.Venue.order_rules`). ``reference`` is the decision bar's close:
    a venue that prices the protection before the fill prices it from there.
    """

    client_id: str
    cost: str
    amount: str
    decided_at: pd.Timestamp
    sl: float
    tp: float
    max_hold: int
    reference: float


class Family(Protocol):
    """What the live broker needs from one venue family (all calls go through ``desk.calls``)."""

    options: Mapping[str, Any]
    """ccxt options for a spot broker on this venue."""
    page: int
    """The most trades or orders one read returns (the bounded reads of a snapshot)."""
    rate_window: float
    """Seconds over which the venue counts requests: a rate-limit refusal without ``Retry-After`` waits this."""

    def is_duplicate_message(self, message: str) -> bool:
        """Return whether a translated refusal says the venue already holds this client id open."""
        ...

    def order_params(self, client_id: str, max_hold: int) -> dict[str, Any]:
        """Return ``create_order`` params for a plain market order with ``client_id``."""
        ...

    def send_entry(self, desk: Desk, entry: Entry) -> dict[str, Any]:
        """Send the market buy once (inside ``calls.place``) and return the venue's order."""
        ...

    def settled(self, desk: Desk, placed: dict[str, Any]) -> dict[str, Any]:
        """Return the entry as the venue reports it once executed (fill, average price, trades if any)."""
        ...

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
        """Protect ``held`` base units at ``distances`` (sl, tp) from ``entry_price``; refusals as ``rejected``.

        ``again``: the entry was already on the venue (a retried cycle), so its protection may have been placed,
        amended or even have fired since.
        """
        ...

    def guards(
        self, account: SpotAccount, open_orders: list[dict[str, Any]]
    ) -> tuple[dict[str, float], int | None]:
        """Return the protection prices on the venue by intent (``sl``, ``tp``) and the ``max_hold`` they carry."""
        ...

    def cancel_protection(self, desk: Desk) -> None:
        """Cancel the bot's open SL/TP on the symbol; gone already is not an error."""
        ...

    def max_hold_of(self, order: Mapping[str, Any]) -> int | None:
        """Return the ``max_hold`` an order carries, or ``None``."""
        ...

    def recent_orders(self, account: SpotAccount, limit: int) -> list[dict[str, Any]]:
        """Return the most recent orders on the symbol, done ones included (one read)."""
        ...

    def order_trades_params(self, order_id: str) -> dict[str, Any]:
        """Return ``fetch_my_trades`` params selecting one order's trades."""
        ...

    def read_order(self, account: SpotAccount, order: dict[str, Any]) -> dict[str, Any]:
        """Return ``order`` with the client id the bot reads it by (an order a protection placed gets the
        protection's ``sl``/``tp`` id)."""
        ...


def family_of(exchange_id: str) -> Family:
    """Return the venue family of a ccxt exchange id; raise ``ConfigError`` for a venue the broker cannot trade."""
    from scalpbot.adapters.ccxt import binance, okx

    families: dict[str, Family] = {"binance": binance.BinanceSpot(), "okx": okx.OkxSpot()}
    if exchange_id not in families:
        raise ConfigError(
            f"the ccxt broker holds SL/TP on the exchange (Binance OCO lists, OKX attached algo orders); "
            f"'{exchange_id}' is not supported yet (use one of {', '.join(sorted(families))}, or the paper broker)"
        )
    return families[exchange_id]
