"""Reading an OKX linear-swap account (pure over the v5 rows): the position, fills and funding settlements.

Orders are read back by their client ids (:class:`~scalpbot.adapters.ccxt._fills.IdDecoder`): the bot's entries
(tag ``entry``) and its own exits (``signal``, ``time``, ``kill``, ``unprotected``); a close placed by a fired
SL/TP has no client id of its own but names the algo order's ``algoClOrdId`` (the decision's ``oco`` id), and it
is a take profit when it closed the trade in profit, else a stop; a ``full_liquidation`` close is exit reason
``liquidation``. Sizes are contracts of ``contract_size`` base units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pandas as pd

from scalpbot.adapters.ccxt._fills import IdDecoder
from scalpbot.core.execution import Fill, FundingPayment, Position
from scalpbot.errors import ConfigError

MAX_HOLD_TAG = "sbh"
"""The prefix of the order ``tag`` that carries an entry's ``max_hold`` (bars)."""


class SwapReader:
    """Read one swap's orders, position and bills for one bot."""

    def __init__(self, symbol: str, decoder: IdDecoder, bar: pd.Timedelta, contract_size: float) -> None:
        self.symbol = symbol
        self.decoder = decoder
        self.bar = bar
        self._size = Decimal(repr(float(contract_size)))

    def base(self, contracts: float) -> float:
        """Return ``contracts`` in base units (contracts x contract size), written as decimals add up."""
        return float(Decimal(repr(contracts)) * self._size)

    def contracts(self, qty: float) -> float:
        """Return ``qty`` base units in contracts, exactly (so that truncation to the lot loses nothing)."""
        return float(Decimal(repr(qty)) / self._size)

    def tag(self, order: Mapping[str, Any]) -> str | None:
        """Return the tag of an order's client id (``entry``, ``signal``, ...), or ``None`` for one not the bot's."""
        return self.decoder.tag(str(order.get("clOrdId") or ""), as_int(order.get("cTime")))

    def position(
        self,
        row: Mapping[str, Any],
        entries: Mapping[str, Mapping[str, Any]],
        algos: list[dict[str, Any]],
        done: list[dict[str, Any]],
    ) -> Position:
        """Return the open position with its entry (the bot's newest entry on that side) and its SL/TP."""
        pos = as_float(row.get("pos"))
        side = 1 if pos > 0 else -1
        own = [o for o in done if self.tag(o) == "entry" and (1 if o.get("side") == "buy" else -1) == side]
        if not own:
            raise ConfigError(
                f"okx {self.symbol} holds a {'long' if side > 0 else 'short'} position of {abs(pos):g} contracts "
                "that the bot did not open; close it or trade from a sub-account"
            )
        entry = own[-1]
        guards: dict[str, float] = {}
        for algo in algos:
            if self.decoder.tag(algo.get("algoClOrdId"), as_int(algo.get("cTime"))) == "oco":
                for intent, key in (("sl", "slTriggerPx"), ("tp", "tpTriggerPx")):
                    if as_float(algo.get(key)) > 0:
                        guards[intent] = as_float(algo.get(key))
        tag = str(entry.get("tag") or "")
        max_hold = (
            int(tag[len(MAX_HOLD_TAG) :])
            if tag.startswith(MAX_HOLD_TAG) and tag[len(MAX_HOLD_TAG) :].isdigit()
            else 0
        )
        return Position(
            side,
            self.base(abs(pos)),
            as_float(row.get("avgPx")),
            bar_of(as_int(entry.get("fillTime")), self.bar),
            guards.get("sl", math.nan),
            guards.get("tp", math.nan),
            max_hold,
            str(entry["clOrdId"]),
        )

    def funding(
        self, bills: list[dict[str, Any]], done: list[dict[str, Any]], bars: pd.DataFrame
    ) -> list[FundingPayment]:
        """Return the funding settlements, each given to the bot's entry open at its time (oldest first)."""
        opens = bars["open"]
        payments = []
        for bill in sorted(bills, key=lambda b: as_int(b.get("ts"))):
            at = as_int(bill.get("ts"))
            before = [o for o in done if as_int(o.get("fillTime")) < at]
            entry = next((o for o in reversed(before) if self.tag(o) == "entry"), None)
            if entry is None:
                continue
            time_ = pd.Timestamp(at, unit="ms", tz="UTC")
            side = 1 if entry.get("side") == "buy" else -1
            qty = self.base(as_float(bill.get("sz")))
            amount = -as_float(bill.get("balChg"))
            price = float(opens.get(time_, math.nan))
            rate = amount / (side * qty * price) if qty > 0 and math.isfinite(price) else 0.0
            payments.append(
                FundingPayment(
                    time_,
                    side,
                    qty,
                    price if math.isfinite(price) else 0.0,
                    rate,
                    amount,
                    str(entry["clOrdId"]),
                )
            )
        return payments

    def fills(
        self,
        done: list[dict[str, Any]],
        entries: Mapping[str, Mapping[str, Any]],
        funding: list[FundingPayment],
        since: pd.Timestamp | None,
    ) -> list[Fill]:
        """Return the fills of the done orders (oldest first) at or after ``since``; exits carry their PnL after
        both fees and the trade's funding."""
        fills: list[Fill] = []
        last_entry: Mapping[str, Any] | None = None
        for order in done:
            tag = self.tag(order)
            time_ = bar_of(as_int(order.get("fillTime")), self.bar)
            side = 1 if order.get("side") == "buy" else -1
            qty, price, fee = (
                self.base(as_float(order["accFillSz"])),
                as_float(order.get("avgPx")),
                -as_float(order.get("fee")),
            )
            if tag == "entry":
                last_entry = order
                if since is None or time_ >= since:
                    fills.append(
                        Fill(
                            str(order["clOrdId"]),
                            time_,
                            side,
                            qty,
                            price,
                            fee,
                            "entry",
                            None,
                            str(order["clOrdId"]),
                        )
                    )
                continue
            entry, reason, client_id = self.exit_of(order, tag, entries, last_entry)
            if entry is None or (since is not None and time_ < since):
                continue
            entry_id = str(entry["clOrdId"])
            entry_price, entry_fee = as_float(entry.get("avgPx")), -as_float(entry.get("fee"))
            paid = sum(p.amount for p in funding if p.entry_client_id == entry_id)
            pnl = -side * qty * (price - entry_price) - entry_fee - fee - paid
            fills.append(Fill(client_id, time_, side, qty, price, fee, reason, pnl, entry_id))
        return fills

    def exit_of(
        self,
        order: Mapping[str, Any],
        tag: str | None,
        entries: Mapping[str, Mapping[str, Any]],
        last_entry: Mapping[str, Any] | None,
    ) -> tuple[Mapping[str, Any] | None, str, str]:
        """Return the entry an exit order closes, its exit reason and the client id the bot reads it by."""
        if tag is not None and tag not in ("entry", "oco"):
            return last_entry, tag, str(order.get("clOrdId"))
        algo = self.decoder.decision(str(order.get("algoClOrdId") or ""), as_int(order.get("cTime")))
        if algo is not None and algo[0] == "oco":
            entry = entries.get(self.decoder.client_id(algo[1], "entry"))
            if entry is None:
                return None, "", ""
            side = 1 if entry.get("side") == "buy" else -1
            won = side * (as_float(order.get("avgPx")) - as_float(entry.get("avgPx"))) > 0
            reason = "tp" if won else "sl"
            return entry, reason, self.decoder.client_id(algo[1], reason)
        if order.get("category") in ("full_liquidation", "partial_liquidation") and last_entry is not None:
            return last_entry, "liquidation", f"liq{order.get('ordId')}"
        return None, "", ""


def bar_of(ms: int, bar: pd.Timedelta) -> pd.Timestamp:
    """Return the open time of the bar holding epoch-ms ``ms``."""
    return pd.Timestamp(ms, unit="ms", tz="UTC").floor(bar)


def as_int(value: Any) -> int:
    """Return ``value`` as an int (0 when missing or malformed)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def as_float(value: Any) -> float:
    """Return ``value`` as a float (0.0 when missing or malformed)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
