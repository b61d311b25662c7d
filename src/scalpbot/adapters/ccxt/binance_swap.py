"""The live broker on Binance USDⓈ-M linear perpetuals (``/fapi`` through ccxt 4.5's ``binanceusdm``): positions,
shorts, leverage and margin type, reduce-only protection on the Algo Service, funding from the income history.

* **Settings first.** At the first snapshot the broker requires one-way mode (``GET /fapi/v1/positionSide/dual``
  ``dualSidePosition=false``: one position per symbol, as the kernel has), reads the symbol's margin type and
  leverage (``GET /fapi/v1/symbolConfig``), sets what differs from the configuration (``POST marginType``,
  ISOLATED by default, then ``POST leverage``) and reads them back. Every later snapshot reads them again: a
  venue whose settings differ from the configuration stops the bot with one ``ConfigError`` line. Nothing is
  changed while a position is open.
* **Entries** are one ``MARKET`` order (``newClientOrderId`` = the decision's entry id followed by ``max_hold``),
  sized at the decision bar's close and rounded down to the 0.001 step. USDⓈ-M cannot attach a stop loss or
  take profit to an entry: once filled, the broker places a reduce-only ``STOP_MARKET`` and a reduce-only
  ``TAKE_PROFIT_MARKET`` for the filled quantity at fill-price distances. Since December 2025 these conditional
  orders live on the **Algo Service** (``POST /fapi/v1/algoOrder``, ``algoType=CONDITIONAL``, ``triggerPrice``,
  ``clientAlgoId`` = the decision's ``sl`` / ``tp`` id): ccxt 4.5 sends a ``create_order`` with
  ``stopLossPrice``/``takeProfitPrice`` there. Refused (``-2021`` "would immediately trigger", ...) or of unknown
  outcome, the position is closed at market at once (reduce-only, tag ``unprotected``): **never unprotected**.
* **Exits** (time, signal, kill, unprotected) cancel the bot's conditional orders (``DELETE /fapi/v1/algoOrder``),
  then send a reduce-only market order for the whole position: it can only shrink a position, never open one.
  USDⓈ-M has no OCO: when one leg fires the other stays, reduce-only; the next entry or exit cancels it first.
* **Never twice.** Every order is looked up by its client id before it is sent (``GET /fapi/v1/order``
  ``origClientOrderId``, ``GET /fapi/v1/algoOrder`` ``clientAlgoId``); a lost reply is resolved by looking it up.
* **Restarts.** A position found without protection is protected again once, at the prices of its cancelled
  stop loss and take profit (read back by their client ids), under the restart bar's ids; a retried cycle or a
  second restart finds them open and sends nothing. Without readable barriers it is closed at market.
* **Reading the venue** per snapshot: ``symbolConfig``, ``/fapi/v3/positionRisk`` (side, size, entry,
  ``liquidationPrice``; what ccxt 4.5's ``fetch_positions`` reads), ``/fapi/v3/balance``, ``allOrders``,
  ``userTrades`` (commission, USDT), ``allAlgoOrders`` (which conditional order placed which close),
  ``income`` of type ``FUNDING_FEE`` and, with a position, ``openAlgoOrders``.

ccxt chooses its error classes for Binance by the request's host; the broker reads them as on
``fapi.binance.com`` whatever ``api_url`` points at (a proxy, a mirror, a test server).
"""

from __future__ import annotations

import contextlib
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
from scalpbot.adapters.ccxt._swap_reads import as_float, as_int
from scalpbot.adapters.ccxt._usdm_algos import AlgoLegs
from scalpbot.adapters.ccxt._usdm_reads import UsdmReader, entry_client_id
from scalpbot.adapters.ccxt.common import RetryPolicy, connect
from scalpbot.core.execution import BrokerSnapshot, OrderAck, Position
from scalpbot.core.lots import floor_to_step_nb
from scalpbot.core.orders import PlannedOrder, protection_prices
from scalpbot.core.timeframes import timeframe_seconds
from scalpbot.errors import ConfigError, ExchangeError

__all__ = ["BinanceSwapBroker"]

