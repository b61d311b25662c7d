"""The spot account behind the Binance look-alike: balances, order placement, cancels, trades and matching.

Prices come from 1-minute bars: a MARKET order fills at the open of the bar holding the server clock (the
kernel's "next open"); resting orders are matched by :meth:`Book.settle_bar` against a bar's open/high/low with
the kernel's rules (stop legs before the others, so SL wins inside a bar; gaps fill at the open).

As on Binance spot:

* a client order id (or list client id) is refused with ``-2010 Duplicate order sent.`` only while an order
  (or list) carrying it is open: the id of a filled market order can be sent again, and trades again;
* commission (``fee_rate`` of the notional) is paid in the asset received (base on a buy, quote on a sell),
  or in the quote asset, or in BNB at ``BNB_PRICE`` while the account holds enough BNB (``commission``);
* a stop that would trigger at once is refused (``-2010 Stop price would trigger immediately.``).

Faults a test arms: ``liquidity`` (the next market fills - MARKET orders and triggered stops - fill only a
fraction and end ``EXPIRED`` or ``EXPIRED_IN_MATCH``), ``shift_after_fill`` (the price moves within the bar
right after the next MARKET fill, before a protection order can be placed), and ``lag_reads`` (orders, trades
and balance changes are seen only after that many further reads: Binance reads "memory, then database").
"""

from __future__ import annotations

import itertools
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np

from support.binance_orders import (
    E8,
    LIMIT_TYPES,
    ORDER_TYPES,
    STOP_TYPES,
    TAKE_PROFIT_TYPES,
    BinanceError,
    Order,
    OrderList,
    fmt,
    missing,
    trigger,
    triggered,
)
from support.binance_reads import OPEN, AccountReads
from support.binance_server import MARKETS, MINUTE_MS, Series

BNB_PRICE = Decimal("600")


