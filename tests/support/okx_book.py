"""The OKX spot account of the test double: orders, fills, attached and standalone algo orders, balances.

Rules, after OKX's API v5 documentation:

* ``clOrdId``: up to 32 letters and digits (else ``51000 Parameter clOrdId error``); refused with ``51016
  Duplicated client order ID`` while an order holding it is live; a look-up by ``clOrdId`` returns the latest
  order holding it (``51603 Order does not exist`` when none, or while ``lag_reads`` hides a new order).
* A spot market buy (``tdMode=cash``) fills at once at the price of the bar holding the clock. Its ``sz`` is
  a quote amount (``tgtCcy=quote_ccy``, OKX's default for spot market buys: it buys ``sz / price`` rounded down
  to ``lotSz``, and ``sz`` must be a multiple of ``tickSz``) or base units (``tgtCcy=base_ccy``); ``liquidity`` makes the next market fills fill a fraction and end ``canceled`` (OKX cancels the
  unfilled rest of a market order). Commission is ``fee_rate`` of the fill, taken in the coin received
  (base on a buy, quote on a sell) and reported as a negative ``fee`` with its ``feeCcy``.
* ``attachAlgoOrds`` (SL/TP on the entry): the stop must be below and the take profit above the price at
  placement (``51047`` / ``51046``), else the whole order is refused. Once the buy is filled completely (the
  documented condition: a market buy cancelled after a partial fill gets no protection), the attachment
  becomes an algo order (``oco`` with both barriers, ``conditional`` with one) with
  ``algoClOrdId = attachAlgoClOrdId``, sized ``attached_size``: ``filled`` (default: the filled size, gross
  of the commission taken in base) or ``ordered`` (the order's ``sz``). OKX does not document which; the
  broker must verify and amend the size either way.
* ``order-algo``: a standalone spot sell ``oco`` (both barriers) or ``conditional`` (one), market orders once
  triggered, checked like an amendment against the last price.
* ``amend-algos``: ``newSz``, ``newSlTriggerPx``, ``newTpTriggerPx`` on a live algo order; a stop at or above
  the last price is refused with ``51280``, a take profit at or below it with ``51279``.
* Resting algo orders are matched by :meth:`Book.settle_bar`: a stop fires when the bar's low reaches it, a
  take profit when the high does, stop first; a gap fills at the open. Firing places a market sell of the
  algo's size (``source=7``, ``algoId``/``algoClOrdId`` set, no ``clOrdId``); when the account does not
  hold that size the algo ends ``order_failed`` and nothing is sold. ``actualSide`` says which barrier fired.
* ``shift_after_fill`` moves the last price right after the next entry fills (the price moves before the
  broker amends its protection); :meth:`Book.move_price` moves it now. A moved price is what market orders
  fill at and what stops are checked against, for the rest of that bar.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np

from support.binance_server import Series

INSTRUMENTS = {
    # instId: (base, quote, tickSz, lotSz, minSz, series)
    "BTC-USDT": ("BTC", "USDT", "0.1", "0.00000001", "0.00001", "BTCUSDT"),
}
MINUTE_MS = 60_000
E8 = Decimal("0.00000001")
_CL_ORD_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


class OkxError(Exception):
    """A refusal: HTTP status, OKX code and message; ``row`` is the per-order ``data`` entry, if any."""

    def __init__(self, status: int, code: str, msg: str, row: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code} {msg}")
        self.status, self.code, self.msg, self.row = status, code, msg, dict(row or {})


def fmt(value: Decimal) -> str:
    """Return a decimal as OKX writes it (plain, no exponent, no trailing zeros)."""
    text = format(value.normalize(), "f")
    return text if text not in ("-0", "") else "0"


@dataclass(slots=True)
class Order:
    ord_id: str
    cl_ord_id: str
    tag: str
    inst_id: str
    side: str
    sz: Decimal
    c_time: int
    state: str = "live"
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    fee_ccy: str = ""
    u_time: int = 0
    fill_time: int = 0
    attach: list[dict[str, str]] = field(default_factory=list)
    algo_id: str = ""
    algo_cl_ord_id: str = ""
    hidden_reads: int = 0
    tgt_ccy: str = "base_ccy"
    ordered: Decimal | None = None
    """The ``sz`` as sent: base units, or the quote amount of a ``quote_ccy`` buy (``sz`` is then what it bought)."""

    def row(self) -> dict[str, Any]:
        """Return the order as ``GET /api/v5/trade/order`` answers it."""
        avg = (self.cost / self.filled).quantize(Decimal("0.01")) if self.filled > 0 else Decimal(0)
        return {
            "instType": "SPOT",
            "instId": self.inst_id,
            "tgtCcy": self.tgt_ccy,
            "ccy": "",
            "ordId": self.ord_id,
            "clOrdId": self.cl_ord_id,
            "tag": self.tag,
            "px": "",
            "pxUsd": "",
            "pxVol": "",
            "pxType": "",
            "sz": fmt(self.sz if self.ordered is None else self.ordered),
            "pnl": "0",
            "ordType": "market",
            "side": self.side,
            "posSide": "net",
            "tdMode": "cash",
            "accFillSz": fmt(self.filled),
            "fillPx": fmt(avg) if self.filled > 0 else "",
            "tradeId": "",
            "fillSz": fmt(self.filled) if self.filled > 0 else "0",
            "fillTime": str(self.fill_time) if self.fill_time else "",
            "avgPx": fmt(avg) if self.filled > 0 else "",
            "state": self.state,
            "stpId": "",
            "stpMode": "cancel_maker",
            "lever": "",
            "attachAlgoClOrdId": "",
            "tpTriggerPx": "",
            "tpTriggerPxType": "",
            "tpOrdPx": "",
            "slTriggerPx": "",
            "slTriggerPxType": "",
            "slOrdPx": "",
            "attachAlgoOrds": [dict(a) for a in self.attach],
            "linkedAlgoOrd": {"algoId": ""},
            "feeCcy": self.fee_ccy,
            "fee": fmt(-self.fee),
            "rebateCcy": self.fee_ccy,
            "rebate": "0",
            "source": "7" if self.algo_id else "",
            "category": "normal",
            "reduceOnly": "false",
            "isTpLimit": "false",
            "cancelSource": "",
            "cancelSourceReason": "",
            "quickMgnType": "",
            "algoClOrdId": self.algo_cl_ord_id,
            "algoId": self.algo_id,
            "tradeQuoteCcy": "USDT",
            "uTime": str(self.u_time),
            "cTime": str(self.c_time),
        }


@dataclass(slots=True)
class Algo:
    algo_id: str
    algo_cl_ord_id: str
    inst_id: str
    sz: Decimal
    sl: Decimal | None
    tp: Decimal | None
    c_time: int
    state: str = "live"
    actual_side: str = ""
    trigger_time: int = 0
    u_time: int = 0
    ord_ids: list[str] = field(default_factory=list)

    @property
    def ord_type(self) -> str:
        return "oco" if self.sl is not None and self.tp is not None else "conditional"

    def row(self) -> dict[str, Any]:
        """Return the algo order as ``orders-algo-pending`` / ``orders-algo-history`` answer it."""

        def px(value: Decimal | None) -> str:
            return "" if value is None else fmt(value)

        return {
            "instType": "SPOT",
            "instId": self.inst_id,
            "ccy": "",
            "ordId": self.ord_ids[-1] if self.ord_ids else "",
            "ordIdList": list(self.ord_ids),
            "algoId": self.algo_id,
            "clOrdId": "",
            "sz": fmt(self.sz),
            "closeFraction": "",
            "ordType": self.ord_type,
            "side": "sell",
            "posSide": "net",
            "tdMode": "cash",
            "tgtCcy": "",
            "state": self.state,
            "lever": "",
            "tpTriggerPx": px(self.tp),
            "tpTriggerPxType": "last" if self.tp is not None else "",
            "tpOrdPx": "-1" if self.tp is not None else "",
            "slTriggerPx": px(self.sl),
            "slTriggerPxType": "last" if self.sl is not None else "",
            "slOrdPx": "-1" if self.sl is not None else "",
            "triggerPx": "",
            "triggerPxType": "",
            "ordPx": "",
            "actualSz": fmt(self.sz) if self.actual_side else "0",
            "actualPx": "",
            "actualSide": self.actual_side,
            "triggerTime": str(self.trigger_time) if self.trigger_time else "",
            "pxVar": "",
            "pxSpread": "",
            "szLimit": "",
            "pxLimit": "",
            "tag": "",
            "timeInterval": "",
            "callbackRatio": "",
            "callbackSpread": "",
            "activePx": "",
            "moveTriggerPx": "",
            "reduceOnly": "false",
            "quickMgnType": "",
            "last": "",
            "failCode": "51008" if self.state == "order_failed" else "",
            "algoClOrdId": self.algo_cl_ord_id,
            "amendPxOnTriggerType": "0",
            "attachAlgoOrds": [],
            "linkedOrd": {"ordId": ""},  # only for an SL linked to a TP limit order
            "isTradeBorrowMode": "",
            "chaseType": "",
            "chaseVal": "",
            "maxChaseType": "",
            "maxChaseVal": "",
            "tradeQuoteCcy": "USDT",
            "cTime": str(self.c_time),
            "uTime": str(self.u_time or self.c_time),
        }


class Book:
    """One OKX spot account over the bars of ``series`` (keyed by the Binance-style symbol)."""

    def __init__(
        self,
        series: Mapping[str, Series],
        balances: Mapping[str, Decimal],
        fee_rate: Decimal,
        attached_size: str = "filled",
    ) -> None:
        if attached_size not in ("filled", "ordered"):
            raise ValueError(f"attached_size must be filled or ordered; got {attached_size!r}")
        self._series = series
        self.balances: dict[str, list[Decimal]] = {k: [v, Decimal(0)] for k, v in balances.items()}
        self.fee_rate = fee_rate
        self.attached_size = attached_size
        self.orders: list[Order] = []
        self.algos: list[Algo] = []
        self.fills: list[dict[str, Any]] = []
        self.liquidity: list[Decimal] = []
        self.lag_reads = 0
        self.shift_after_fill: Decimal | None = None
        self._shift: tuple[int, Decimal] | None = None
        self._ids = 2_896_576_259_728_695_296

    # --- prices ----------------------------------------------------------------------------------------------

    def bar(self, inst_id: str, now_ms: int) -> tuple[int, Decimal, Decimal, Decimal]:
        """Return ``(open time, open, high, low)`` of the 1m bar holding ``now_ms``."""
        series = self._series[INSTRUMENTS[inst_id][5]]
        i = int(np.searchsorted(series.open_ms, now_ms, side="right")) - 1
        o, h, lo = (Decimal(f"{v:.8f}").normalize() for v in series.ohlcv[i, :3])
        return int(series.open_ms[i]), o, h, lo

    def last(self, inst_id: str, now_ms: int) -> Decimal:
        """Return the last price: the bar's open, moved if ``shift_after_fill`` fired in this bar."""
        open_ms, o, _, _ = self.bar(inst_id, now_ms)
        if self._shift is not None and self._shift[0] == open_ms:
            return (o * self._shift[1]).quantize(Decimal("0.01"))
        return o

    def move_price(self, inst_id: str, now_ms: int, factor: Decimal) -> None:
        """Move the last price of the bar holding ``now_ms`` by ``factor`` (a gap before the next order)."""
        self._shift = (self.bar(inst_id, now_ms)[0], factor)

    # --- orders ----------------------------------------------------------------------------------------------

    def place(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """``POST /api/v5/trade/order``: a spot market order, with its attached SL/TP if any."""
        cl_ord_id = str(p.get("clOrdId") or "")
        row = {"clOrdId": cl_ord_id, "ordId": "", "tag": str(p.get("tag") or ""), "ts": str(now_ms)}

        def refuse(code: str, msg: str) -> OkxError:
            return OkxError(200, "1", "All operations failed", {**row, "sCode": code, "sMsg": msg})

        inst_id = str(p.get("instId") or "")
        if inst_id not in INSTRUMENTS:
            raise refuse("51001", "Instrument ID does not exist.")
        if cl_ord_id and not _CL_ORD_ID.match(cl_ord_id):
            raise refuse("51000", "Parameter clOrdId error")
        if not re.fullmatch(r"[A-Za-z0-9]{0,16}", str(p.get("tag") or "")):
            raise refuse("51000", "Parameter tag error")
        if p.get("tdMode") != "cash" or p.get("ordType") != "market" or p.get("side") not in ("buy", "sell"):
            raise refuse("51000", "Parameter tdMode, ordType or side error")
        tgt_ccy = str(p.get("tgtCcy") or ("quote_ccy" if p.get("side") == "buy" else "base_ccy"))
        if tgt_ccy not in ("base_ccy", "quote_ccy") or (p.get("side") == "sell" and tgt_ccy != "base_ccy"):
            raise refuse("51000", "Parameter tgtCcy error")
        if cl_ord_id and any(o.cl_ord_id == cl_ord_id and o.state == "live" for o in self.orders):
            raise refuse("51016", "Duplicated client order ID")
        sz = _decimal(p.get("sz"))
        base, quote, tick, lot, min_sz, _ = INSTRUMENTS[inst_id]
        price = self.last(inst_id, now_ms)
        in_quote = tgt_ccy == "quote_ccy"
        if sz is None or sz <= 0 or sz % Decimal(tick if in_quote else lot) != 0:
            raise refuse("51000", "Parameter sz error")
        # a buy of a quote amount gets what it buys at the fill price, rounded down to the lot size
        qty = (sz / price).quantize(Decimal(lot), rounding=ROUND_DOWN) if in_quote else sz
        if qty < Decimal(min_sz):
            raise refuse(
                "51020", f"Your order should meet or exceed the minimum order amount of {min_sz} {base}."
            )
        attach = [self._attachment(a, price, refuse) for a in p.get("attachAlgoOrds") or []]
        if p["side"] == "buy" and self.balances.get(quote, [Decimal(0)])[0] < qty * price:
            raise refuse("51008", "Order failed. Insufficient USDT balance in account.")
        if p["side"] == "sell" and self.balances.get(base, [Decimal(0)])[0] < sz:
            raise refuse("51008", f"Order failed. Insufficient {base} balance in account.")
        order = Order(
            self._next_id(), cl_ord_id, row["tag"], inst_id, p["side"], qty, now_ms, attach=attach,
            tgt_ccy=tgt_ccy, ordered=sz,
        )  # fmt: skip
        order.hidden_reads = self.lag_reads
        self.orders.append(order)
        self._fill_market(order, price, now_ms)
        return {**row, "ordId": order.ord_id, "sCode": "0", "sMsg": "Order placed"}

    def _attachment(self, a: Mapping[str, Any], price: Decimal, refuse: Any) -> dict[str, str]:
        sl, tp = _decimal(a.get("slTriggerPx")), _decimal(a.get("tpTriggerPx"))
        if sl is None and tp is None:
            raise refuse("51000", "Parameter attachAlgoOrds error")
        for key in ("slOrdPx", "tpOrdPx"):
            if a.get(key) not in (None, "", "-1"):
                raise refuse("51094", "You can't place TP limit orders in spot, margin, or options trading.")
        if sl is not None and sl >= price:
            raise refuse("51047", "The stop loss trigger price must be lower than the order price")
        if tp is not None and tp <= price:
            raise refuse("51046", "The take profit trigger price must be higher than the order price")
        if not _CL_ORD_ID.match(str(a.get("attachAlgoClOrdId") or "x")):
            raise refuse("51000", "Parameter attachAlgoClOrdId error")
        return {
            "attachAlgoId": self._next_id(),
            "attachAlgoClOrdId": str(a.get("attachAlgoClOrdId") or ""),
            "tpOrdKind": "condition",
            "tpTriggerPx": fmt(tp) if tp is not None else "",
            "tpTriggerPxType": "last" if tp is not None else "",
            "tpOrdPx": "-1" if tp is not None else "",
            "slTriggerPx": fmt(sl) if sl is not None else "",
            "slTriggerPxType": "last" if sl is not None else "",
            "slOrdPx": "-1" if sl is not None else "",
            "sz": "",
            "amendPxOnTriggerType": "0",
            "failCode": "",
            "failReason": "",
        }

    def _fill_market(self, order: Order, price: Decimal, now_ms: int) -> None:
        lot = INSTRUMENTS[order.inst_id][3]
        qty, state = order.sz, "filled"
        if self.liquidity:
            qty = (order.sz * self.liquidity.pop(0)).quantize(Decimal(lot), rounding=ROUND_DOWN)
            state = "canceled"
        if qty > 0:
            self._trade(order, qty, price, now_ms)
        order.state, order.u_time = state, now_ms
        if order.side == "buy" and qty > 0 and self.shift_after_fill is not None:
            self._shift = (self.bar(order.inst_id, now_ms)[0], self.shift_after_fill)
            self.shift_after_fill = None
        if order.side == "buy" and state == "filled":  # placed "once the general order is filled completely"
            for a in order.attach:
                size = order.filled if self.attached_size == "filled" else order.sz
                self.algos.append(
                    Algo(
                        a["attachAlgoId"],
                        a["attachAlgoClOrdId"],
                        order.inst_id,
                        size,
                        _decimal(a["slTriggerPx"]),
                        _decimal(a["tpTriggerPx"]),
                        now_ms,
                    )
                )

    def _trade(self, order: Order, qty: Decimal, price: Decimal, now_ms: int) -> None:
        base, quote = INSTRUMENTS[order.inst_id][:2]
        notional = (qty * price).quantize(E8)
        received = base if order.side == "buy" else quote
        fee = ((qty if received == base else notional) * self.fee_rate).quantize(E8)
        sign = 1 if order.side == "buy" else -1
        self._credit(base, sign * qty)
        self._credit(quote, -sign * notional)
        self._credit(received, -fee)
        order.filled += qty
        order.cost += notional
        order.fee += fee
        order.fee_ccy = received
        order.fill_time = now_ms
        self.fills.append(
            {
                "instType": "SPOT",
                "instId": order.inst_id,
                "tradeId": str(len(self.fills) + 1),
                "ordId": order.ord_id,
                "clOrdId": order.cl_ord_id,
                "billId": self._next_id(),
                "subType": "1" if order.side == "buy" else "2",
                "tag": order.tag,
                "fillPx": fmt(price),
                "fillSz": fmt(qty),
                "fillIdxPx": "",
                "fillPnl": "0",
                "fillPxVol": "",
                "fillPxUsd": "",
                "fillMarkVol": "",
                "fillFwdPx": "",
                "fillMarkPx": "",
                "side": order.side,
                "posSide": "net",
                "execType": "T",
                "feeCcy": received,
                "fee": fmt(-fee),
                "ts": str(now_ms),
                "fillTime": str(now_ms),
                "feeRate": fmt(-self.fee_rate),
                "tradeQuoteCcy": "USDT",
            }
        )

    def _credit(self, ccy: str, amount: Decimal) -> None:
        self.balances.setdefault(ccy, [Decimal(0), Decimal(0)])[0] += amount

    def _next_id(self) -> str:
        self._ids += 4096
        return str(self._ids)

    def find(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``GET /api/v5/trade/order`` by ``ordId`` or ``clOrdId`` (the latest holding it)."""
        matches = [
            o
            for o in self.orders
            if o.inst_id == p.get("instId")
            and (o.ord_id == p.get("ordId") or (p.get("clOrdId") and o.cl_ord_id == p.get("clOrdId")))
        ]
        order = matches[-1] if matches else None
        if order is not None and order.hidden_reads > 0:
            order.hidden_reads -= 1
            order = None
        if order is None:
            raise OkxError(200, "51603", "Order does not exist")
        return order.row()

    def history(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /api/v5/trade/orders-history``: done orders, newest first, ``limit`` (at most 100)."""
        done = [o for o in self.orders if o.state != "live" and o.inst_id == p.get("instId")]
        return [o.row() for o in reversed(done)][: _limit(p)]

    def fills_of(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /api/v5/trade/fills(-history)``: fills newest first, of one ``ordId`` if given."""
        rows = [
            f
            for f in self.fills
            if f["instId"] == p.get("instId") and (not p.get("ordId") or f["ordId"] == p.get("ordId"))
        ]
        return list(reversed(rows))[: _limit(p)]

    def balance(self, now_ms: int) -> list[dict[str, Any]]:
        """``GET /api/v5/account/balance``: one row with ``details`` per currency."""
        details = []
        for ccy, (free, frozen) in sorted(self.balances.items()):
            total = free + frozen
            details.append(
                {
                    "ccy": ccy,
                    "availBal": fmt(free),
                    "availEq": fmt(free),
                    "cashBal": fmt(total),
                    "eq": fmt(total),
                    "frozenBal": fmt(frozen),
                    "ordFrozen": fmt(frozen),
                    "uTime": str(now_ms),
                }
            )
        return [{"adjEq": "", "details": details, "totalEq": "", "uTime": str(now_ms)}]

    # --- algo orders -----------------------------------------------------------------------------------------

    def algos_pending(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /api/v5/trade/orders-algo-pending``: live algo orders of ``ordType`` (comma list)."""
        types = _types(p)
        rows = [a for a in self.algos if a.state == "live" and a.ord_type in types]
        rows = [a for a in rows if not p.get("instId") or a.inst_id == p.get("instId")]
        return [a.row() for a in reversed(rows)]

    def algos_history(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /api/v5/trade/orders-algo-history``: finished algo orders by ``algoId`` or ``state``."""
        if not p.get("algoId") and not p.get("state"):
            raise OkxError(200, "51000", "Parameter algoId or state error")
        types = _types(p)
        rows = [a for a in self.algos if a.state != "live" and a.ord_type in types]
        if p.get("algoId"):
            rows = [a for a in rows if a.algo_id == p["algoId"]]
        return [a.row() for a in reversed(rows)]

    def place_algo(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """``POST /api/v5/trade/order-algo``: a spot sell ``oco`` or ``conditional`` at market once triggered."""
        algo_cl_ord_id = str(p.get("algoClOrdId") or "")
        row = {"algoClOrdId": algo_cl_ord_id, "algoId": "", "clOrdId": str(p.get("clOrdId") or ""),
               "tag": str(p.get("tag") or "")}  # fmt: skip

        def refuse(code: str, msg: str) -> OkxError:
            return OkxError(200, "1", "", {**row, "sCode": code, "sMsg": msg})

        inst_id = str(p.get("instId") or "")
        if inst_id not in INSTRUMENTS:
            raise refuse("51001", "Instrument ID does not exist.")
        if (
            p.get("tdMode") != "cash"
            or p.get("side") != "sell"
            or p.get("ordType") not in ("oco", "conditional")
        ):
            raise refuse("51000", "Parameter tdMode, side or ordType error")
        if algo_cl_ord_id and not _CL_ORD_ID.match(algo_cl_ord_id):
            raise refuse("51000", "Parameter algoClOrdId error")
        if any(a.algo_cl_ord_id == algo_cl_ord_id and a.state == "live" for a in self.algos):
            raise refuse("51016", "Duplicated client order ID")
        sz, sl, tp = (_decimal(p.get(k)) for k in ("sz", "slTriggerPx", "tpTriggerPx"))
        lot = Decimal(INSTRUMENTS[inst_id][3])
        if sz is None or sz <= 0 or sz % lot != 0:
            raise refuse("51000", "Parameter sz error")
        if (sl is not None and tp is not None) != (p["ordType"] == "oco") or (sl is None and tp is None):
            raise refuse("51000", "Parameter ordType error")
        if any(p.get(k) not in (None, "-1") for k in ("slOrdPx", "tpOrdPx") if p.get(k[:2] + "TriggerPx")):
            raise refuse("51000", "Parameter slOrdPx or tpOrdPx error: this double takes market orders (-1)")
        last = self.last(inst_id, now_ms)
        if sl is not None and sl >= last:
            raise refuse("51280", "SL trigger price can not be higher than the last price")
        if tp is not None and tp <= last:
            raise refuse("51279", "TP trigger price can not be lower than the last price")
        algo = Algo(self._next_id(), algo_cl_ord_id, inst_id, sz, sl, tp, now_ms)
        self.algos.append(algo)
        return {**row, "algoId": algo.algo_id, "sCode": "0", "sMsg": ""}

    def amend(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """``POST /api/v5/trade/amend-algos``."""
        algo = self._algo(p)
        row = {"algoClOrdId": algo.algo_cl_ord_id if algo else "", "algoId": str(p.get("algoId") or "")}

        def refuse(code: str, msg: str) -> OkxError:
            return OkxError(200, "1", "", {**row, "reqId": "", "sCode": code, "sMsg": msg})

        if algo is None or algo.state != "live":
            raise refuse("51603", "Order does not exist")
        last = self.last(algo.inst_id, now_ms)
        sz, sl, tp = (_decimal(p.get(k)) for k in ("newSz", "newSlTriggerPx", "newTpTriggerPx"))
        if sl is not None and sl >= last:
            raise refuse("51280", "SL trigger price can not be higher than the last price")
        if tp is not None and tp <= last:
            raise refuse("51279", "TP trigger price can not be lower than the last price")
        lot = Decimal(INSTRUMENTS[algo.inst_id][3])
        if sz is not None and (sz <= 0 or sz % lot != 0):
            raise refuse("51000", "Parameter newSz error")
        algo.sz = sz if sz is not None else algo.sz
        algo.sl = sl if sl is not None and algo.sl is not None else algo.sl
        algo.tp = tp if tp is not None and algo.tp is not None else algo.tp
        algo.u_time = now_ms
        return {**row, "reqId": "", "sCode": "0", "sMsg": ""}

    def cancel(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """One entry of ``POST /api/v5/trade/cancel-algos``."""
        algo = self._algo(p)
        if algo is None or algo.state != "live":
            raise OkxError(
                200,
                "1",
                "",
                {"algoId": str(p.get("algoId")), "sCode": "51603", "sMsg": "Order does not exist"},
            )
        algo.state, algo.u_time = "canceled", now_ms
        return {"algoClOrdId": algo.algo_cl_ord_id, "algoId": algo.algo_id, "sCode": "0", "sMsg": ""}

    def _algo(self, p: Mapping[str, Any]) -> Algo | None:
        for algo in self.algos:
            if (p.get("algoId") and algo.algo_id == p.get("algoId")) or (
                p.get("algoClOrdId") and algo.algo_cl_ord_id == p.get("algoClOrdId")
            ):
                return algo
        return None

    def settle_bar(self, now_ms: int) -> None:
        """Match live algo orders against the bar holding ``now_ms``: stop first, gaps fill at the open."""
        for algo in [a for a in self.algos if a.state == "live"]:
            open_ms, o, h, lo = self.bar(algo.inst_id, now_ms)
            fill_ms = open_ms + MINUTE_MS // 2
            if algo.sl is not None and lo <= algo.sl:
                side, price = "sl", min(o, algo.sl)
            elif algo.tp is not None and h >= algo.tp:
                side, price = "tp", max(o, algo.tp)
            else:
                continue
            algo.actual_side, algo.trigger_time, algo.u_time = side, fill_ms, fill_ms
            base = INSTRUMENTS[algo.inst_id][0]
            if self.balances.get(base, [Decimal(0)])[0] < algo.sz:
                algo.state = "order_failed"  # 51008: the triggered sell finds too little to sell
                continue
            algo.state = "effective"
            order = Order(self._next_id(), "", "", algo.inst_id, "sell", algo.sz, fill_ms)
            order.algo_id, order.algo_cl_ord_id = algo.algo_id, algo.algo_cl_ord_id
            self.orders.append(order)
            algo.ord_ids.append(order.ord_id)
            self._fill_market(order, price, fill_ms)


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    text = str(value)
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text):
        raise OkxError(200, "51000", f"Parameter {text} error")
    return Decimal(text)


def _limit(p: Mapping[str, Any]) -> int:
    limit = int(p.get("limit") or 100)
    if not 1 <= limit <= 100:
        raise OkxError(200, "51000", "Parameter limit error")
    return limit


def _types(p: Mapping[str, Any]) -> set[str]:
    types = {t for t in str(p.get("ordType") or "").split(",") if t}
    if not types:
        raise OkxError(200, "51000", "Parameter ordType error")
    return types
