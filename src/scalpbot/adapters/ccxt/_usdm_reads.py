"""Reading a Binance USDⓈ-M account (pure over the ``/fapi`` rows): the position, fills and funding settlements.

Orders are read back by their client ids (:class:`~scalpbot.adapters.ccxt._fills.IdDecoder`): the bot's entries
carry their id followed by the position's ``max_hold`` in bars (``newClientOrderId`` = 32-character id + digits:
a USDⓈ-M order has no other field to carry it), its own exits (``signal``, ``time``, ``kill``, ``unprotected``)
carry their id alone. A conditional order of the Algo Service that fired names the market order it placed
(``actualOrderId``); its ``clientAlgoId`` is the bot's ``sl`` or ``tp`` id, which gives the exit reason. An order
whose client id starts with ``autoclose-`` is the venue's liquidation (exit reason ``liquidation``). Fees are
the trades' ``commission`` (USDT) summed by order; quantities are base units (BTC): ccxt's USDⓈ-M contract size
is 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from scalpbot.adapters.ccxt._fills import IdDecoder
from scalpbot.adapters.ccxt._swap_reads import as_float, as_int, bar_of
from scalpbot.core.execution import Fill, FundingPayment, Position
from scalpbot.errors import ConfigError

ID_LENGTH = 32
"""Length of the bot's client ids (:func:`scalpbot.core.execution.client_order_id`)."""
LIQUIDATION_PREFIX = "autoclose-"


def entry_client_id(client_id: str, max_hold: int) -> str:
    """Return the ``newClientOrderId`` of an entry: its id, then ``max_hold`` (at most 36 characters)."""
    return f"{client_id}{max_hold}"