class Book(AccountReads):
    """Balances, orders and trades of one spot account; not thread-safe (the server holds a lock)."""

    def __init__(
        self,
        series: dict[str, Series],
        balances: dict[str, Decimal],
        fee_rate: Decimal,
        commission: str = "received",
    ) -> None:
        if commission not in ("received", "quote", "BNB"):
            raise ValueError(f"commission must be received, quote or BNB; got {commission!r}")
        self._series = series
        self.balances = {asset: [amount, Decimal(0)] for asset, amount in balances.items()}  # free, locked
        self.fee_rate = fee_rate
        self.commission = commission
        self.orders: list[Order] = []
        self.lists: list[OrderList] = []
        self.trades: list[dict[str, Any]] = []
        self.liquidity: list[tuple[Decimal, str]] = []
        self.shift_after_fill: Decimal | None = None
        self.lag_reads = 0
        self._shift: tuple[int, Decimal] | None = None
        self._reads = 0
        self._seen_from: dict[tuple[str, int], int] = {}
        self._shown_balances: dict[str, list[Decimal]] | None = None
        self._balances_seen_from = 0
        self._ids = itertools.count(1)

    # --- prices -------------------------------------------------------------------------------------------

    def bar(self, symbol: str, now_ms: int) -> tuple[int, Decimal, Decimal, Decimal]:
        """Return ``(open time, open, high, low)`` of the 1m bar holding ``now_ms``."""
        series = self._series[symbol]
        i = int(np.searchsorted(series.open_ms, now_ms, side="right")) - 1
        if i < 0:
            raise BinanceError(400, -1013, "No trading window could be found for the symbol.")
        o, h, lo = (Decimal(f"{v:.8f}") for v in series.ohlcv[i, :3])
        return int(series.open_ms[i]), o, h, lo

    def price_now(self, symbol: str, now_ms: int) -> Decimal:
        """Return the price a market order gets now: the bar's open, moved if ``shift_after_fill`` fired."""
        open_ms, o, _, _ = self.bar(symbol, now_ms)
        if self._shift is not None and self._shift[0] == open_ms:
            return (o * self._shift[1]).quantize(Decimal("0.01"))
        return o

    # --- orders -------------------------------------------------------------------------------------------

    def new_order(self, p: dict[str, str], now_ms: int) -> dict[str, Any]:
        """Handle ``POST /api/v3/order``: a MARKET order fills now, the other types rest."""
        symbol, side, kind = self._common(p)
        if kind not in ORDER_TYPES:
            raise BinanceError(400, -1116, "Invalid orderType.")
        client_id = p.get("newClientOrderId") or f"web_{next(self._ids)}"
        self._claim(client_id)
        price_now = self.price_now(symbol, now_ms)
        if kind == "MARKET" and "quantity" not in p and "quoteOrderQty" in p:
            qty = self._step_down(symbol, _dec(p, "quoteOrderQty") / price_now)
        else:
            qty = _dec(p, "quantity")
        price = (
            _dec(p, "price") if kind in (*LIMIT_TYPES, "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") else Decimal(0)
        )
        stop = _dec(p, "stopPrice") if kind in (*STOP_TYPES, *TAKE_PROFIT_TYPES) else Decimal(0)
        order = Order(
            next(self._ids), -1, client_id, symbol, side, kind, qty, price, stop, now_ms, _strategy(p, "")
        )
        self._check_filters(order, price_now)
        if kind != "MARKET":
            self._refuse_marketable(order, price_now)
        self._before_change()
        self._lock(order, price_now)
        self.orders.append(order)
        self._created("order", order.order_id)
        if kind == "MARKET":
            self._fill(order, price_now, now_ms, split=True)
            if self.shift_after_fill is not None:
                self._shift = (self.bar(symbol, now_ms)[0], self.shift_after_fill)
                self.shift_after_fill = None
        reply = {**order.report(), "transactTime": now_ms}
        reply["fills"] = [
            {
                "price": t["price"],
                "qty": t["qty"],
                "commission": t["commission"],
                "commissionAsset": t["commissionAsset"],
                "tradeId": t["id"],
            }
            for t in self.trades
            if t["orderId"] == order.order_id
        ]
        return reply

    def new_oco(self, p: dict[str, str], now_ms: int) -> dict[str, Any]:
        """Handle ``POST /api/v3/orderList/oco``: an above and a below leg sharing one quantity."""
        symbol, side, _ = self._common(p, need_type=False)
        qty = _dec(p, "quantity")
        list_client_id = p.get("listClientOrderId") or f"list_{next(self._ids)}"
        legs = []
        for leg in ("above", "below"):
            kind = p.get(f"{leg}Type") or ""
            if kind not in (*LIMIT_TYPES[1:], *STOP_TYPES, *TAKE_PROFIT_TYPES):
                raise missing(f"{leg}Type")
            price = _dec(p, f"{leg}Price") if kind.endswith("LIMIT") or kind == "LIMIT_MAKER" else Decimal(0)
            stop = _dec(p, f"{leg}StopPrice") if kind != "LIMIT_MAKER" else Decimal(0)
            client_id = p.get(f"{leg}ClientOrderId") or f"leg_{next(self._ids)}"
            legs.append(
                Order(0, 0, client_id, symbol, side, kind, qty, price, stop, now_ms, _strategy(p, leg))
            )
        for client_id in (list_client_id, *(leg.client_id for leg in legs)):
            self._claim(client_id)
        above, below = legs
        if trigger(above) <= trigger(below):
            raise BinanceError(400, -1013, "The relationship of the prices for the orders is not correct.")
        price_now = self.price_now(symbol, now_ms)
        for leg in legs:
            self._check_filters(leg, price_now)
            self._refuse_marketable(leg, price_now)
        self._before_change()
        self._lock(above, price_now)
        order_list = OrderList(next(self._ids), list_client_id, symbol, legs, now_ms)
        for leg in legs:
            leg.order_id, leg.list_id = next(self._ids), order_list.list_id
            self._created("order", leg.order_id)
        self.orders.extend(legs)
        self.lists.append(order_list)
        return order_list.report(reports=True)

    def cancel_order(self, p: dict[str, str], now_ms: int) -> dict[str, Any]:
        """Handle ``DELETE /api/v3/order``; cancelling one OCO leg cancels the whole list, as on Binance."""
        try:
            order = self.find(p, reading=False)
        except BinanceError as e:
            raise BinanceError(400, -2011, "Unknown order sent.") if e.code == -2013 else e from None
        if order.status not in OPEN:
            raise BinanceError(400, -2011, "Unknown order sent.")
        self._before_change()
        self._cancel(order, now_ms)
        return {**order.report(), "origClientOrderId": order.client_id, "transactTime": now_ms}

    def cancel_list(self, p: dict[str, str], now_ms: int) -> dict[str, Any]:
        """Handle ``DELETE /api/v3/orderList`` by ``orderListId`` or ``listClientOrderId``."""
        symbol = self._symbol(p)
        for order_list in self.lists:
            if order_list.symbol == symbol and (
                str(order_list.list_id) == p.get("orderListId")
                or order_list.client_id == p.get("listClientOrderId")
            ):
                if order_list.status != "EXECUTING":
                    break
                self._before_change()
                self._cancel(order_list.legs[0], now_ms)
                return order_list.report(reports=True)
        raise BinanceError(400, -2011, "Unknown order sent.")

    # --- matching ------------------------------------------------------------------------------------------

    def settle_bar(self, symbol: str, now_ms: int) -> None:
        """Match resting orders against the bar holding ``now_ms``: stop legs first, gaps fill at the open."""
        open_ms, o, h, lo = self.bar(symbol, now_ms)
        fill_ms = open_ms + MINUTE_MS // 2
        resting = [x for x in self.orders if x.symbol == symbol and x.status == "NEW"]
        resting.sort(key=lambda x: (x.type not in STOP_TYPES, x.order_id))
        for order in resting:
            if order.status != "NEW":  # its OCO sibling filled earlier in this loop
                continue
            price = triggered(order, o, h, lo)
            if price is None:
                continue
            self._before_change()
            self._fill(order, price, fill_ms, split=False)
            if order.list_id >= 0:
                order_list = next(lst for lst in self.lists if lst.list_id == order.list_id)
                order_list.status = "ALL_DONE"
                for leg in order_list.legs:
                    if leg.status == "NEW":
                        leg.status, leg.updated_ms = "EXPIRED", fill_ms

    def _fill(self, order: Order, price: Decimal, at_ms: int, *, split: bool) -> None:
        """Fill ``order`` at ``price`` (in two trades when ``split``), or the part ``liquidity`` allows."""
        self._release(self._family(order))
        final, total = "FILLED", order.qty
        if order.type not in LIMIT_TYPES and self.liquidity:
            fraction, final = self.liquidity.pop(0)
            total = self._step_down(order.symbol, order.qty * fraction)
        parts = [total] if total > 0 else []
        first = self._step_down(order.symbol, total * Decimal("0.6"))
        if split and Decimal(0) < first < total:
            parts = [first, total - first]
        for qty in parts:
            self._trade(order, qty, price, at_ms)
        order.status, order.updated_ms = final, at_ms

    def _trade(self, order: Order, qty: Decimal, price: Decimal, at_ms: int) -> None:
        base, quote = MARKETS[order.symbol][:2]
        notional = (qty * price).quantize(E8)
        received = base if order.side == "BUY" else quote
        asset = {"received": received, "quote": quote, "BNB": "BNB"}[self.commission]
        commission = ((qty if asset == base else notional) * self.fee_rate).quantize(E8)
        if asset == "BNB":
            commission = (notional * self.fee_rate / BNB_PRICE).quantize(E8)
            if self.balances.get("BNB", [Decimal(0)])[0] < commission:  # no BNB left: the asset received
                asset = received
                commission = ((qty if asset == base else notional) * self.fee_rate).quantize(E8)
        if order.side == "BUY":
            self._credit(quote, -notional)
            self._credit(base, qty)
        else:
            self._credit(base, -qty)
            self._credit(quote, notional)
        self._credit(asset, -commission)
        trade_id = len(self.trades) + 1
        self.trades.append(
            {
                "symbol": order.symbol,
                "id": trade_id,
                "orderId": order.order_id,
                "orderListId": order.list_id,
                "price": fmt(price),
                "qty": fmt(qty),
                "quoteQty": fmt(notional),
                "commission": fmt(commission),
                "commissionAsset": asset,
                "time": at_ms,
                "isBuyer": order.side == "BUY",
                "isMaker": order.type in LIMIT_TYPES,
                "isBestMatch": True,
            }
        )
        self._created("trade", trade_id)
        order.executed += qty
        order.quote += notional

    # --- balances ------------------------------------------------------------------------------------------

    def _lock(self, order: Order, price_now: Decimal) -> None:
        """Check the balance an order needs and, unless it fills now, move it from free to locked."""
        base, quote = MARKETS[order.symbol][:2]
        if order.side == "SELL":
            asset, amount = base, order.qty
        else:
            asset, amount = quote, (order.qty * (order.price or order.stop or price_now)).quantize(E8)
        free, locked = self.balances.setdefault(asset, [Decimal(0), Decimal(0)])
        if free < amount:
            raise BinanceError(400, -2010, "Account has insufficient balance for requested action.")
        if order.type != "MARKET":
            self.balances[asset] = [free - amount, locked + amount]
            order.reserved = (asset, amount)

    def _release(self, orders: list[Order]) -> None:
        for order in orders:
            if order.reserved is not None:
                asset, amount = order.reserved
                free, locked = self.balances[asset]
                self.balances[asset] = [free + amount, locked - amount]
                order.reserved = None

    def _credit(self, asset: str, amount: Decimal) -> None:
        self.balances.setdefault(asset, [Decimal(0), Decimal(0)])[0] += amount

    def _family(self, order: Order) -> list[Order]:
        """Return the order with its OCO sibling (the list locked its quantity once, on one leg)."""
        if order.list_id < 0:
            return [order]
        return next(lst.legs for lst in self.lists if lst.list_id == order.list_id)

    def _cancel(self, order: Order, now_ms: int) -> None:
        for each in self._family(order):
            each.status, each.updated_ms = "CANCELED", now_ms
        self._release(self._family(order))
        for order_list in self.lists:
            if order_list.list_id == order.list_id:
                order_list.status = "ALL_DONE"

    # --- validation ----------------------------------------------------------------------------------------

    def _common(self, p: dict[str, str], need_type: bool = True) -> tuple[str, str, str]:
        symbol = self._symbol(p)
        side = p.get("side", "")
        if side not in ("BUY", "SELL"):
            raise missing("side") if not side else BinanceError(400, -1117, "Invalid side.")
        kind = p.get("type", "")
        if need_type and not kind:
            raise missing("type")
        return symbol, side, kind

    def _claim(self, client_id: str) -> None:
        held = any(o.client_id == client_id and o.status in OPEN for o in self.orders) or any(
            lst.client_id == client_id and lst.status == "EXECUTING" for lst in self.lists
        )
        if held:
            raise BinanceError(400, -2010, "Duplicate order sent.")

    def _step_down(self, symbol: str, qty: Decimal) -> Decimal:
        step = Decimal(MARKETS[symbol][3])
        return (qty / step).to_integral_value(rounding=ROUND_DOWN) * step

    def _check_filters(self, order: Order, price_now: Decimal) -> None:
        tick, step = (Decimal(v) for v in MARKETS[order.symbol][2:4])
        if order.qty <= 0 or order.qty % step or order.qty < step:
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        if any(p % tick for p in (order.price, order.stop)):
            raise BinanceError(400, -1013, "Filter failure: PRICE_FILTER")
        if order.qty * (order.price or order.stop or price_now) < Decimal(5):
            raise BinanceError(400, -1013, "Filter failure: NOTIONAL")

    def _refuse_marketable(self, order: Order, price_now: Decimal) -> None:
        if triggered(order, price_now, price_now, price_now) is None:
            return
        if order.type == "LIMIT":
            return  # a marketable LIMIT simply fills at the next settle
        message = (
            "Order would immediately match and take."
            if order.type == "LIMIT_MAKER"
            else "Stop price would trigger immediately."
        )
        raise BinanceError(400, -2010, message)


def _dec(p: dict[str, str], name: str) -> Decimal:
    if not p.get(name):
        raise missing(name)
    try:
        return Decimal(p[name])
    except ArithmeticError:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def _strategy(p: dict[str, str], leg: str) -> dict[str, int]:
    keys = [
        ("strategyId", f"{leg}StrategyId" if leg else "strategyId"),
        ("strategyType", f"{leg}StrategyType" if leg else "strategyType"),
    ]
    values = {name: int(p[key]) for name, key in keys if p.get(key)}
    if values.get("strategyType", 1_000_000) < 1_000_000:
        raise BinanceError(400, -1134, "strategyType was less than 1000000.")
    return values
