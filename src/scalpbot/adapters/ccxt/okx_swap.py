"""The live broker on OKX linear perpetual swaps (API v5 through ccxt 4.5): positions, shorts, leverage, attached
SL/TP amended to the fill, reduce-only exits and funding read from the account's bills.

* **Settings first.** At the first snapshot the broker requires net position mode (``account/config``
  ``posMode=net_mode``: one position per contract, as the kernel has), sets the configured leverage for the
  configured margin mode (``account/set-leverage``, isolated by default) and reads it back. Every later
  snapshot reads the leverage again (``account/leverage-info``) and the open position's ``lever``/``mgnMode``:
  a venue whose settings differ from the configuration stops the bot with one ``ConfigError`` line.
* **Entries** are one ``POST trade/order`` (``tdMode`` = margin mode, ``sz`` in contracts of ``ctVal`` base
  units) with the stop loss and take profit attached (``attachAlgoOrds``, market orders once triggered,
  ``attachAlgoClOrdId`` = the decision's ``oco`` id), priced at the decision bar's close. Once filled, OKX turns
  the attachment into a reduce-only algo order; the broker amends it (``amend-algos``) to fill-price distances.
  Missing after the fill, it is placed standalone (``trade/order-algo`` with ``reduceOnly``); refused or of
  unknown outcome, the position is closed at market at once (**never unprotected**).
* **Exits** (time, signal, kill, unprotected) cancel the protection, then send a reduce-only market order for the
  whole position: a reduce-only order can only shrink a position, never open one.
* **Restarts.** A position found without protection is protected again once, at its entry's fill-price
  distances (read back from the entry's attached prices and the decision bar's close); the algo order's client
  id is the decision's ``oco`` id and is looked up before it is sent, so a retried cycle or a second restart
  finds it and sends nothing (**never twice**).
* **Reading the venue** per snapshot: leverage, ``account/positions`` (side, size, entry, ``liqPx``),
  ``account/balance``, ``trade/orders-history`` (the bot's fills by client id; a fired SL/TP's close names the
  algo's ``algoClOrdId``; a ``full_liquidation`` close is read as exit reason ``liquidation``),
  ``account/bills`` type 8 (funding settlements, each given to the trade open at its time) and, with a position,
  the pending algo orders (its SL/TP prices).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import ccxt
import pandas as pd

from scalpbot.adapters.ccxt._fills import IdDecoder
from scalpbot.adapters.ccxt._sending import OrderSender
from scalpbot.adapters.ccxt._swap_broker import SwapBroker, linear_swap, ms_after
from scalpbot.adapters.ccxt._swap_reads import MAX_HOLD_TAG, SwapReader, as_float, as_int
from scalpbot.adapters.ccxt.common import RetryPolicy, connect
from scalpbot.adapters.ccxt.okx import OkxSpot, algo_order_request
from scalpbot.core.execution import (
    BrokerSnapshot,
    OrderAck,
    Position,
)
from scalpbot.core.lots import floor_to_step_nb
from scalpbot.core.orders import PlannedOrder, protection_prices
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.errors import ConfigError, ExchangeError, OrderOutcomeUnknown

__all__ = ["OkxSwapBroker"]

OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["swap"]},
    "defaultType": "swap",
    "adjustForTimeDifference": True,
}
ALGO_TYPES = "conditional,oco"
_PAGE = 100


class OkxSwapBroker(SwapBroker):
    """A ``Broker`` on one OKX linear perpetual swap (e.g. ``BTC/USDT:USDT``), one bot per instance.

    ``leverage``/``margin_mode`` are set on the venue at start and checked at every snapshot. Retries, backoff
    and look-ups of orders of unknown outcome as :class:`~scalpbot.adapters.ccxt.broker.CcxtBroker`.
    """

    def __init__(
        self,
        *,
        bot: str,
        symbol: str,
        timeframe: str,
        leverage: float,
        margin_mode: str = "isolated",
        config: Mapping[str, Any] | None = None,
        api_urls: Mapping[str, Any] | None = None,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008  (a frozen value)
        resolve_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.check_names(bot, symbol)
        if margin_mode not in ("isolated", "cross"):
            raise ConfigError(f"margin_mode must be isolated or cross; got {margin_mode!r}")
        if not 1 <= leverage <= 125:
            raise ConfigError(f"leverage must be in [1, 125]; got {leverage!r}")
        self.name = "ccxt:okx-swap"
        self._exchange, self._calls = connect(
            "okx",
            config,
            api_urls=api_urls,
            options=OPTIONS,
            retry=retry,
            sleep=sleep,
            rng=rng,
            strict_json=True,
            rate_window=OkxSpot.rate_window,
        )
        self._bot, self._symbol = bot, symbol
        self._leverage, self._mode = float(leverage), margin_mode
        self._bar = pd.Timedelta(seconds=timeframe_seconds(timeframe))
        self._decoder = IdDecoder(bot, symbol, timeframe_seconds(timeframe))
        self._sender = OrderSender(
            self._calls,
            self._lookup,
            delays=[retry.delay(k + 1) for k in range(resolve_attempts)],
            sleep=sleep,
            is_duplicate=lambda message: "51016" in message,
        )
        self._market: dict[str, Any] | None = None
        self._reads: SwapReader | None = None
        self._closes: dict[pd.Timestamp, float] = {}

    def __repr__(self) -> str:
        return f"OkxSwapBroker(bot={self._bot!r}, symbol={self._symbol!r}, leverage={self._leverage:g})"

    # --- settings --------------------------------------------------------------------------------------------

    def _ready(self) -> dict[str, Any]:
        """Load the market once, require net position mode, set and verify the leverage of the margin mode."""
        if self._market is not None:
            return self._market
        market = linear_swap(
            self._calls.call("loading markets", self._exchange.load_markets), self._symbol, "okx"
        )
        config = self._private("reading the account configuration", "get_account_config", {})
        mode = str((config or [{}])[0].get("posMode"))
        if mode != "net_mode":
            raise ConfigError(
                f"okx account is in position mode '{mode}'; the bot needs one-way (net_mode): change it in the "
                "account settings with no position open"
            )
        self._market = market
        rows = self._private("reading the position", "get_account_positions", {"instId": market["id"]})
        held = next((r for r in rows if as_float(r.get("pos")) != 0.0), None)
        if held is not None:  # never change the settings under an open position: check them instead
            try:
                self._check_leverage(held)
            except ConfigError:
                self._market = None
                raise
            return market
        request = {"instId": market["id"], "lever": _text(self._leverage), "mgnMode": self._mode}
        if self._mode == "isolated":
            request["posSide"] = "net"
        try:
            self._calls.call(
                "setting the leverage", self._exchange.private_post_account_set_leverage, request
            )
        except ExchangeError as e:
            self._market = None
            raise ConfigError(
                f"okx {self._symbol}: cannot set {self._mode} leverage {self._leverage:g}x ({e}); the bot stopped"
            ) from e
        self._check_leverage()
        return market

    def _check_leverage(self, position: Mapping[str, Any] | None = None) -> None:
        """Raise ``ConfigError`` (one line) when the venue's leverage or margin mode differs from the configuration."""
        market = self._market
        assert market is not None
        rows = self._private(
            "reading the leverage",
            "get_account_leverage_info",
            {"instId": market["id"], "mgnMode": self._mode},
        )
        lever = as_float((rows or [{}])[0].get("lever"))
        mode = self._mode
        if position is not None:
            lever, mode = as_float(position.get("lever")) or lever, str(position.get("mgnMode") or mode)
        if not math.isclose(lever, self._leverage, rel_tol=1e-9) or mode != self._mode:
            raise ConfigError(
                f"okx {self._symbol}: the venue trades {lever:g}x {mode}, the configuration says "
                f"{self._leverage:g}x {self._mode}; the bot stopped (set execute.leverage/margin_mode or the venue "
                "back)"
            )

    # --- the Broker port -------------------------------------------------------------------------------------

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        """Rebuild the account from the venue after the last bar of ``bars`` closed (see the module)."""
        market = self._ready()
        closes = bars["close"].to_numpy(dtype=float).tolist()
        self._closes = dict(zip(pd.DatetimeIndex(bars.index), closes, strict=True))
        rows = self._private("reading the position", "get_account_positions", {"instId": market["id"]})
        held = next((r for r in rows if as_float(r.get("pos")) != 0.0), None)
        self._check_leverage(held)
        balance = self._private("reading the balance", "get_account_balance", {"ccy": market["settleId"]})
        details: list[dict[str, Any]] = list((balance or [{}])[0].get("details") or [])
        settled = [d for d in details if d.get("ccy") == market["settleId"]]
        cash = as_float(settled[0].get("cashBal")) if settled else 0.0
        orders = self._private(
            "reading recent orders",
            "get_trade_orders_history",
            {"instType": "SWAP", "instId": market["id"], "limit": str(_PAGE)},
        )
        done = sorted(
            (o for o in orders if as_float(o.get("accFillSz")) > 0),
            key=lambda o: (
                as_int(o.get("fillTime")),
                as_int(o.get("ordId")),
            ),  # a reversal's close, then its entry
        )
        bills = self._private(
            "reading funding settlements",
            "get_account_bills",
            {"instType": "SWAP", "type": "8", "limit": str(_PAGE)},
        )
        entries = {str(o["clOrdId"]): o for o in done if self._tag(o) == "entry"}
        funding = self._reader().funding(bills, done, bars)
        fills = self._reader().fills(done, entries, funding, since)
        as_of = pd.Timestamp(bars.index[-1])
        last = float(bars["close"].iloc[-1])
        position, algos = None, []
        equity = cash
        if held is not None:
            algos = self._pending(market)
            position = self._reader().position(held, entries, algos, done)
            equity += position.side * position.qty * (last - position.entry_price)
        since_funding = tuple(p for p in funding if (since is None or p.time >= since) and p.time <= as_of)
        ids = tuple(str(a.get("algoClOrdId")) for a in algos)
        return BrokerSnapshot(as_of, equity, position, tuple(fills), ids, since_funding)

    # --- orders ----------------------------------------------------------------------------------------------

    def _enter(self, order: PlannedOrder, snapshot: BrokerSnapshot, sl: float, tp: float) -> list[OrderAck]:
        market = self._ready()
        reference = self._closes.get(snapshot.as_of, math.nan)
        if not math.isfinite(reference):
            return [
                OrderAck(
                    order.client_id, "entry", "rejected", f"entry not sent: no close of {snapshot.as_of}"
                )
            ]
        size = float(market["contractSize"])
        contracts = float(floor_to_step_nb(order.size * snapshot.equity / reference / size, _lot(market)))
        if contracts < float(market["limits"]["amount"]["min"] or 0.0) or contracts <= 0:
            message = (
                f"entry not sent: {contracts * size:g} {market['base']} is below one lot of the contract"
            )
            return [OrderAck(order.client_id, "entry", "rejected", message)]
        side = order.side
        sl_px, tp_px = protection_prices(reference, side, sl, tp)
        attached: dict[str, str] = {"attachAlgoClOrdId": self._decoder.client_id(order.decided_at, "oco")}
        if math.isfinite(sl):
            attached |= {"slTriggerPx": self._price(sl_px), "slOrdPx": "-1", "slTriggerPxType": "last"}
        if math.isfinite(tp):
            attached |= {"tpTriggerPx": self._price(tp_px), "tpOrdPx": "-1", "tpTriggerPxType": "last"}
        request = {
            "instId": market["id"],
            "tdMode": self._mode,
            "side": "buy" if side > 0 else "sell",
            "ordType": "market",
            "sz": self._amount(contracts),
            "clOrdId": order.client_id,
            "tag": f"{MAX_HOLD_TAG}{order.max_hold}",
            "attachAlgoOrds": [attached],
        }
        ack, placed = self._sender.place(
            "placing the entry", order.client_id, "entry", lambda: self._send(request)
        )
        if placed is None or ack.status == "rejected":
            return [ack]
        done = ("filled", "canceled")
        filled = self._known(order.client_id)
        if filled is None or filled.get("state") not in done:
            filled = self._sender.resolve(order.client_id, until=lambda o: o.get("state") in done)
        if filled is None or as_float(filled.get("accFillSz")) <= 0:
            return [ack]
        price, contracts = as_float(filled.get("avgPx")), as_float(filled["accFillSz"])
        again = ack.status == "duplicate"
        return [ack, *self._protect(order.decided_at, side, price, (sl, tp), contracts, again=again)]

    def _protect(
        self,
        decided_at: pd.Timestamp,
        side: int,
        price: float,
        distances: tuple[float, float],
        contracts: float,
        *,
        again: bool = False,
    ) -> list[OrderAck]:
        """Amend the attached algo order to fill-price distances, or place it; close at market if refused.

        ``again``: the entry was already on the venue (a retried cycle): an algo order no longer pending has
        finished since (fired or cancelled), so nothing is placed; the next snapshot reads what is held.
        """
        market = self._ready()
        sl, tp = distances
        legs = [
            (self._decoder.client_id(decided_at, i), i)
            for i, d in (("sl", sl), ("tp", tp))
            if math.isfinite(d)
        ]
        if not legs:
            return []
        sl_px, tp_px = protection_prices(price, side, sl, tp)
        prices = {
            "sl": self._price(sl_px) if math.isfinite(sl) else None,
            "tp": self._price(tp_px) if math.isfinite(tp) else None,
        }
        algo_id = self._decoder.client_id(decided_at, "oco")
        found = next((a for a in self._pending(market) if a.get("algoClOrdId") == algo_id), None)
        if found is None and again:
            return []
        try:
            if found is None:
                venue_id = self._place_algo(market, algo_id, side, contracts, prices)
            else:
                venue_id = str(found["algoId"])
                request: dict[str, Any] = {
                    "instId": market["id"],
                    "algoId": venue_id,
                    "newSz": self._amount(contracts),
                }
                for intent, px in prices.items():
                    if px is not None:
                        request |= {f"new{intent.title()}TriggerPx": px, f"new{intent.title()}OrdPx": "-1"}
                amend = self._exchange.private_post_trade_amend_algos
                self._calls.call("amending the SL/TP to the fill price", amend, request, placing=True)
        except (ExchangeError, OrderOutcomeUnknown) as e:
            refused = [OrderAck(i, intent, "rejected", f"protection not set: {e}") for i, intent in legs]
            client_id = self._decoder.client_id(decided_at, "unprotected")
            held = Position(side, self._base(contracts), price, decided_at, math.nan, math.nan, 0, "")
            closed = self._exit(client_id, decided_at, held, "unprotected")
            return refused + [
                OrderAck(a.client_id, a.intent, a.status, f"closed at market: {e}", a.venue_id)
                for a in closed
            ]
        return [OrderAck(i, intent, "accepted", "", venue_id) for i, intent in legs]

    def _place_algo(
        self,
        market: Mapping[str, Any],
        algo_id: str,
        side: int,
        contracts: float,
        prices: Mapping[str, str | None],
    ) -> str:
        sell_or_buy = "sell" if side > 0 else "buy"
        amount = self._amount(contracts)
        request = algo_order_request(
            market["id"], self._mode, sell_or_buy, amount, algo_id, prices, reduce_only=True
        )
        reply = self._calls.place("placing the SL/TP", self._exchange.private_post_trade_order_algo, request)
        return str(((reply.get("data") or [{}])[0]).get("algoId") or "")

    def _reprotect(self, position: Position, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Protect a position found without SL/TP again, at its entry's fill-price distances (once)."""
        decision = self._decoder.decision(position.entry_client_id, ms_after(position.entry_time))
        entry = self._known(position.entry_client_id)
        reference = None if decision is None else self._closes.get(decision[1])
        attached = ((entry or {}).get("attachAlgoOrds") or [{}])[0]
        if decision is None or entry is None or reference is None:
            why = "the position has no SL/TP on the venue and its entry's barriers cannot be read back"
            client_id = self._decoder.client_id(snapshot.as_of, "unprotected")
            return self._exit(client_id, snapshot.as_of, position, f"unprotected: {why}")
        side = position.side
        sl = (
            abs(as_float(attached.get("slTriggerPx")) / reference - 1.0)
            if attached.get("slTriggerPx")
            else math.inf
        )
        tp = (
            abs(as_float(attached.get("tpTriggerPx")) / reference - 1.0)
            if attached.get("tpTriggerPx")
            else math.inf
        )
        contracts = self._contracts(position.qty)
        return self._protect(decision[1], side, position.entry_price, (sl, tp), contracts)

    def _exit(
        self, client_id: str, decided_at: pd.Timestamp, position: Position | None, reason: str
    ) -> list[OrderAck]:
        """Cancel the bot's protection, then close ``position`` with a reduce-only market order."""
        known = self._sender.known("looking up the exit", client_id)
        if known is not None or position is None:
            return [OrderAck(client_id, "exit", "duplicate", "already on the venue")] if known else []
        market = self._ready()
        for algo in self._pending(market):
            if self._decoder.tag(algo.get("algoClOrdId"), as_int(algo.get("cTime"))) == "oco":
                cancel = [{"instId": market["id"], "algoId": str(algo["algoId"])}]
                try:
                    self._calls.call(
                        "cancelling the SL/TP",
                        self._exchange.private_post_trade_cancel_algos,
                        cancel,
                        placing=True,
                    )
                except ExchangeError as e:
                    if "51603" not in str(e):
                        return [
                            OrderAck(
                                client_id, "exit", "rejected", f"exit not sent: SL/TP not cancelled: {e}"
                            )
                        ]
        contracts = self._contracts(position.qty)
        request = {
            "instId": market["id"],
            "tdMode": self._mode,
            "side": "sell" if position.side > 0 else "buy",
            "ordType": "market",
            "sz": self._amount(contracts),
            "reduceOnly": "true",
            "clOrdId": client_id,
            "tag": f"{MAX_HOLD_TAG}0",
        }
        ack, _ = self._sender.place(
            f"closing the position ({reason})", client_id, "exit", lambda: self._send(request)
        )
        return [ack]

    def _send(self, request: Mapping[str, Any]) -> dict[str, Any]:
        reply = self._exchange.private_post_trade_order(dict(request))
        row = dict((reply.get("data") or [{}])[0])
        return {**row, "id": row.get("ordId")}

    # --- reading the venue -----------------------------------------------------------------------------------

    def _private(self, what: str, method: str, request: Mapping[str, Any]) -> list[dict[str, Any]]:
        reply = self._calls.call(what, getattr(self._exchange, f"private_{method}"), dict(request))
        return [dict(row) for row in reply.get("data") or []]

    def _lookup(self, client_id: str) -> dict[str, Any] | None:
        """Return the venue's order with ``client_id`` (raw row plus ``id``), or ``None``."""
        market = self._ready()
        try:
            reply = self._exchange.private_get_trade_order({"instId": market["id"], "clOrdId": client_id})
        except ccxt.OrderNotFound:
            return None
        row = dict((reply.get("data") or [{}])[0])
        return {**row, "id": row.get("ordId")}

    def _known(self, client_id: str) -> dict[str, Any] | None:
        return self._sender.known("reading an order", client_id)

    def _pending(self, market: Mapping[str, Any]) -> list[dict[str, Any]]:
        request = {"ordType": ALGO_TYPES, "instType": "SWAP", "instId": market["id"]}
        return self._private("reading the SL/TP orders", "get_trade_orders_algo_pending", request)

    def _base(self, contracts: float) -> float:
        return self._reader().base(contracts)

    def _contracts(self, qty: float) -> float:
        return self._reader().contracts(qty)

    def _tag(self, order: Mapping[str, Any]) -> str | None:
        return self._reader().tag(order)

    def _reader(self) -> SwapReader:
        if self._reads is None:
            size = float(self._ready()["contractSize"])
            self._reads = SwapReader(self._symbol, self._decoder, self._bar, size)
        return self._reads

    def _price(self, price: float) -> str:
        return str(self._exchange.price_to_precision(self._symbol, price))

    def _amount(self, contracts: float) -> str:
        return str(self._exchange.amount_to_precision(self._symbol, contracts))


def _lot(market: Mapping[str, Any]) -> float:
    return float(market["precision"]["amount"])


def _text(value: float) -> str:
    return f"{value:g}"