class UsdmReader:
    """Read one USDⓈ-M symbol's orders, trades, algo orders and income for one bot."""

    def __init__(self, symbol: str, decoder: IdDecoder, bar: pd.Timedelta) -> None:
        self.symbol = symbol
        self.decoder = decoder
        self.bar = bar

    def own_id(self, order: Mapping[str, Any]) -> str:
        """Return the bot's id of an order (an entry's ``max_hold`` digits removed)."""
        return str(order.get("clientOrderId") or "")[:ID_LENGTH]

    def tag(self, order: Mapping[str, Any]) -> str | None:
        """Return the tag of an order's client id (``entry``, ``signal``, ...), or ``None`` for one not the bot's."""
        client_id = str(order.get("clientOrderId") or "")
        tag = self.decoder.tag(client_id[:ID_LENGTH], as_int(order.get("time")))
        if tag == "entry" or len(client_id) == ID_LENGTH:
            return tag
        return None

    def max_hold(self, order: Mapping[str, Any]) -> int:
        """Return the ``max_hold`` an entry's client id carries (0 when none)."""
        digits = str(order.get("clientOrderId") or "")[ID_LENGTH:]
        return int(digits) if digits.isdigit() else 0

    def position(
        self, row: Mapping[str, Any], done: list[dict[str, Any]], algos: list[dict[str, Any]]
    ) -> Position:
        """Return the open position with its entry (the bot's newest entry on that side) and its SL/TP."""
        amount = as_float(row.get("positionAmt"))
        side = 1 if amount > 0 else -1
        own = [o for o in done if self.tag(o) == "entry" and _side(o) == side]
        if not own:
            raise ConfigError(
                f"binance {self.symbol} holds a {'long' if side > 0 else 'short'} position of {abs(amount):g} "
                "that the bot did not open; close it or trade from a sub-account"
            )
        entry = own[-1]
        guards: dict[str, float] = {}
        for algo in algos:
            tag = self.decoder.tag(str(algo.get("clientAlgoId") or ""), as_int(algo.get("createTime")))
            if tag in ("sl", "tp") and algo.get("algoStatus") == "NEW":
                guards[tag] = as_float(algo.get("triggerPrice"))
        return Position(
            side,
            abs(amount),
            as_float(row.get("entryPrice")),
            bar_of(as_int(entry.get("updateTime")), self.bar),
            guards.get("sl", math.nan),
            guards.get("tp", math.nan),
            self.max_hold(entry),
            self.own_id(entry),
        )

    def funding(
        self, income: list[dict[str, Any]], done: list[dict[str, Any]], bars: pd.DataFrame
    ) -> list[FundingPayment]:
        """Return the ``FUNDING_FEE`` settlements, each given to the bot's entry open at its time (oldest first).

        The income row has no size: the position is the entry's (one entry per position), and the rate is the
        amount over ``side x qty x`` the bar's open.
        """
        opens = bars["open"]
        payments = []
        for row in sorted(income, key=lambda r: as_int(r.get("time"))):
            if row.get("incomeType") != "FUNDING_FEE":
                continue
            at = as_int(row.get("time"))
            before = [o for o in done if as_int(o.get("updateTime")) < at]
            entry = next((o for o in reversed(before) if self.tag(o) == "entry"), None)
            if entry is None or before[-1] is not entry:  # the bot's position was closed before that time
                continue
            time_ = pd.Timestamp(at, unit="ms", tz="UTC")
            side = _side(entry)
            qty = as_float(entry.get("executedQty"))
            amount = -as_float(row.get("income"))
            price = float(opens.get(time_, math.nan))
            rate = amount / (side * qty * price) if qty > 0 and math.isfinite(price) else 0.0
            payments.append(
                FundingPayment(
                    time_, side, qty, price if math.isfinite(price) else 0.0, rate, amount, self.own_id(entry)
                )
            )
        return payments

    def fills(
        self,
        done: list[dict[str, Any]],
        fees: Mapping[str, float],
        fired: Mapping[str, Mapping[str, Any]],
        funding: list[FundingPayment],
        since: pd.Timestamp | None,
    ) -> list[Fill]:
        """Return the fills of the done orders (oldest first) at or after ``since``; exits carry their PnL after
        both fees and the trade's funding. ``fees`` by order id; ``fired``: the algo order that placed an order,
        by order id."""
        fills: list[Fill] = []
        last_entry: Mapping[str, Any] | None = None
        for order in done:
            tag = self.tag(order)
            time_ = bar_of(as_int(order.get("updateTime")), self.bar)
            side = _side(order)
            qty, price = as_float(order.get("executedQty")), as_float(order.get("avgPrice"))
            fee = fees.get(str(order.get("orderId")), 0.0)
            if tag == "entry":
                last_entry = order
                if since is None or time_ >= since:
                    own = self.own_id(order)
                    fills.append(Fill(own, time_, side, qty, price, fee, "entry", None, own))
                continue
            reason, client_id = self._exit_of(order, tag, fired)
            if last_entry is None or not reason or (since is not None and time_ < since):
                continue
            entry_id = self.own_id(last_entry)
            entry_price = as_float(last_entry.get("avgPrice"))
            entry_fee = fees.get(str(last_entry.get("orderId")), 0.0)
            paid = sum(p.amount for p in funding if p.entry_client_id == entry_id)
            pnl = -side * qty * (price - entry_price) - entry_fee - fee - paid
            fills.append(Fill(client_id, time_, side, qty, price, fee, reason, pnl, entry_id))
            last_entry = None
        return fills

    def _exit_of(
        self, order: Mapping[str, Any], tag: str | None, fired: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, str]:
        """Return the exit reason of an order and the client id the bot reads it by (``""``: not an exit)."""
        if tag is not None and tag not in ("entry", "oco", "sl", "tp"):
            return tag, self.own_id(order)
        algo = fired.get(str(order.get("orderId")))
        if algo is not None:
            client_id = str(algo.get("clientAlgoId") or "")
            algo_tag = self.decoder.tag(client_id, as_int(algo.get("createTime")))
            if algo_tag in ("sl", "tp"):
                return algo_tag, client_id
        if str(order.get("clientOrderId") or "").startswith(LIQUIDATION_PREFIX):
            return "liquidation", f"liq{order.get('orderId')}"
        return "", ""


def _side(order: Mapping[str, Any]) -> int:
    return 1 if order.get("side") == "BUY" else -1
