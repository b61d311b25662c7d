"""The Binance USDⓈ-M account of the test double: one one-way position, leverage and margin type per symbol,
market orders with reduce-only rules, conditional orders on the Algo Service, funding and liquidation, after
Binance's derivatives documentation (USDⓈ-M futures REST API, the Algo Service since December 2025).

Symbol ``BTCUSDT`` (``PERPETUAL``): tick 0.10 USDT, step and minimum 0.001 BTC, minimum notional 100 USDT
(``MIN_NOTIONAL``, not for reduce-only orders). Quantities are BTC. One USDT wallet (``balance``), one-way mode
(``dualSidePosition=false``; hedge mode can be set to test the broker's refusal).

* ``POST /fapi/v1/leverage`` (1..125) and ``POST /fapi/v1/marginType`` (``ISOLATED``/``CROSSED``; the same type
  again is ``-4046`` "No need to change margin type.", another with a position open ``-4048``);
  ``GET /fapi/v1/symbolConfig`` reads both back.
* ``POST /fapi/v1/order``: ``MARKET`` only (conditional types are ``-4120`` ``STOP_ORDER_SWITCH_ALGO``: they live
  on the Algo Service), ``positionSide`` ``BOTH`` or absent. Without ``reduceOnly`` it opens or adds and must be
  covered by free margin (notional / leverage + fee, ``-2019``) and be at least 100 USDT (``-4164``). With
  ``reduceOnly=true`` it may only reduce: no position, the same direction, or more than the position is
  ``-2022`` "ReduceOnly Order is rejected." A reduce-only order never opens a position. Fills at the last price
  (the bar's open, moved by ``shift_after_fill``), taker fee ``fee_rate`` of the notional, in USDT.
  ``newClientOrderId`` is refused (``-4116``) only while an open order holds it (a filled market order's id can
  be sent again: only the broker's look-up prevents a second entry); unknown orders are ``-2013``.
* ``POST /fapi/v1/algoOrder`` (``algoType=CONDITIONAL``, ``STOP_MARKET`` / ``TAKE_PROFIT_MARKET``,
  ``triggerPrice``, ``quantity`` with ``reduceOnly`` or ``closePosition``, ``clientAlgoId``): a stop already
  crossed by the last price is ``-2021`` "Order would immediately trigger."; no margin check until it triggers.
  ``DELETE /fapi/v1/algoOrder``, ``GET /fapi/v1/openAlgoOrders``, ``GET /fapi/v1/algoOrder``,
  ``GET /fapi/v1/allAlgoOrders`` (by ``algoId`` or ``clientAlgoId``).
* :meth:`UsdmBook.settle_funding` runs as a bar opens: at a funding time the position pays
  ``positionAmt x open x rate`` (an income row ``FUNDING_FEE`` of minus that), before any order of the bar.
  :meth:`UsdmBook.settle_bar` runs as the bar closes: a position whose liquidation price the bar reaches before
  its stop is liquidated (an order ``autoclose-...`` at the liquidation price, the isolated margin lost); then
  conditional orders trigger, stops first (a gap fills at the open): the triggered order is a reduce-only
  market order (``actualOrderId``): reduce-only (or ``closePosition``) with nothing left to reduce it is
  rejected and the algo ends ``FINISHED`` with nothing executed; without either it opens or adds, as any market
  order does.
* Isolated liquidation price: long ``entry x (1 - 1/leverage + mmr)``, short ``entry x (1 + 1/leverage - mmr)``,
  ``mmr`` 0.4 % (Binance's first bracket for BTCUSDT).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from support.binance_orders import BinanceError, missing
from support.binance_server import MINUTE_MS, Series

SYMBOL = "BTCUSDT"
TICK, STEP, MIN_NOTIONAL = Decimal("0.1"), Decimal("0.001"), Decimal(100)
MMR = Decimal("0.004")
E8 = Decimal("0.00000001")
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
CONDITIONAL = ("STOP_MARKET", "TAKE_PROFIT_MARKET")


def fmt(value: Decimal) -> str:
    """Return ``value`` as Binance writes decimals (no exponent, trailing zeros dropped)."""
    text = f"{value.quantize(E8):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _dec(p: Mapping[str, Any], name: str) -> Decimal:
    value = p.get(name)
    if value in (None, ""):
        raise missing(name)
    return Decimal(str(value))


@dataclass(slots=True)
class UsdmOrder:
    order_id: int
    client_id: str
    side: str
    qty: Decimal
    reduce_only: bool
    time: int
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    pnl: Decimal = Decimal(0)
    update_time: int = 0
    orig_type: str = "MARKET"

    def report(self) -> dict[str, Any]:
        """Return the order as ``GET /fapi/v1/order`` and ``allOrders`` answer it."""
        return {"orderId": self.order_id, "symbol": SYMBOL, "status": self.status, "clientOrderId": self.client_id,
                "price": "0", "avgPrice": fmt(self.avg_price), "origQty": fmt(self.qty),
                "executedQty": fmt(self.executed), "cumQty": fmt(self.executed),
                "cumQuote": fmt(self.executed * self.avg_price), "timeInForce": "GTC", "type": "MARKET",
                "reduceOnly": self.reduce_only, "closePosition": False, "side": self.side, "positionSide": "BOTH",
                "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": self.orig_type,
                "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
                "time": self.time, "updateTime": self.update_time or self.time}  # fmt: skip


@dataclass(slots=True)
class AlgoOrder:
    algo_id: int
    client_algo_id: str
    order_type: str
    side: str
    qty: Decimal
    trigger: Decimal
    reduce_only: bool
    close_position: bool
    create_time: int
    status: str = "NEW"
    update_time: int = 0
    trigger_time: int = 0
    actual_order_id: str = ""

    def report(self) -> dict[str, Any]:
        """Return the algo order as ``POST/GET /fapi/v1/algoOrder`` and ``openAlgoOrders`` answer it."""
        return {"algoId": self.algo_id, "clientAlgoId": self.client_algo_id, "algoType": "CONDITIONAL",
                "orderType": self.order_type, "symbol": SYMBOL, "side": self.side, "positionSide": "BOTH",
                "timeInForce": "GTC", "quantity": fmt(self.qty), "algoStatus": self.status,
                "actualOrderId": self.actual_order_id, "actualPrice": "0", "triggerPrice": fmt(self.trigger),
                "price": "0", "icebergQuantity": None, "tpTriggerPrice": "0", "tpPrice": "0",
                "slTriggerPrice": "0", "slPrice": "0", "tpOrderType": "", "selfTradePreventionMode": "EXPIRE_MAKER",
                "workingType": "CONTRACT_PRICE", "priceMatch": "NONE", "closePosition": self.close_position,
                "priceProtect": False, "reduceOnly": self.reduce_only, "createTime": self.create_time,
                "updateTime": self.update_time or self.create_time, "triggerTime": self.trigger_time,
                "goodTillDate": 0}  # fmt: skip


@dataclass(slots=True)
class UsdmPosition:
    amount: Decimal  # BTC, signed (one-way mode)
    entry: Decimal
    margin: Decimal
    leverage: int
    margin_type: str
    update_time: int

    @property
    def side(self) -> int:
        return 1 if self.amount > 0 else -1

    @property
    def liquidation(self) -> Decimal:
        factor = 1 - self.side * (Decimal(1) / self.leverage - MMR)
        return (self.entry * factor).quantize(TICK, ROUND_HALF_EVEN)


class UsdmBook:
    """One Binance USDⓈ-M account over the bars of ``series["BTCUSDT"]``; ``funding`` maps times (ms) to rates."""

    def __init__(
        self,
        series: Mapping[str, Series],
        *,
        cash: Decimal = Decimal(10_000),
        fee_rate: Decimal = Decimal("0.0005"),
        leverage: int = 20,
        funding: Mapping[int, Decimal] | None = None,
        next_id: Callable[[], int],
    ) -> None:
        self._series = series["BTCUSDT"]
        self.cash = cash
        self.fee_rate = fee_rate
        self.dual_side = False
        self.leverage = leverage
        self.margin_type = "CROSSED"  # Binance's default for a new symbol
        self.funding = dict(funding or {})
        self.position: UsdmPosition | None = None
        self.orders: list[UsdmOrder] = []
        self.algos: list[AlgoOrder] = []
        self.trades: list[dict[str, Any]] = []
        self.income: list[dict[str, Any]] = []
        self.liquidations: list[tuple[int, Decimal]] = []
        self.shift_after_fill: Decimal | None = None
        self._shift: tuple[int, Decimal] | None = None
        self._next_id = next_id
        self._funded: set[int] = set()

    # --- prices ----------------------------------------------------------------------------------------------

    def bar(self, now_ms: int) -> tuple[int, Decimal, Decimal, Decimal]:
        """Return ``(open time, open, high, low)`` of the 1m bar holding ``now_ms``."""
        i = int(np.searchsorted(self._series.open_ms, now_ms, side="right")) - 1
        o, h, lo = (Decimal(f"{v:.8f}").normalize() for v in self._series.ohlcv[i, :3])
        return int(self._series.open_ms[i]), o, h, lo

    def last(self, now_ms: int) -> Decimal:
        open_ms, o, _, _ = self.bar(now_ms)
        if self._shift is not None and self._shift[0] == open_ms:
            return (o * self._shift[1]).quantize(TICK)
        return o

    # --- settings --------------------------------------------------------------------------------------------

    def _symbol(self, p: Mapping[str, Any]) -> None:
        if p.get("symbol") in (None, ""):
            raise missing("symbol")
        if p.get("symbol") != SYMBOL:
            raise BinanceError(400, -1121, "Invalid symbol.")

    def position_mode(self) -> dict[str, Any]:
        """``GET /fapi/v1/positionSide/dual``."""
        return {"dualSidePosition": self.dual_side}

    def set_leverage(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /fapi/v1/leverage``."""
        self._symbol(p)
        leverage = int(_dec(p, "leverage"))
        if not 1 <= leverage <= 125:
            raise BinanceError(400, -4028, f"Leverage {leverage} is not valid")
        self.leverage = leverage
        return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": SYMBOL}

    def set_margin_type(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /fapi/v1/marginType``."""
        self._symbol(p)
        kind = str(p.get("marginType") or "").upper()
        if kind not in ("ISOLATED", "CROSSED"):
            raise BinanceError(400, -1116, "Invalid marginType.")
        if kind == self.margin_type:
            raise BinanceError(400, -4046, "No need to change margin type.")
        if self.position is not None:
            raise BinanceError(400, -4048, "Margin type cannot be changed if there exists position.")
        self.margin_type = kind
        return {"code": 200, "msg": "success"}

    def symbol_config(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /fapi/v1/symbolConfig``."""
        if p.get("symbol") not in (None, SYMBOL):
            raise BinanceError(400, -1121, "Invalid symbol.")
        return [{"symbol": SYMBOL, "marginType": self.margin_type, "isAutoAddMargin": "false",
                 "leverage": self.leverage, "maxNotionalValue": "1000000"}]  # fmt: skip

    # --- reads -----------------------------------------------------------------------------------------------

    def position_risk(self, p: Mapping[str, Any], now_ms: int) -> list[dict[str, Any]]:
        """``GET /fapi/v3/positionRisk``: only a symbol with a position (v3 leaves the others out)."""
        held = self.position
        if held is None or p.get("symbol") not in (None, SYMBOL):
            return []
        last = self.last(now_ms)
        upl = (last - held.entry) * held.amount
        notional = held.amount * last
        isolated = held.margin_type == "ISOLATED"
        return [{"symbol": SYMBOL, "positionSide": "BOTH", "positionAmt": fmt(held.amount),
                 "entryPrice": fmt(held.entry), "breakEvenPrice": fmt(held.entry), "markPrice": fmt(last),
                 "unRealizedProfit": fmt(upl), "liquidationPrice": fmt(held.liquidation),
                 "isolatedMargin": fmt(held.margin + upl) if isolated else "0", "notional": fmt(notional),
                 "marginAsset": "USDT", "isolatedWallet": fmt(held.margin) if isolated else "0",
                 "initialMargin": fmt(abs(notional) / held.leverage), "maintMargin": fmt(abs(notional) * MMR),
                 "positionInitialMargin": fmt(abs(notional) / held.leverage), "openOrderInitialMargin": "0",
                 "adl": 1, "bidNotional": "0", "askNotional": "0", "updateTime": held.update_time}]  # fmt: skip

    def balance(self, now_ms: int) -> list[dict[str, Any]]:
        """``GET /fapi/v3/balance``: the USDT wallet (``balance``) and the position's unrealised PnL."""
        held = self.position
        upl = Decimal(0) if held is None else (self.last(now_ms) - held.entry) * held.amount
        used = Decimal(0) if held is None else held.margin
        return [{"accountAlias": "SgsR", "asset": "USDT", "balance": fmt(self.cash),
                 "crossWalletBalance": fmt(self.cash - used), "crossUnPnl": "0",
                 "availableBalance": fmt(self.cash - used + min(upl, Decimal(0))),
                 "maxWithdrawAmount": fmt(self.cash - used), "marginAvailable": True,
                 "updateTime": now_ms}]  # fmt: skip

    def find(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``GET /fapi/v1/order`` by ``orderId`` or ``origClientOrderId``."""
        self._symbol(p)
        for order in reversed(self.orders):
            if str(order.order_id) == p.get("orderId") or order.client_id == p.get("origClientOrderId"):
                return order.report()
        raise BinanceError(400, -2013, "Order does not exist.")

    def all_orders(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /fapi/v1/allOrders``: the newest ``limit`` (default 500, at most 1000), oldest first."""
        self._symbol(p)
        return [o.report() for o in self.orders[-_limit(p, 500, 1000) :]]

    def user_trades(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /fapi/v1/userTrades``: the newest ``limit`` (default 500, at most 1000), oldest first."""
        self._symbol(p)
        return list(self.trades[-_limit(p, 500, 1000) :])

    def income_history(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /fapi/v1/income`` (``incomeType``): the newest ``limit`` (default 100, at most 1000)."""
        rows = [r for r in self.income if p.get("incomeType") in (None, r["incomeType"])]
        return rows[-_limit(p, 100, 1000) :]

    # --- orders ----------------------------------------------------------------------------------------------

    def new_order(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """``POST /fapi/v1/order``: a market order, reduce-only or opening."""
        self._symbol(p)
        kind = str(p.get("type") or "")
        if kind in (*CONDITIONAL, "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET"):
            raise BinanceError(400, -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.")  # fmt: skip
        if kind != "MARKET":
            raise BinanceError(400, -1116, "Invalid orderType.")
        side = str(p.get("side") or "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        if p.get("positionSide") not in (None, "BOTH") or self.dual_side:
            raise BinanceError(400, -4061, "Order's position side does not match user's setting.")
        client_id = str(p.get("newClientOrderId") or f"web_{self._next_id()}")
        if not _CLIENT_ID.match(client_id):
            raise BinanceError(400, -4015, "Client order id is not valid.")
        if any(
            o.client_id == client_id and o.status == "NEW" for o in self.orders
        ):  # unique among open orders
            raise BinanceError(400, -4116, "ClientOrderId is duplicated.")
        qty = _dec(p, "quantity")
        if qty % STEP != 0:
            raise BinanceError(400, -1111, "Precision is over the maximum defined for this asset.")
        if qty < STEP:
            raise BinanceError(400, -4004, "Quantity less than min quantity.")
        reduce_only = str(p.get("reduceOnly", "false")).lower() == "true"
        direction = 1 if side == "BUY" else -1
        held = self.position
        price = self.last(now_ms)
        if reduce_only:
            if held is None or held.side == direction or qty > abs(held.amount):
                raise BinanceError(400, -2022, "ReduceOnly Order is rejected.")
        else:
            if held is not None and held.side != direction:
                raise BinanceError(400, -1116, "this double opens no reversal in one order")
            if qty * price < MIN_NOTIONAL:
                raise BinanceError(400, -4164, "Order's notional must be no smaller than 100 (unless you choose reduce only).")  # fmt: skip
            used = Decimal(0) if held is None else held.margin
            if self.cash - used < qty * price / self.leverage + qty * price * self.fee_rate:
                raise BinanceError(400, -2019, "Margin is insufficient.")
        order = UsdmOrder(self._next_id(), client_id, side, qty, reduce_only, now_ms)
        self.orders.append(order)
        self._fill(order, price, now_ms)
        if not reduce_only and self.shift_after_fill is not None:
            self._shift = (self.bar(now_ms)[0], self.shift_after_fill)
            self.shift_after_fill = None
        return order.report()

    def _fill(self, order: UsdmOrder, price: Decimal, now_ms: int) -> None:
        direction = 1 if order.side == "BUY" else -1
        qty = order.qty
        fee = (qty * price * self.fee_rate).quantize(E8)
        held = self.position
        pnl = Decimal(0)
        if held is None:
            margin = qty * price / self.leverage
            self.position = UsdmPosition(
                direction * qty, price, margin, self.leverage, self.margin_type, now_ms
            )
        elif held.side == direction:
            total = abs(held.amount) + qty
            held.entry = (held.entry * abs(held.amount) + price * qty) / total
            held.amount += direction * qty
            held.margin += qty * price / held.leverage
            held.update_time = now_ms
        else:
            pnl = ((price - held.entry) * held.side * qty).quantize(E8)
            held.margin -= held.margin * qty / abs(held.amount)
            held.amount += direction * qty
            held.update_time = now_ms
            if held.amount == 0:
                self.position = None
        self.cash += pnl - fee
        order.executed, order.avg_price, order.fee, order.pnl = qty, price, fee, pnl
        order.status, order.update_time = "FILLED", now_ms
        self.trades.append({"buyer": order.side == "BUY", "commission": fmt(fee), "commissionAsset": "USDT",
                            "id": self._next_id(), "maker": False, "orderId": order.order_id, "price": fmt(price),
                            "qty": fmt(qty), "quoteQty": fmt(qty * price), "realizedPnl": fmt(pnl),
                            "side": order.side, "positionSide": "BOTH", "symbol": SYMBOL,
                            "time": now_ms})  # fmt: skip

    # --- the Algo Service ------------------------------------------------------------------------------------

    def new_algo(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """``POST /fapi/v1/algoOrder``: a conditional ``STOP_MARKET`` / ``TAKE_PROFIT_MARKET``."""
        self._symbol(p)
        if p.get("algoType") != "CONDITIONAL":
            raise BinanceError(400, -1116, "Invalid algoType.")
        kind, side = str(p.get("type") or ""), str(p.get("side") or "")
        if kind not in CONDITIONAL:
            raise BinanceError(400, -1116, "Invalid orderType.")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        if p.get("positionSide") not in (None, "BOTH") or self.dual_side:
            raise BinanceError(400, -4061, "Order's position side does not match user's setting.")
        client_id = str(p.get("clientAlgoId") or f"algo_{self._next_id()}")
        if not _CLIENT_ID.match(client_id):
            raise BinanceError(400, -4015, "Client order id is not valid.")
        if any(a.client_algo_id == client_id and a.status == "NEW" for a in self.algos):
            raise BinanceError(400, -4116, "ClientOrderId is duplicated.")
        trigger = _dec(p, "triggerPrice")
        if trigger % TICK != 0:
            raise BinanceError(400, -1111, "Precision is over the maximum defined for this asset.")
        close_position = str(p.get("closePosition", "false")).lower() == "true"
        reduce_only = str(p.get("reduceOnly", "false")).lower() == "true"
        if close_position and (reduce_only or p.get("quantity")):
            raise BinanceError(400, -1106, "Parameter 'quantity' sent when not required.")
        qty = Decimal(0) if close_position else _dec(p, "quantity")
        if not close_position and (qty % STEP != 0 or qty < STEP):
            raise BinanceError(400, -1111, "Precision is over the maximum defined for this asset.")
        last = self.last(now_ms)
        rises = (kind == "STOP_MARKET") == (side == "BUY")  # a buy stop / a sell take profit waits for a rise
        if (rises and trigger <= last) or (not rises and trigger >= last):
            raise BinanceError(400, -2021, "Order would immediately trigger.")
        algo = AlgoOrder(
            self._next_id(), client_id, kind, side, qty, trigger, reduce_only, close_position, now_ms
        )
        self.algos.append(algo)
        return algo.report()

    def _algo(self, p: Mapping[str, Any]) -> AlgoOrder:
        for algo in self.algos:
            if str(algo.algo_id) == p.get("algoId") or (
                p.get("clientAlgoId") and algo.client_algo_id == p.get("clientAlgoId")
            ):
                return algo
        raise BinanceError(400, -2013, "Order does not exist.")

    def cancel_algo(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """``DELETE /fapi/v1/algoOrder`` by ``algoId`` or ``clientAlgoId``."""
        if not p.get("algoId") and not p.get("clientAlgoId"):
            raise missing("algoId")
        algo = self._algo(p)
        if algo.status != "NEW":
            raise BinanceError(400, -2011, "Unknown order sent.")
        algo.status, algo.update_time = "CANCELED", now_ms
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}

    def query_algo(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``GET /fapi/v1/algoOrder`` by ``algoId`` or ``clientAlgoId``."""
        if not p.get("algoId") and not p.get("clientAlgoId"):
            raise missing("algoId")
        return self._algo(p).report()

    def open_algos(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /fapi/v1/openAlgoOrders``."""
        if p.get("symbol") not in (None, SYMBOL):
            raise BinanceError(400, -1121, "Invalid symbol.")
        return [a.report() for a in self.algos if a.status == "NEW"]

    def all_algos(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /fapi/v1/allAlgoOrders``: the newest ``limit`` (default 500, at most 1000), oldest first."""
        self._symbol(p)
        return [a.report() for a in self.algos[-_limit(p, 500, 1000) :]]

    # --- the bar passing -------------------------------------------------------------------------------------

    def settle_funding(self, now_ms: int) -> None:
        """Settle funding when the bar holding ``now_ms`` opens at a funding time (before any order in it)."""
        open_ms, o, _, _ = self.bar(now_ms)
        held, rate = self.position, self.funding.get(open_ms)
        if open_ms in self._funded or held is None or rate is None:
            return
        self._funded.add(open_ms)
        paid = (held.amount * o * rate).quantize(E8)
        self.cash -= paid
        self.income.append({"symbol": SYMBOL, "incomeType": "FUNDING_FEE", "income": fmt(-paid), "asset": "USDT",
                            "info": "FUNDING_FEE", "time": open_ms, "tranId": self._next_id(),
                            "tradeId": ""})  # fmt: skip

    def settle_bar(self, now_ms: int) -> None:
        """Liquidation, then conditional orders (stops first, gaps at the open), for the bar holding ``now_ms``."""
        open_ms, o, h, lo = self.bar(now_ms)
        live = sorted(
            (a for a in self.algos if a.status == "NEW"), key=lambda a: a.order_type != "STOP_MARKET"
        )
        held = self.position
        if held is not None:
            stops = [
                a.trigger
                for a in live
                if a.order_type == "STOP_MARKET" and (a.side == "BUY") != (held.side > 0)
            ]
            liq = held.liquidation
            reached = lo <= liq if held.side > 0 else h >= liq
            stop_first = any((s - liq) * held.side > 0 for s in stops)
            if reached and not stop_first:
                self._liquidate(open_ms, o, liq)
        for algo in live:
            hit = _trigger(algo, o, h, lo)
            if hit is None:
                continue
            fill_ms = open_ms + MINUTE_MS // 2
            algo.status, algo.trigger_time, algo.update_time = "FINISHED", fill_ms, fill_ms
            held = self.position
            direction = 1 if algo.side == "BUY" else -1
            reducing = algo.reduce_only or algo.close_position
            if reducing and (held is None or held.side == direction):
                continue  # the triggered reduce-only order is rejected: nothing to reduce, nothing opened
            if not reducing:  # an ordinary market order once triggered: it opens or adds (margin permitting)
                if held is not None and held.side != direction and algo.qty > abs(held.amount):
                    continue  # this double opens no reversal in one order
                order = UsdmOrder(self._next_id(), f"autoAlgo_{algo.algo_id}", algo.side, algo.qty, False, fill_ms,
                                  orig_type=algo.order_type)  # fmt: skip
                algo.actual_order_id = str(order.order_id)
                self.orders.append(order)
                self._fill(order, hit, fill_ms)
                continue
            assert held is not None
            qty = abs(held.amount) if algo.close_position else min(algo.qty, abs(held.amount))
            order = UsdmOrder(self._next_id(), f"autoAlgo_{algo.algo_id}", algo.side, qty, True, fill_ms,
                              orig_type=algo.order_type)  # fmt: skip
            algo.actual_order_id = str(order.order_id)
            self.orders.append(order)
            self._fill(order, hit, fill_ms)

    def _liquidate(self, open_ms: int, o: Decimal, liq: Decimal) -> None:
        held = self.position
        assert held is not None
        price = min(o, liq) if held.side > 0 else max(o, liq)
        fill_ms = open_ms + MINUTE_MS // 2
        order = UsdmOrder(self._next_id(), f"autoclose-{fill_ms}", "SELL" if held.side > 0 else "BUY",
                          abs(held.amount), True, fill_ms, orig_type="LIQUIDATION")  # fmt: skip
        self.orders.append(order)
        self.liquidations.append((open_ms, price))
        margin = held.margin
        self._fill(order, price, fill_ms)
        lost = margin + order.pnl  # what the closing price left of the margin goes to the insurance fund
        self.cash -= lost
        order.pnl -= lost


def _trigger(algo: AlgoOrder, o: Decimal, h: Decimal, lo: Decimal) -> Decimal | None:
    """Return the fill price of ``algo`` in a bar (a gap through the trigger fills at the open), or ``None``."""
    rises = (algo.order_type == "STOP_MARKET") == (algo.side == "BUY")
    if rises and h >= algo.trigger:
        return max(o, algo.trigger)
    if not rises and lo <= algo.trigger:
        return min(o, algo.trigger)
    return None


def _limit(p: Mapping[str, Any], default: int, most: int) -> int:
    limit = int(p.get("limit") or default)
    if not 1 <= limit <= most:
        raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def exchange_info(now_ms: int) -> dict[str, Any]:
    """Return ``GET /fapi/v1/exchangeInfo`` for BTCUSDT with Binance's real layout and filters."""
    symbol = {"symbol": SYMBOL, "pair": SYMBOL, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
              "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
              "requiredMarginPercent": "5.0000", "baseAsset": "BTC", "quoteAsset": "USDT", "marginAsset": "USDT",
              "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
              "underlyingType": "COIN", "underlyingSubType": ["PoW"], "triggerProtect": "0.0500",
              "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
              "filters": [
                  {"filterType": "PRICE_FILTER", "minPrice": "261.10", "maxPrice": "809484", "tickSize": "0.10"},
                  {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                  {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
                  {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                  {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                  {"filterType": "MIN_NOTIONAL", "notional": "100"},
                  {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                   "multiplierDecimal": "4"},
              ],
              "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                             "TRAILING_STOP_MARKET"],
              "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"], "permissionSets": ["GRID", "COPY"]}  # fmt: skip
    return {"timezone": "UTC", "serverTime": now_ms, "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [symbol]}  # fmt: skip


def funding_rows(funding: Mapping[int, Decimal], p: Mapping[str, Any], now_ms: int) -> list[dict[str, Any]]:
    """``GET /fapi/v1/fundingRate``: settled rates oldest first from ``startTime`` (else the newest ``limit``)."""
    if p.get("symbol") not in (None, SYMBOL):
        raise BinanceError(400, -1121, "Invalid symbol.")
    limit = _limit(p, 100, 1000)
    start = int(p.get("startTime") or 0)
    end = int(p.get("endTime") or now_ms)
    times = sorted(t for t in funding if start <= t <= end and t <= now_ms)
    times = times[:limit] if p.get("startTime") else times[-limit:]
    return [{"symbol": SYMBOL, "fundingTime": t, "fundingRate": f"{funding[t]:.8f}", "markPrice": ""}
            for t in times]  # fmt: skip
