"""What the reads of the Binance look-alike see: orders, trades and balances, visible only after a lag.

Binance reads "memory, then database": an order, a trade or a balance change can be missing from reads for a
while after it happened. Here each one becomes visible ``lag_reads`` reads after it was made (0: at once); a
read is any ``GET`` of an order, the open orders, all orders, the trades or the account. :class:`AccountReads`
holds that bookkeeping and the read endpoints; :class:`support.binance_book.Book` adds orders and matching.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from support.binance_orders import BinanceError, Order, fmt, missing
from support.binance_server import MARKETS, MINUTE_MS, Series

OPEN = ("NEW", "PARTIALLY_FILLED")


class AccountReads:
    """The read endpoints of one spot account, with late visibility (see the module docstring)."""

    _series: dict[str, Series]
    balances: dict[str, list[Decimal]]
    fee_rate: Decimal
    orders: list[Order]
    trades: list[dict[str, Any]]
    lag_reads: int
    _reads: int
    _seen_from: dict[tuple[str, int], int]
    _shown_balances: dict[str, list[Decimal]] | None
    _balances_seen_from: int

    # --- what reads see -----------------------------------------------------------------------------------

    def read(self) -> None:
        """Count one read of orders, trades or balances (visibility lags by reads)."""
        self._reads += 1

    def visible(self, kind: str, ident: int) -> bool:
        return self._seen_from.get((kind, ident), 0) <= self._reads

    def _created(self, kind: str, ident: int) -> None:
        if self.lag_reads:
            self._seen_from[(kind, ident)] = self._reads + self.lag_reads + 1

    def _before_change(self) -> None:
        """Keep showing the balances as they are for ``lag_reads`` more reads."""
        if self.lag_reads and self._balances_seen_from <= self._reads:
            self._shown_balances = {a: list(v) for a, v in self.balances.items()}
            self._balances_seen_from = self._reads + self.lag_reads + 1

    def find(self, p: dict[str, str], *, reading: bool = True) -> Order:
        """Return the order named by ``orderId`` or ``origClientOrderId`` (the newest holding that client id);
        raise -2013 when unknown. A read (``GET /api/v3/order``) sees only what has become visible."""
        symbol = self._symbol(p)
        if "orderId" not in p and "origClientOrderId" not in p:
            raise BinanceError(
                400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        if reading:
            self.read()
        for order in reversed(self.orders):
            if order.symbol == symbol and (
                str(order.order_id) == p.get("orderId") or order.client_id == p.get("origClientOrderId")
            ):
                if reading and not self.visible("order", order.order_id):
                    continue
                return order
        raise BinanceError(400, -2013, "Order does not exist.")

    def open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        """Handle ``GET /api/v3/openOrders`` (all symbols when ``symbol`` is absent)."""
        symbol = self._symbol(p) if "symbol" in p else None
        self.read()
        return [
            o.report()
            for o in self.orders
            if o.status in OPEN and symbol in (None, o.symbol) and self.visible("order", o.order_id)
        ]

    def all_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        """Handle ``GET /api/v3/allOrders``: from ``orderId`` on, or the most recent ``limit`` orders."""
        symbol = self._symbol(p)
        limit = int(p.get("limit", "500"))
        if not 1 <= limit <= 1000:
            raise BinanceError(400, -1130, "Invalid data sent for a parameter.")
        self.read()
        rows = [o.report() for o in self.orders if o.symbol == symbol and self.visible("order", o.order_id)]
        if "orderId" in p:
            return [r for r in rows if r["orderId"] >= int(p["orderId"])][:limit]
        return rows[-limit:]

    def my_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        """Handle ``GET /api/v3/myTrades``: by ``orderId``, ``fromId`` or a window of at most 24 hours."""
        symbol = self._symbol(p)
        limit = int(p.get("limit", "500"))
        if not 1 <= limit <= 1000:
            raise BinanceError(400, -1130, "Invalid data sent for a parameter.")
        self.read()
        rows = [t for t in self.trades if t["symbol"] == symbol and self.visible("trade", t["id"])]
        if "orderId" in p:
            rows = [t for t in rows if str(t["orderId"]) == p["orderId"]]
        if "fromId" in p:
            return [t for t in rows if t["id"] >= int(p["fromId"])][:limit]
        start, end = (int(p[k]) if k in p else None for k in ("startTime", "endTime"))
        day = 24 * 60 * MINUTE_MS
        if start is not None and end is not None and end - start > day:
            raise BinanceError(400, -1127, "More than 24 hours between startTime and endTime.")
        if start is None and end is None:
            return rows[-limit:]
        start = end - day if start is None else start
        end = start + day if end is None else end
        return [t for t in rows if start <= t["time"] <= end][:limit]

    def account(self, now_ms: int, omit_zero: bool) -> dict[str, Any]:
        """Handle ``GET /api/v3/account``."""
        rate = fmt(self.fee_rate)
        self.read()
        shown = self.balances
        if self._shown_balances is not None and self._balances_seen_from > self._reads:
            shown = self._shown_balances
        balances = [
            {"asset": asset, "free": fmt(free), "locked": fmt(locked)}
            for asset, (free, locked) in sorted(shown.items())
            if not omit_zero or free or locked
        ]
        bps = int(self.fee_rate * 10_000)
        return {
            "makerCommission": bps,
            "takerCommission": bps,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": "0.00000000", "seller": "0.00000000"},
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": now_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    def _symbol(self, p: dict[str, str]) -> str:
        symbol = p.get("symbol", "")
        if not symbol:
            raise missing("symbol")
        if symbol not in self._series or symbol not in MARKETS:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return symbol
