"""The OKX linear-swap account of the test double: one net position, leverage, margin, attached SL/TP,
reduce-only orders, funding settlements and liquidation, after OKX's API v5 documentation.

Instrument ``BTC-USDT-SWAP``: contract value 0.01 BTC (``ctVal``), lot and minimum 0.01 contract, tick 0.1 USDT;
order sizes (``sz``) are contracts. The account is one USDT balance (``cashBal``) in net position mode
(``posMode=net_mode``; ``long_short_mode`` can be set to test the broker's refusal).

* ``POST account/set-leverage`` (``lever``, ``mgnMode``, ``instId``, ``posSide=net`` for isolated) sets the
  leverage of that margin mode; refused with ``59000`` while a position is open in another mode or with
  another leverage (OKX refuses settings changes "as you have positions or open orders").
  ``GET account/leverage-info`` reads it back; ``GET account/config`` gives ``posMode``.
* ``POST trade/order``: a market order, ``tdMode`` ``isolated`` or ``cross`` (the position's margin mode),
  ``posSide`` absent or ``net``. Without ``reduceOnly`` it opens or adds to the position and must be covered
  by free margin (notional / leverage + fee; ``51008`` otherwise). With ``reduceOnly`` it may only reduce the
  position: none open, or the same direction, is ``51169`` ("you don't have any positions in this direction");
  more than the position is ``51205`` ("Reduce-Only is not available"). A reduce-only order can never open a
  position. Fills are at the last price (the bar's open, moved by ``shift_after_fill``); the taker fee is
  ``fee_rate`` of the notional in USDT (a negative ``fee``); a close realises ``pnl``.
* ``attachAlgoOrds`` on an opening order: for a buy the stop must be below and the take profit above the last
  price (``51047`` / ``51046``), for a sell the reverse (``51049`` / ``51048``); the whole order is refused
  otherwise. Once the order fills completely the attachment becomes an algo order (``oco`` or
  ``conditional``) closing the filled size, ``reduceOnly`` by nature, ``algoClOrdId = attachAlgoClOrdId``.
* ``amend-algos`` / ``cancel-algos`` / ``orders-algo-pending`` / ``orders-algo-history`` as on spot; an
  amended stop on the wrong side of the last price is ``51280`` (long: at or above it) / ``51279`` (take
  profit).
* :meth:`SwapBook.settle_funding` runs as a bar opens: at a funding time the position held pays
  ``pos x ctVal x open x rate`` (a bill of type 8 with ``balChg`` = minus that), before any order of that bar.
  :meth:`SwapBook.settle_bar` runs as the bar closes: it liquidates a position whose liquidation price the bar
  reaches before its stop (closed at ``liqPx``, the isolated margin lost), then fires algo orders: stop first, a gap fills at the open; a fired algo closes ``min(its size, the position)``
  with a reduce-only market order carrying ``algoId``/``algoClOrdId`` and no ``clOrdId``; with nothing left to
  close it ends ``order_failed``.
* Isolated liquidation price: long ``avgPx x (1 - 1/lever + mmr)``, short ``avgPx x (1 + 1/lever - mmr)``
  with ``mmr`` 0.4 % (OKX's first tier for BTC-USDT-SWAP), reported as ``liqPx`` in ``account/positions``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from support.binance_server import Series
from support.okx_book import MINUTE_MS, Algo, OkxError, _decimal, _limit, _types, fmt

SWAP = "BTC-USDT-SWAP"
CT_VAL, LOT, TICK = Decimal("0.01"), Decimal("0.01"), Decimal("0.1")
MMR = Decimal("0.004")
E8 = Decimal("0.00000001")
_CL_ORD_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


@dataclass(slots=True)
class SwapOrder:
    ord_id: str
    cl_ord_id: str
    tag: str
    side: str
    sz: Decimal
    td_mode: str
    reduce_only: bool
    c_time: int
    state: str = "live"
    filled: Decimal = Decimal(0)
    avg_px: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    pnl: Decimal = Decimal(0)
    lever: Decimal = Decimal(0)
    fill_time: int = 0
    u_time: int = 0
    category: str = "normal"
    attach: list[dict[str, str]] = field(default_factory=list)
    algo_id: str = ""
    algo_cl_ord_id: str = ""

    def row(self) -> dict[str, Any]:
        """Return the order as ``GET /api/v5/trade/order`` and ``orders-history`` answer it for a swap."""
        done = self.filled > 0
        return {
            "instType": "SWAP",
            "instId": SWAP,
            "tgtCcy": "",
            "ccy": "",
            "ordId": self.ord_id,
            "clOrdId": self.cl_ord_id,
            "tag": self.tag,
            "px": "",
            "sz": fmt(self.sz),
            "pnl": fmt(self.pnl),
            "ordType": "market",
            "side": self.side,
            "posSide": "net",
            "tdMode": self.td_mode,
            "accFillSz": fmt(self.filled),
            "fillPx": fmt(self.avg_px) if done else "",
            "tradeId": "",
            "fillSz": fmt(self.filled) if done else "0",
            "fillTime": str(self.fill_time) if self.fill_time else "",
            "avgPx": fmt(self.avg_px) if done else "",
            "state": self.state,
            "lever": fmt(self.lever),
            "attachAlgoClOrdId": "",
            "tpTriggerPx": "",
            "tpTriggerPxType": "",
            "tpOrdPx": "",
            "slTriggerPx": "",
            "slTriggerPxType": "",
            "slOrdPx": "",
            "attachAlgoOrds": [dict(a) for a in self.attach],
            "linkedAlgoOrd": {"algoId": ""},
            "feeCcy": "USDT",
            "fee": fmt(-self.fee),
            "rebateCcy": "USDT",
            "rebate": "0",
            "source": "7" if self.algo_id else "",
            "category": self.category,
            "reduceOnly": "true" if self.reduce_only else "false",
            "isTpLimit": "false",
            "cancelSource": "",
            "cancelSourceReason": "",
            "quickMgnType": "",
            "algoClOrdId": self.algo_cl_ord_id,
            "algoId": self.algo_id,
            "uTime": str(self.u_time),
            "cTime": str(self.c_time),
        }


@dataclass(slots=True)
class Position:
    pos: Decimal  # contracts, signed (net mode)
    avg_px: Decimal
    margin: Decimal
    lever: Decimal
    mgn_mode: str
    c_time: int
    u_time: int

    @property
    def side(self) -> int:
        return 1 if self.pos > 0 else -1

    @property
    def liq_px(self) -> Decimal:
        return (self.avg_px * (1 - self.side * (1 / self.lever - MMR))).quantize(TICK, ROUND_HALF_EVEN)


class SwapBook:
    """One OKX linear-swap account over the bars of ``series["BTCUSDT"]``; ``funding`` maps times (ms) to rates."""

    def __init__(
        self,
        series: Mapping[str, Series],
        *,
        cash: Decimal = Decimal(10_000),
        fee_rate: Decimal = Decimal("0.0005"),
        leverage: Decimal = Decimal(10),
        funding: Mapping[int, Decimal] | None = None,
        next_id: Callable[[], str],
    ) -> None:
        self._series = series["BTCUSDT"]
        self.cash = cash
        self.fee_rate = fee_rate
        self.pos_mode = "net_mode"
        self.levers: dict[str, Decimal] = {"isolated": leverage, "cross": leverage}
        self.funding = dict(funding or {})
        self.position: Position | None = None
        self.orders: list[SwapOrder] = []
        self.algos: list[Algo] = []
        self.fills: list[dict[str, Any]] = []
        self.bills: list[dict[str, Any]] = []
        self.liquidations: list[tuple[int, Decimal]] = []
        self.shift_after_fill: Decimal | None = None
        self._shift: tuple[int, Decimal] | None = None
        self._next_id = next_id
        self._funded: set[int] = set()
        self._bar_ms = 0

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

    def config(self) -> list[dict[str, Any]]:
        """``GET /api/v5/account/config``."""
        return [{"acctLv": "2", "posMode": self.pos_mode, "autoLoan": False, "greeksType": "PA", "level": "Lv1",
                 "levelTmp": "", "ctIsoMode": "automatic", "mgnIsoMode": "automatic", "uid": "44705892343619584",
                 "mainUid": "44705892343619584", "label": "scalpbot", "roleType": "0", "traderInsts": [],
                 "spotRoleType": "0", "spotTraderInsts": [], "opAuth": "1", "kycLv": "2", "ip": "",
                 "perm": "read_only,trade", "liquidationGear": "-1", "enableSpotBorrow": False,
                 "spotBorrowAutoRepay": False, "type": "0", "settleCcy": "USDT", "settleCcyList": ["USDT"]}]  # fmt: skip

    def leverage_info(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /api/v5/account/leverage-info`` (``instId``, ``mgnMode``)."""
        mode = str(p.get("mgnMode") or "")
        if p.get("instId") != SWAP or mode not in self.levers:
            raise OkxError(200, "51000", "Parameter instId or mgnMode error")
        return [{"instId": SWAP, "mgnMode": mode, "posSide": "net", "lever": fmt(self.levers[mode])}]

    def set_leverage(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``POST /api/v5/account/set-leverage``."""
        mode = str(p.get("mgnMode") or "")
        lever = _decimal(p.get("lever"))
        if p.get("instId") != SWAP or mode not in self.levers or lever is None or not 1 <= lever <= 125:
            raise OkxError(200, "51000", "Parameter lever, mgnMode or instId error")
        if mode == "isolated" and p.get("posSide") not in (None, "net"):
            raise OkxError(200, "51000", "Parameter posSide error")
        held = self.position
        if held is not None and (held.mgn_mode != mode or held.lever != lever):
            raise OkxError(200, "59000", "Your settings failed as you have positions or open orders")
        self.levers[mode] = lever
        return [{"instId": SWAP, "lever": fmt(lever), "mgnMode": mode, "posSide": "net"}]

    # --- reads -----------------------------------------------------------------------------------------------

    def positions(self, p: Mapping[str, Any], now_ms: int) -> list[dict[str, Any]]:
        """``GET /api/v5/account/positions`` (``instType``/``instId``): the open position, if any."""
        held = self.position
        if held is None or p.get("instId") not in (None, SWAP):
            return []
        last = self.last(now_ms)
        upl = (last - held.avg_px) * held.pos * CT_VAL
        return [{"adl": "1", "availPos": fmt(abs(held.pos)), "avgPx": fmt(held.avg_px), "cTime": str(held.c_time),
                 "ccy": "USDT", "deltaBS": "", "deltaPA": "", "gammaBS": "", "gammaPA": "", "imr": "",
                 "instId": SWAP, "instType": "SWAP", "interest": "", "idxPx": fmt(last), "last": fmt(last),
                 "usdPx": "", "bePx": "", "lever": fmt(held.lever), "liab": "", "liabCcy": "",
                 "liqPx": fmt(held.liq_px), "markPx": fmt(last), "margin": fmt(held.margin),
                 "mgnMode": held.mgn_mode, "mgnRatio": "", "mmr": fmt((abs(held.pos) * CT_VAL * last * MMR).quantize(E8)),
                 "notionalUsd": fmt((abs(held.pos) * CT_VAL * last).quantize(E8)), "optVal": "",
                 "pendingCloseOrdLiabVal": "", "pos": fmt(held.pos), "baseBorrowed": "", "baseInterest": "",
                 "quoteBorrowed": "", "quoteInterest": "", "posCcy": "", "posId": "1307173036051017728",
                 "posSide": "net", "spotInUseAmt": "", "clSpotInUseAmt": "", "maxSpotInUseAmt": "",
                 "bizRefId": "", "bizRefType": "", "spotInUseCcy": "", "thetaBS": "", "thetaPA": "",
                 "tradeId": "", "uTime": str(held.u_time), "upl": fmt(upl.quantize(E8)), "uplLastPx": fmt(upl.quantize(E8)),
                 "uplRatio": "", "uplRatioLastPx": "", "vegaBS": "", "vegaPA": "", "realizedPnl": "",
                 "pnl": "", "fee": "", "fundingFee": "", "liqPenalty": "", "closeOrderAlgo": [],
                 "nonSettleAvgPx": "", "settledPnl": ""}]  # fmt: skip

    def balance(self, now_ms: int) -> list[dict[str, Any]]:
        """``GET /api/v5/account/balance``: USDT with ``cashBal``, the position's ``upl`` and ``eq``."""
        held = self.position
        upl = Decimal(0) if held is None else (self.last(now_ms) - held.avg_px) * held.pos * CT_VAL
        frozen = Decimal(0) if held is None else held.margin
        eq = self.cash + upl
        detail = {"ccy": "USDT", "cashBal": fmt(self.cash), "eq": fmt(eq.quantize(E8)),
                  "availBal": fmt(self.cash - frozen), "availEq": fmt((eq - frozen).quantize(E8)),
                  "frozenBal": fmt(frozen), "ordFrozen": "0", "isoEq": fmt(frozen), "upl": fmt(upl.quantize(E8)),
                  "uTime": str(now_ms)}  # fmt: skip
        return [{"adjEq": "", "details": [detail], "totalEq": fmt(eq.quantize(E8)), "uTime": str(now_ms)}]

    def find(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``GET /api/v5/trade/order`` by ``ordId`` or ``clOrdId`` (the latest holding it)."""
        matches = [
            o for o in self.orders
            if o.ord_id == p.get("ordId") or (p.get("clOrdId") and o.cl_ord_id == p.get("clOrdId"))
        ]  # fmt: skip
        if not matches:
            raise OkxError(200, "51603", "Order does not exist")
        return matches[-1].row()

    def history(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /api/v5/trade/orders-history`` (``instType=SWAP``): done orders, newest first."""
        if p.get("instType") != "SWAP":
            raise OkxError(200, "51000", "Parameter instType error")
        done = [o for o in self.orders if o.state != "live"]
        return [o.row() for o in reversed(done)][: _limit(p)]

    def funding_bills(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``GET /api/v5/account/bills`` (``type=8``: funding fee), newest first."""
        rows = [b for b in self.bills if not p.get("type") or b["type"] == p.get("type")]
        return list(reversed(rows))[: _limit(p)]

    # --- orders ----------------------------------------------------------------------------------------------

    def place(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """``POST /api/v5/trade/order``: a swap market order, reduce-only or with its attached SL/TP."""
        cl_ord_id = str(p.get("clOrdId") or "")
        row = {"clOrdId": cl_ord_id, "ordId": "", "tag": str(p.get("tag") or ""), "ts": str(now_ms)}

        def refuse(code: str, msg: str) -> OkxError:
            return OkxError(200, "1", "All operations failed", {**row, "sCode": code, "sMsg": msg})

        if p.get("instId") != SWAP:
            raise refuse("51001", "Instrument ID does not exist.")
        if cl_ord_id and not _CL_ORD_ID.match(cl_ord_id):
            raise refuse("51000", "Parameter clOrdId error")
        if not re.fullmatch(r"[A-Za-z0-9]{0,16}", str(p.get("tag") or "")):
            raise refuse("51000", "Parameter tag error")
        mode = p.get("tdMode")
        if (
            mode not in ("isolated", "cross")
            or p.get("ordType") != "market"
            or p.get("side") not in ("buy", "sell")
        ):
            raise refuse("51000", "Parameter tdMode, ordType or side error")
        if p.get("posSide") not in (None, "", "net") or self.pos_mode != "net_mode":
            raise refuse("51000", "Parameter posSide error")
        if cl_ord_id and any(o.cl_ord_id == cl_ord_id and o.state == "live" for o in self.orders):
            raise refuse("51016", "Duplicated client order ID")
        sz = _decimal(p.get("sz"))
        if sz is None or sz < LOT or sz % LOT != 0:
            raise refuse("51000", "Parameter sz error")
        reduce_only = str(p.get("reduceOnly")).lower() == "true"
        direction = 1 if p["side"] == "buy" else -1
        held = self.position
        if held is not None and held.mgn_mode != mode:
            raise refuse("51000", "Parameter tdMode error: the position uses another margin mode")
        if reduce_only:
            if held is None or held.side == direction:
                raise refuse("51169", "Order failed because you don't have any positions in this direction for "
                                      "this contract")  # fmt: skip
            if sz > abs(held.pos):
                raise refuse("51205", "Reduce-Only is not available")
            if p.get("attachAlgoOrds"):
                raise refuse("51000", "Parameter attachAlgoOrds error")
        price = self.last(now_ms)
        attach = [self._attachment(a, price, direction, refuse) for a in p.get("attachAlgoOrds") or []]
        lever = self.levers[str(mode)]
        opening = not reduce_only and (held is None or held.side == direction)
        if not reduce_only and held is not None and held.side != direction:
            raise refuse("51000", "Parameter side error: this double opens no reversal in one order")
        if opening:
            notional = sz * CT_VAL * price
            used = Decimal(0) if held is None else held.margin
            if self.cash - used < notional / lever + notional * self.fee_rate:
                raise refuse("51008", "Order failed. Insufficient USDT margin in account")
        order = SwapOrder(self._next_id(), cl_ord_id, row["tag"], p["side"], sz, str(mode), reduce_only, now_ms,
                          lever=lever, attach=attach)  # fmt: skip
        self.orders.append(order)
        self._fill(order, price, now_ms)
        if order.side and not reduce_only and self.shift_after_fill is not None:
            self._shift = (self.bar(now_ms)[0], self.shift_after_fill)
            self.shift_after_fill = None
        return {**row, "ordId": order.ord_id, "sCode": "0", "sMsg": "Order placed"}

    def _attachment(
        self, a: Mapping[str, Any], price: Decimal, direction: int, refuse: Any
    ) -> dict[str, str]:
        sl, tp = _decimal(a.get("slTriggerPx")), _decimal(a.get("tpTriggerPx"))
        if sl is None and tp is None:
            raise refuse("51000", "Parameter attachAlgoOrds error")
        if any(a.get(k) not in (None, "", "-1") for k in ("slOrdPx", "tpOrdPx")):
            raise refuse("51000", "Parameter slOrdPx or tpOrdPx error: this double takes market orders (-1)")
        if direction > 0:
            if sl is not None and sl >= price:
                raise refuse("51047", "The stop loss trigger price must be lower than the order price")
            if tp is not None and tp <= price:
                raise refuse("51046", "The take profit trigger price must be higher than the order price")
        else:
            if sl is not None and sl <= price:
                raise refuse("51049", "The stop loss trigger price must be higher than the order price")
            if tp is not None and tp >= price:
                raise refuse("51048", "The take profit trigger price must be lower than the order price")
        if not _CL_ORD_ID.match(str(a.get("attachAlgoClOrdId") or "x")):
            raise refuse("51000", "Parameter attachAlgoClOrdId error")
        return {"attachAlgoId": self._next_id(), "attachAlgoClOrdId": str(a.get("attachAlgoClOrdId") or ""),
                "tpOrdKind": "condition", "tpTriggerPx": fmt(tp) if tp is not None else "",
                "tpTriggerPxType": "last" if tp is not None else "", "tpOrdPx": "-1" if tp is not None else "",
                "slTriggerPx": fmt(sl) if sl is not None else "", "slTriggerPxType": "last" if sl is not None else "",
                "slOrdPx": "-1" if sl is not None else "", "sz": "", "amendPxOnTriggerType": "0",
                "failCode": "", "failReason": ""}  # fmt: skip

    def _fill(self, order: SwapOrder, price: Decimal, now_ms: int) -> None:
        direction = 1 if order.side == "buy" else -1
        contracts = order.sz
        notional = contracts * CT_VAL * price
        fee = (notional * self.fee_rate).quantize(E8)
        held = self.position
        pnl = Decimal(0)
        if held is None:
            self.position = Position(direction * contracts, price, notional / order.lever, order.lever,
                                     order.td_mode, now_ms, now_ms)  # fmt: skip
        elif held.side == direction:
            total = abs(held.pos) + contracts
            held.avg_px = (held.avg_px * abs(held.pos) + price * contracts) / total
            held.pos += direction * contracts
            held.margin += notional / order.lever
            held.u_time = now_ms
        else:
            pnl = ((price - held.avg_px) * held.side * contracts * CT_VAL).quantize(E8)
            share = contracts / abs(held.pos)
            held.margin -= held.margin * share
            held.pos += direction * contracts
            held.u_time = now_ms
            if held.pos == 0:
                self.position = None
        self.cash += pnl - fee
        order.filled, order.avg_px, order.fee, order.pnl = contracts, price, fee, pnl
        order.state, order.fill_time, order.u_time = "filled", now_ms, now_ms
        self.fills.append({"instType": "SWAP", "instId": SWAP, "tradeId": str(len(self.fills) + 1),
                           "ordId": order.ord_id, "clOrdId": order.cl_ord_id, "billId": self._next_id(),
                           "subType": "1" if order.side == "buy" else "2", "tag": order.tag, "fillPx": fmt(price),
                           "fillSz": fmt(contracts), "fillPnl": fmt(pnl), "side": order.side, "posSide": "net",
                           "execType": "T", "feeCcy": "USDT", "fee": fmt(-fee), "ts": str(now_ms),
                           "fillTime": str(now_ms), "feeRate": fmt(-self.fee_rate)})  # fmt: skip
        if not order.reduce_only and not order.algo_id:
            for a in order.attach:
                algo = Algo(a["attachAlgoId"], a["attachAlgoClOrdId"], SWAP, contracts,
                            _decimal(a["slTriggerPx"]), _decimal(a["tpTriggerPx"]), now_ms)  # fmt: skip
                self.algos.append(algo)

    # --- algo orders -----------------------------------------------------------------------------------------

    def algos_pending(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        types = _types(p)
        return [_swap_row(a) for a in reversed(self.algos) if a.state == "live" and a.ord_type in types]

    def algos_history(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not p.get("algoId") and not p.get("state"):
            raise OkxError(200, "51000", "Parameter algoId or state error")
        types = _types(p)
        rows = [a for a in self.algos if a.state != "live" and a.ord_type in types]
        if p.get("algoId"):
            rows = [a for a in rows if a.algo_id == p["algoId"]]
        return [_swap_row(a) for a in reversed(rows)]

    def place_algo(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """``POST /api/v5/trade/order-algo``: a reduce-only ``oco`` / ``conditional`` closing the position."""
        algo_cl_ord_id = str(p.get("algoClOrdId") or "")
        row = {"algoClOrdId": algo_cl_ord_id, "algoId": "", "clOrdId": "", "tag": str(p.get("tag") or "")}

        def refuse(code: str, msg: str) -> OkxError:
            return OkxError(200, "1", "", {**row, "sCode": code, "sMsg": msg})

        held = self.position
        if p.get("instId") != SWAP or p.get("ordType") not in ("oco", "conditional"):
            raise refuse("51000", "Parameter instId or ordType error")
        if held is None or p.get("tdMode") != held.mgn_mode or str(p.get("reduceOnly")).lower() != "true":
            raise refuse("51169", "Order failed because you don't have any positions in this direction for this "
                                  "contract")  # fmt: skip
        if (p.get("side") == "buy") == (held.side > 0):
            raise refuse("51169", "Order failed because you don't have any positions in this direction for this "
                                  "contract")  # fmt: skip
        if algo_cl_ord_id and not _CL_ORD_ID.match(algo_cl_ord_id):
            raise refuse("51000", "Parameter algoClOrdId error")
        if any(a.algo_cl_ord_id == algo_cl_ord_id and a.state == "live" for a in self.algos):
            raise refuse("51016", "Duplicated client order ID")
        sz, sl, tp = (_decimal(p.get(k)) for k in ("sz", "slTriggerPx", "tpTriggerPx"))
        if sz is None or sz <= 0 or sz % LOT != 0 or sz > abs(held.pos):
            raise refuse("51000", "Parameter sz error")
        if (sl is not None and tp is not None) != (p["ordType"] == "oco") or (sl is None and tp is None):
            raise refuse("51000", "Parameter ordType error")
        last = self.last(now_ms)
        if sl is not None and (sl - last) * held.side >= 0:
            raise refuse("51280", "SL trigger price can not be higher than the last price")
        if tp is not None and (tp - last) * held.side <= 0:
            raise refuse("51279", "TP trigger price can not be lower than the last price")
        algo = Algo(self._next_id(), algo_cl_ord_id, SWAP, sz, sl, tp, now_ms)
        self.algos.append(algo)
        return {**row, "algoId": algo.algo_id, "sCode": "0", "sMsg": ""}

    def amend(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """``POST /api/v5/trade/amend-algos`` on a swap algo order (which side is wrong depends on the position)."""
        algo = self._algo(p)
        row = {"algoClOrdId": algo.algo_cl_ord_id if algo else "", "algoId": str(p.get("algoId") or "")}

        def refuse(code: str, msg: str) -> OkxError:
            return OkxError(200, "1", "", {**row, "reqId": "", "sCode": code, "sMsg": msg})

        if algo is None or algo.state != "live" or self.position is None:
            raise refuse("51603", "Order does not exist")
        side = self.position.side
        last = self.last(now_ms)
        sz, sl, tp = (_decimal(p.get(k)) for k in ("newSz", "newSlTriggerPx", "newTpTriggerPx"))
        if sl is not None and (sl - last) * side >= 0:
            raise refuse("51280", "SL trigger price can not be higher than the last price")
        if tp is not None and (tp - last) * side <= 0:
            raise refuse("51279", "TP trigger price can not be lower than the last price")
        if sz is not None and (sz <= 0 or sz % LOT != 0):
            raise refuse("51000", "Parameter newSz error")
        algo.sz = sz if sz is not None else algo.sz
        algo.sl = sl if sl is not None and algo.sl is not None else algo.sl
        algo.tp = tp if tp is not None and algo.tp is not None else algo.tp
        algo.u_time = now_ms
        return {**row, "reqId": "", "sCode": "0", "sMsg": ""}

    def cancel(self, p: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        algo = self._algo(p)
        if algo is None or algo.state != "live":
            raise OkxError(200, "1", "", {"algoId": str(p.get("algoId")), "sCode": "51603",
                                         "sMsg": "Order does not exist"})  # fmt: skip
        algo.state, algo.u_time = "canceled", now_ms
        return {"algoClOrdId": algo.algo_cl_ord_id, "algoId": algo.algo_id, "sCode": "0", "sMsg": ""}

    def _algo(self, p: Mapping[str, Any]) -> Algo | None:
        for algo in self.algos:
            if (p.get("algoId") and algo.algo_id == p.get("algoId")) or (
                p.get("algoClOrdId") and algo.algo_cl_ord_id == p.get("algoClOrdId")
            ):
                return algo
        return None

    # --- the bar passing -------------------------------------------------------------------------------------

    def settle_funding(self, now_ms: int) -> None:
        """Settle funding when the bar holding ``now_ms`` opens at a funding time (before any order in it)."""
        open_ms, o, _, _ = self.bar(now_ms)
        held, rate = self.position, self.funding.get(open_ms)
        if open_ms in self._funded or held is None or rate is None:
            return
        self._funded.add(open_ms)
        paid = held.pos * CT_VAL * o * rate
        self.cash -= paid
        self.bills.append({"bal": fmt(self.cash), "balChg": fmt(-paid), "billId": self._next_id(), "ccy": "USDT",
                           "execType": "", "fee": "0", "from": "", "instId": SWAP, "instType": "SWAP",
                           "mgnMode": held.mgn_mode, "notes": "", "ordId": "", "pnl": fmt(-paid),
                           "posBal": fmt(held.margin), "posBalChg": "0", "subType": "174" if paid > 0 else "173",
                           "sz": fmt(abs(held.pos)), "to": "", "ts": str(open_ms), "type": "8",
                           "fillPx": fmt(o), "tradeId": "", "clOrdId": "", "tag": ""})  # fmt: skip

    def settle_bar(self, now_ms: int) -> None:
        """Liquidation, then algo orders (stop first, gaps at the open), for the bar holding ``now_ms``."""
        open_ms, o, h, lo = self.bar(now_ms)
        self._bar_ms = open_ms
        for algo in [a for a in self.algos if a.state == "live"]:
            if self.position is None:
                algo.state, algo.u_time = "canceled", open_ms  # reduce-only: nothing left to close
                continue
            side = self.position.side
            if self._liquidated(o, h, lo, algo):
                return
            hit = _trigger(side, o, h, lo, algo)
            if hit is None:
                continue
            which, price = hit
            fill_ms = open_ms + MINUTE_MS // 2
            algo.actual_side, algo.trigger_time, algo.u_time = which, fill_ms, fill_ms
            contracts = min(algo.sz, abs(self.position.pos))
            algo.state = "effective"
            order = SwapOrder(self._next_id(), "", "", "sell" if side > 0 else "buy", contracts,
                              self.position.mgn_mode, True, fill_ms, lever=self.position.lever)  # fmt: skip
            order.algo_id, order.algo_cl_ord_id = algo.algo_id, algo.algo_cl_ord_id
            self.orders.append(order)
            algo.ord_ids.append(order.ord_id)
            self._fill(order, price, fill_ms)
        if self.position is not None:
            self._liquidated(o, h, lo, None)

    def _liquidated(self, o: Decimal, h: Decimal, lo: Decimal, algo: Algo | None) -> bool:
        """Liquidate the position if the bar reaches its liquidation price before ``algo``'s stop."""
        held = self.position
        assert held is not None
        liq = held.liq_px
        reached = lo <= liq if held.side > 0 else h >= liq
        stop_first = algo is not None and algo.sl is not None and (algo.sl - liq) * held.side > 0
        if not reached or stop_first:
            return False
        open_ms = self._bar_ms
        price = min(o, liq) if held.side > 0 else max(o, liq)
        order = SwapOrder(self._next_id(), "", "", "sell" if held.side > 0 else "buy", abs(held.pos), held.mgn_mode,
                          True, open_ms + MINUTE_MS // 2, lever=held.lever, category="full_liquidation")  # fmt: skip
        self.orders.append(order)
        self.liquidations.append((open_ms, price))
        margin = held.margin
        self._fill(order, price, open_ms + MINUTE_MS // 2)
        penalty = margin + order.pnl  # what the closing price left of the margin goes to the insurance fund
        self.cash -= penalty
        order.pnl -= penalty
        for live in [a for a in self.algos if a.state == "live"]:
            live.state = "canceled"
        return True


def _trigger(side: int, o: Decimal, h: Decimal, lo: Decimal, algo: Algo) -> tuple[str, Decimal] | None:
    if side > 0:
        if algo.sl is not None and lo <= algo.sl:
            return "sl", min(o, algo.sl)
        if algo.tp is not None and h >= algo.tp:
            return "tp", max(o, algo.tp)
    else:
        if algo.sl is not None and h >= algo.sl:
            return "sl", max(o, algo.sl)
        if algo.tp is not None and lo <= algo.tp:
            return "tp", min(o, algo.tp)
    return None


def _swap_row(algo: Algo) -> dict[str, Any]:
    row = algo.row()
    row.update({"instType": "SWAP", "tdMode": "isolated", "reduceOnly": "true"})
    return row


def swap_instrument() -> dict[str, Any]:
    """Return ``BTC-USDT-SWAP`` as ``GET /api/v5/public/instruments?instType=SWAP`` lists it."""
    return {"alias": "", "baseCcy": "", "category": "1", "ctMult": "1", "ctType": "linear", "ctVal": fmt(CT_VAL),
            "ctValCcy": "BTC", "expTime": "", "instFamily": "BTC-USDT", "instId": SWAP, "instType": "SWAP",
            "lever": "100", "listTime": "1611916828000", "lotSz": fmt(LOT), "maxIcebergSz": "100000000.0000000000000000",
            "maxLmtAmt": "20000000", "maxLmtSz": "100000000", "maxMktAmt": "", "maxMktSz": "12000",
            "maxStopSz": "12000", "maxTriggerSz": "100000000.0000000000000000", "maxTwapSz": "100000000.0000000000000000",
            "minSz": fmt(LOT), "optType": "", "quoteCcy": "", "settleCcy": "USDT", "state": "live", "ruleType": "normal",
            "stk": "", "tickSz": fmt(TICK), "uly": "BTC-USDT"}  # fmt: skip


def funding_rows(funding: Mapping[int, Decimal], p: Mapping[str, Any], now_ms: int) -> list[dict[str, Any]]:
    """``GET /api/v5/public/funding-rate-history``: settled rates newest first, ``after``/``before``/``limit``."""
    if p.get("instId") != SWAP:
        raise OkxError(400, "51001", "Instrument ID does not exist.")
    after = int(p.get("after") or now_ms + 1)  # rows older than ``after``
    before = int(p.get("before") or -1)  # rows newer than ``before``
    times = sorted((t for t in funding if before < t < after and t <= now_ms), reverse=True)
    limit = int(p.get("limit") or 100)
    if not 1 <= limit <= 100:
        raise OkxError(400, "51000", "Parameter limit error")
    return [{"formulaType": "noRate", "fundingRate": fmt(funding[t]), "fundingTime": str(t), "instId": SWAP,
             "instType": "SWAP", "method": "current_period", "realizedRate": fmt(funding[t])}
            for t in times[:limit]]  # fmt: skip