OPTIONS: dict[str, Any] = {
    "fetchCurrencies": False,
    "fetchMarkets": {"types": ["linear"]},
    "defaultType": "swap",
    "adjustForTimeDifference": True,
}
_PAGE = 500
_MARGIN_TYPES = {"isolated": "ISOLATED", "cross": "CROSSED"}


class BinanceSwapBroker(SwapBroker):
    """A ``Broker`` on one Binance USDⓈ-M linear perpetual (e.g. ``BTC/USDT:USDT``), one bot per instance.

    ``leverage`` (a whole number, 1..125) and ``margin_mode`` are set on the venue at start and checked at every
    snapshot. An entry (a reversal's too) is ``size x`` the snapshot's equity (cash plus the position marked at the
    decision bar's close) in contracts at that close, rounded down to the step, as the kernel sizes a swap entry.
    Retries, backoff and look-ups of orders of unknown outcome as the other ccxt brokers.
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
        if margin_mode not in _MARGIN_TYPES:
            raise ConfigError(f"margin_mode must be isolated or cross; got {margin_mode!r}")
        if not (1 <= leverage <= 125 and float(leverage).is_integer()):
            raise ConfigError(f"binance leverage must be a whole number in [1, 125]; got {leverage!r}")
        self.name = "ccxt:binanceusdm"
        self._exchange, self._calls = connect(
            "binanceusdm",
            config,
            api_urls=api_urls,
            options=OPTIONS,
            retry=retry,
            sleep=sleep,
            rng=rng,
            strict_json=True,
        )
        exceptions = self._exchange.exceptions  # the fapi error classes, whatever host answers
        exceptions["exact"] = {**exceptions["exact"], **exceptions["linear"]["exact"]}
        exceptions["broad"] = {**exceptions["broad"], **exceptions["linear"].get("broad", {})}
        self._bot, self._symbol = bot, symbol
        self._leverage, self._mode = int(leverage), margin_mode
        self._bar = pd.Timedelta(seconds=timeframe_seconds(timeframe))
        self._decoder = IdDecoder(bot, symbol, timeframe_seconds(timeframe))
        self._reader = UsdmReader(symbol, self._decoder, self._bar)
        self._legs = AlgoLegs(self._exchange, self._calls, self._decoder, symbol)
        delays = [retry.delay(k + 1) for k in range(resolve_attempts)]

        def is_duplicate(message: str) -> bool:
            return "-4116" in message  # a client id held by an open order

        self._sender = OrderSender(
            self._calls, self._lookup, delays=delays, sleep=sleep, is_duplicate=is_duplicate
        )
        self._algo_sender = OrderSender(
            self._calls, self._legs.find, delays=delays, sleep=sleep, is_duplicate=is_duplicate
        )
        self._market: dict[str, Any] | None = None
        self._closes: dict[pd.Timestamp, float] = {}

    def __repr__(self) -> str:
        return f"BinanceSwapBroker(bot={self._bot!r}, symbol={self._symbol!r}, leverage={self._leverage})"

    # --- settings --------------------------------------------------------------------------------------------

    def _ready(self) -> dict[str, Any]:
        """Load the market once, require one-way mode, set and verify the margin type and leverage."""
        if self._market is not None:
            return self._market
        markets = self._calls.call("loading markets", self._exchange.load_markets)
        market = linear_swap(markets, self._symbol, "binance USD-M")
        dual = self._calls.call(
            "reading the position mode", self._exchange.fapiPrivateGetPositionSideDual, {}
        )
        if str(dual.get("dualSidePosition")).lower() != "false":
            raise ConfigError(
                "binance USD-M account is in hedge mode (dualSidePosition); the bot needs one-way mode: change "
                "it in the futures settings with no position open"
            )
        self._market = market
        try:
            if self._held(market) is None:  # never change the settings under an open position
                self._apply_settings(market)
            self._check_settings(market)
        except ConfigError:
            self._market = None
            raise
        return market

    def _apply_settings(self, market: Mapping[str, Any]) -> None:
        kind, leverage = self._settings(market)
        try:
            if kind != _MARGIN_TYPES[self._mode]:
                request = {"symbol": market["id"], "marginType": _MARGIN_TYPES[self._mode]}
                self._calls.call("setting the margin type", self._exchange.fapiPrivatePostMarginType, request)
            if leverage != self._leverage:
                request = {"symbol": market["id"], "leverage": self._leverage}
                self._calls.call("setting the leverage", self._exchange.fapiPrivatePostLeverage, request)
        except ExchangeError as e:
            raise ConfigError(
                f"binance {self._symbol}: cannot set {self._mode} leverage {self._leverage}x ({e}); the bot "
                "stopped"
            ) from e

    def _settings(self, market: Mapping[str, Any]) -> tuple[str, int]:
        """Return the venue's ``(marginType, leverage)`` of the symbol."""
        rows = self._calls.call(
            "reading the leverage", self._exchange.fapiPrivateGetSymbolConfig, {"symbol": market["id"]}
        )
        row: dict[str, Any] = next((r for r in rows if r.get("symbol") == market["id"]), {})
        return str(row.get("marginType") or ""), as_int(row.get("leverage"))

    def _check_settings(self, market: Mapping[str, Any]) -> None:
        """Raise ``ConfigError`` (one line) when the venue's leverage or margin type differs from the
        configuration."""
        kind, leverage = self._settings(market)
        if kind != _MARGIN_TYPES[self._mode] or leverage != self._leverage:
            mode = {v: k for k, v in _MARGIN_TYPES.items()}.get(kind, kind.lower())
            raise ConfigError(
                f"binance {self._symbol}: the venue trades {leverage}x {mode}, the configuration says "
                f"{self._leverage}x {self._mode}; the bot stopped (set execute.leverage/margin_mode or the venue "
                "back)"
            )

    # --- the Broker port -------------------------------------------------------------------------------------

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        """Rebuild the account from the venue after the last bar of ``bars`` closed (see the module)."""
        started = self._market is None
        market = self._ready()  # at start: sets the settings and reads them back
        closes = bars["close"].to_numpy(dtype=float).tolist()
        self._closes = dict(zip(pd.DatetimeIndex(bars.index), closes, strict=True))
        if not started:
            self._check_settings(market)
        held = self._held(market)
        balance = self._read("reading the balance", "fapiPrivateV3GetBalance", {})
        cash = next(
            (as_float(b.get("balance")) for b in balance if b.get("asset") == market["settleId"]), 0.0
        )
        symbol = {"symbol": market["id"], "limit": _PAGE}
        orders = self._read("reading recent orders", "fapiPrivateGetAllOrders", symbol)
        trades = self._read("reading recent trades", "fapiPrivateGetUserTrades", symbol)
        fired_rows = self._read("reading the conditional orders", "fapiPrivateGetAllAlgoOrders", symbol)
        income = self._read(
            "reading funding settlements",
            "fapiPrivateGetIncome",
            {"symbol": market["id"], "incomeType": "FUNDING_FEE", "limit": _PAGE},
        )
        done = sorted(
            (o for o in orders if as_float(o.get("executedQty")) > 0),
            key=lambda o: (as_int(o.get("updateTime")), as_int(o.get("orderId"))),
        )
        fees: dict[str, float] = {}
        for trade in trades:
            key = str(trade.get("orderId"))
            fees[key] = fees.get(key, 0.0) + as_float(trade.get("commission"))
        fired = {str(a.get("actualOrderId")): a for a in fired_rows if a.get("actualOrderId")}
        funding = self._reader.funding(income, done, bars)
        fills = self._reader.fills(done, fees, fired, funding, since)
        as_of = pd.Timestamp(bars.index[-1])
        last = float(bars["close"].iloc[-1])
        position, algos = None, []
        equity = cash
        if held is not None:
            algos = self._legs.open(market)
            position = self._reader.position(held, done, algos)
            equity += position.side * position.qty * (last - position.entry_price)
        since_funding = tuple(p for p in funding if (since is None or p.time >= since) and p.time <= as_of)
        ids = tuple(str(a.get("clientAlgoId")) for a in algos)
        return BrokerSnapshot(as_of, equity, position, tuple(fills), ids, since_funding)

    # --- orders ----------------------------------------------------------------------------------------------

    def _enter(self, order: PlannedOrder, snapshot: BrokerSnapshot, sl: float, tp: float) -> list[OrderAck]:
        market = self._ready()
        reference = self._closes.get(snapshot.as_of, math.nan)
        if not math.isfinite(reference):
            message = f"entry not sent: no close of {snapshot.as_of}"
            return [OrderAck(order.client_id, "entry", "rejected", message)]
        qty = float(floor_to_step_nb(order.size * snapshot.equity / reference, _step(market)))
        least = float(market["limits"]["amount"]["min"] or 0.0)
        notional = float(market["limits"]["cost"]["min"] or 0.0)
        if qty <= 0 or qty < least or qty * reference < notional:
            message = f"entry not sent: {qty:g} {market['base']} is below the minimum order of the contract"
            return [OrderAck(order.client_id, "entry", "rejected", message)]
        side = "buy" if order.side > 0 else "sell"
        venue_id = entry_client_id(order.client_id, order.max_hold)
        if self._sender.known("looking up the entry", venue_id) is None:  # not a retried cycle's entry
            leftover = self._legs.cancel_own(market)  # a leg left by the other one firing: not under an entry
            if leftover is not None:
                return [OrderAck(order.client_id, "entry", "rejected", f"entry not sent: {leftover}")]
        params = {"newClientOrderId": venue_id}
        amount = float(self._amount(qty))

        def send() -> dict[str, Any]:
            placed = self._exchange.create_order(self._symbol, "market", side, amount, None, params)
            return {**dict(placed.get("info") or {}), "id": placed.get("id")}

        ack, placed = self._sender.place("placing the entry", venue_id, "entry", send)
        ack = OrderAck(order.client_id, ack.intent, ack.status, ack.message, ack.venue_id)
        if placed is None or ack.status == "rejected":
            return [ack]
        filled = placed if placed.get("status") == "FILLED" else None
        if filled is None:
            filled = self._sender.resolve(venue_id, until=lambda o: o.get("status") in ("FILLED", "EXPIRED"))
        if filled is None or as_float(filled.get("executedQty")) <= 0:
            return [ack]
        price, qty = as_float(filled.get("avgPrice")), as_float(filled["executedQty"])
        return [ack, *self._protect(order.decided_at, order.side, price, (sl, tp), qty)]

    def _protect(
        self,
        decided_at: pd.Timestamp,
        side: int,
        price: float,
        distances: tuple[float, float],
        qty: float,
        *,
        prices: Mapping[str, float] | None = None,
    ) -> list[OrderAck]:
        """Place the reduce-only stop loss and take profit (Algo Service) at fill-price distances (or at
        ``prices``); close the position at market if either is refused.

        Each leg is looked up by its client id first: a retried cycle finds what it placed (accepted, fired or
        cancelled since) and sends nothing again.
        """
        sl, tp = distances
        at = dict(prices or {})
        if not at:
            sl_px, tp_px = protection_prices(price, side, sl, tp)
            at = {k: v for k, v in (("sl", sl_px), ("tp", tp_px)) if math.isfinite(v)}
        legs: list[tuple[str, str]] = [
            (self._decoder.client_id(decided_at, intent), intent) for intent in ("sl", "tp") if intent in at
        ]
        if not legs:
            return []
        acks: list[OrderAck] = []
        for client_id, intent in legs:

            def send(c: str = client_id, i: str = intent) -> dict[str, Any]:
                return self._legs.send(c, i, side, self._amount(qty), self._price(at[i]))

            what = f"placing the {'stop loss' if intent == 'sl' else 'take profit'}"
            ack, _ = self._algo_sender.place(what, client_id, intent, send)
            if ack.status == "rejected":
                return self._close_unprotected(legs, ack.message, decided_at, side, qty, price)
            acks.append(ack)
        return acks

    def _close_unprotected(
        self,
        legs: list[tuple[str, str]],
        why: str,
        decided_at: pd.Timestamp,
        side: int,
        qty: float,
        price: float,
    ) -> list[OrderAck]:
        """Close a position whose protection was refused: cancel any leg placed, then close at market."""
        placed = {c for c, _ in legs}
        refused = [OrderAck(c, i, "rejected", f"protection not set: {why}") for c, i in legs]
        market = self._ready()
        for algo in self._legs.open(market):
            if (
                str(algo.get("clientAlgoId")) in placed
            ):  # reduce-only: left, the next entry or exit cancels it
                with contextlib.suppress(ExchangeError):
                    self._legs.cancel(market, algo)
        client_id = self._decoder.client_id(decided_at, "unprotected")
        held = Position(side, qty, price, decided_at, math.nan, math.nan, 0, "")
        closed = self._exit(client_id, decided_at, held, "unprotected")
        message = f"closed at market: {why}"
        return refused + [OrderAck(a.client_id, a.intent, a.status, message, a.venue_id) for a in closed]

    def _reprotect(self, position: Position, snapshot: BrokerSnapshot) -> list[OrderAck]:
        """Protect a position found without SL/TP again, at its cancelled legs' prices (once)."""
        decision = self._decoder.decision(position.entry_client_id, ms_after(position.entry_time))
        prices: dict[str, float] = {}
        if decision is not None:
            for intent in ("sl", "tp"):
                leg = self._legs.find(self._decoder.client_id(decision[1], intent))
                if leg is not None and as_float(leg.get("triggerPrice")) > 0:
                    prices[intent] = as_float(leg.get("triggerPrice"))
        if not prices:
            why = "the position has no SL/TP on the venue and its entry's barriers cannot be read back"
            client_id = self._decoder.client_id(snapshot.as_of, "unprotected")
            return self._exit(client_id, snapshot.as_of, position, f"unprotected: {why}")
        distances = (math.inf, math.inf)
        return self._protect(
            snapshot.as_of, position.side, position.entry_price, distances, position.qty, prices=prices
        )

    def _exit(
        self, client_id: str, decided_at: pd.Timestamp, position: Position | None, reason: str
    ) -> list[OrderAck]:
        """Cancel the bot's protection, then close ``position`` with a reduce-only market order."""
        if self._sender.known("looking up the exit", client_id) is not None:
            return [OrderAck(client_id, "exit", "duplicate", "already on the venue")]
        if position is None:
            return []
        market = self._ready()
        failed = self._legs.cancel_own(market)
        if failed is not None:
            return [OrderAck(client_id, "exit", "rejected", f"exit not sent: {failed}")]
        side = "sell" if position.side > 0 else "buy"
        params = {"newClientOrderId": client_id, "reduceOnly": True}
        amount = float(self._amount(position.qty))

        def send() -> dict[str, Any]:
            placed = self._exchange.create_order(self._symbol, "market", side, amount, None, params)
            return {**dict(placed.get("info") or {}), "id": placed.get("id")}

        return [self._sender.place(f"closing the position ({reason})", client_id, "exit", send)[0]]

    # --- reading the venue -----------------------------------------------------------------------------------

    def _read(self, what: str, method: str, request: Mapping[str, Any]) -> list[dict[str, Any]]:
        reply = self._calls.call(what, getattr(self._exchange, method), dict(request))
        return [dict(row) for row in reply or []]

    def _held(self, market: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = self._read("reading the position", "fapiPrivateV3GetPositionRisk", {"symbol": market["id"]})
        return next(
            (r for r in rows if r.get("symbol") == market["id"] and as_float(r.get("positionAmt")) != 0.0),
            None,
        )

    def _lookup(self, client_id: str) -> dict[str, Any] | None:
        """Return the venue's order with ``client_id`` (raw row plus ``id``), or ``None``."""
        market = self._ready()
        request = {"symbol": market["id"], "origClientOrderId": client_id}
        try:
            row = dict(self._exchange.fapiPrivateGetOrder(request))
        except ccxt.OrderNotFound:
            return None
        return {**row, "id": str(row.get("orderId"))}

    def _price(self, price: float) -> str:
        return str(self._exchange.price_to_precision(self._symbol, price))

    def _amount(self, qty: float) -> str:
        return str(self._exchange.amount_to_precision(self._symbol, qty))


def _step(market: Mapping[str, Any]) -> float:
    return float(market["precision"]["amount"])
