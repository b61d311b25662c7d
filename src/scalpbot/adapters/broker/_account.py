"""The ccxt broker's view of one spot market: market rules, reads of the venue, and the snapshot built from them.

Everything here goes through :class:`~scalpbot.adapters.ccxt_common.CcxtCalls` (retries, error mapping). The
snapshot is rebuilt from the venue alone, so a restarted broker knows what an earlier one did: the position is
the base balance above the market minimum (spot holds longs only), its entry is the last buy, its SL/TP are the
open protection orders, its ``max_hold`` rides on the orders (see :mod:`._binance`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import ccxt
import pandas as pd

from scalpbot.adapters.broker import _binance
from scalpbot.adapters.broker._executions import Execution, IdDecoder, executions, fills
from scalpbot.adapters.ccxt_common import CcxtCalls
from scalpbot.adapters.venue_ccxt import venue_from_market
from scalpbot.core.execution import BrokerSnapshot, Position
from scalpbot.core.lots import floor_to_step_nb
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, DataError, ExchangeError

_DAY_MS = 86_400_000
_TRADES_PAGE = 1000
_FINAL = ("closed", "canceled", "expired", "rejected")


class SpotAccount:
    """One bot's account on one ccxt spot market (``symbol`` unified, e.g. ``BTC/USDT``)."""

    def __init__(
        self,
        exchange: Any,
        calls: CcxtCalls,
        *,
        bot: str,
        symbol: str,
        timeframe: str,
        bar: pd.Timedelta,
        fee_rate: float,
        venue: Venue | None = None,
    ) -> None:
        self.exchange = exchange
        self.calls = calls
        self.symbol = symbol
        self.timeframe = timeframe
        self.bar = bar
        self.decoder = IdDecoder(bot, symbol, int(bar.total_seconds()))
        self._fee_rate = fee_rate
        self._market: dict[str, Any] | None = None
        self._venue = venue
        self._final_orders: dict[str, dict[str, Any]] = {}
        self._last_close: tuple[pd.Timestamp, float] | None = None

    # --- the market ------------------------------------------------------------------------------------------

    def market(self) -> dict[str, Any]:
        """Return the ccxt market, loading markets once; raise ``ConfigError`` for an unknown or non-spot symbol."""
        if self._market is None:
            markets = self.calls.call("loading markets", self.exchange.load_markets)
            if self.symbol not in markets:
                raise ConfigError(
                    f"symbol '{self.symbol}' is not listed on {self.exchange.id}; use BASE/QUOTE, e.g. BTC/USDT"
                )
            market: dict[str, Any] = markets[self.symbol]
            if not market.get("spot"):
                raise ConfigError(
                    f"{self.symbol} on {self.exchange.id} is not a spot market; the broker trades spot"
                )
            self._market = market
        return self._market

    def venue(self) -> Venue:
        """Return the venue profile the broker was given, else the one the loaded market describes."""
        if self._venue is None:
            self._venue = venue_from_market(
                self.exchange.id,
                self.market(),
                fees=None,
                precision_mode=int(self.exchange.precisionMode),
                rate_limit_ms=float(self.exchange.rateLimit),
                features=self.exchange.features,
                fetched_at=datetime.now(UTC),
            )
        return self._venue

    def amount(self, qty: float) -> float:
        """Return ``qty`` (base units) rounded down to the venue's amount step as the backtest kernel rounds it."""
        return float(floor_to_step_nb(float(qty), self.venue().amount_step))

    def amount_text(self, qty: float) -> str:
        """Return ``qty`` as the venue wants it written (``0.00008``, never ``8e-05``): ccxt's precision."""
        return str(self.exchange.amount_to_precision(self.symbol, self.amount(qty)))

    def price(self, price: float) -> str:
        """Return ``price`` rounded to the market's tick, as the venue wants it."""
        return str(self.exchange.price_to_precision(self.symbol, price))

    def below_minimum(self, qty: float, price: float) -> str:
        """Return why ``qty`` at ``price`` is below the market's minimum amount or notional, else ``""``."""
        market, venue = self.market(), self.venue()
        min_qty, min_cost = venue.min_amount, venue.min_notional
        base, quote = market["base"], market["quote"]
        if qty <= 0 or qty < min_qty:
            return f"{qty:g} {base} is below the market minimum of {min_qty:g} {base}"
        if qty * price < min_cost:
            return f"{qty * price:.2f} {quote} is below the market minimum notional of {min_cost:g} {quote}"
        return ""

    # --- reads -----------------------------------------------------------------------------------------------

    def lookup(self, client_id: str) -> dict[str, Any] | None:
        """Return the venue's order with ``client_id`` (open or done), or ``None``; call inside ``calls.call``."""
        try:
            order: dict[str, Any] = self.exchange.fetch_order("", self.symbol, {"clientOrderId": client_id})
        except ccxt.OrderNotFound:
            return None
        return order

    def open_orders(self) -> list[dict[str, Any]]:
        """Return the symbol's open orders (ccxt structures)."""
        return list(self.calls.call("reading open orders", self.exchange.fetch_open_orders, self.symbol))

    def balances(self) -> Mapping[str, Any]:
        """Return ccxt's balance structure."""
        balance: Mapping[str, Any] = self.calls.call("reading the balances", self.exchange.fetch_balance)
        return balance

    def free_base(self) -> float:
        """Return the base asset not held by open orders."""
        return float((self.balances().get(self.market()["base"]) or {}).get("free") or 0.0)

    def close_at(self, as_of: pd.Timestamp) -> float:
        """Return the close of bar ``as_of``: from the last snapshot, else from the venue's klines."""
        if self._last_close is not None and self._last_close[0] == as_of:
            return self._last_close[1]
        fetch = self.exchange.fetch_ohlcv
        rows = self.calls.call("reading the last close", fetch, self.symbol, self.timeframe, _ms(as_of), 1)
        if not rows or int(rows[0][0]) != _ms(as_of):
            raise ExchangeError(
                f"{self.exchange.id} has no {self.timeframe} bar at {as_of} to size an entry from"
            )
        return float(rows[0][4])

    def trades_since(self, since: pd.Timestamp | None, as_of: pd.Timestamp) -> list[dict[str, Any]]:
        """Return my trades from the bar of ``since`` on (windows of 24 hours, Binance's limit), or the 1000
        most recent when ``since`` is ``None``."""
        fetch = self.exchange.fetch_my_trades
        if since is None:
            return list(self.calls.call("reading recent trades", fetch, self.symbol, None, _TRADES_PAGE))
        cursor = _ms(since.floor(self.bar))
        horizon = _ms(as_of + self.bar) + 3_600_000  # a run may already have traded in the current bar
        seen: dict[str, dict[str, Any]] = {}
        while True:
            end = cursor + _DAY_MS - 1
            page = self.calls.call("reading trades", fetch, self.symbol, cursor, _TRADES_PAGE, {"until": end})
            seen.update((str(t["id"]), t) for t in page)
            if len(page) >= _TRADES_PAGE:
                cursor = max(cursor + 1, max(int(t["timestamp"]) for t in page))
            elif end >= horizon:
                return list(seen.values())
            else:
                cursor = end + 1

    def executions(self, trades: list[dict[str, Any]]) -> list[Execution]:
        """Return ``trades`` aggregated per order with the order's client id and decoded tag."""
        orders = self._orders({str(t["order"]) for t in trades})
        market = self.market()
        return executions(
            trades, orders, self.decoder, base=market["base"], quote=market["quote"], fee_rate=self._fee_rate
        )

    def _orders(self, order_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Return ccxt orders by venue id: finished ones from the cache (they never change), several missing
        ones with one ``fetch_orders`` from the oldest id on, any left one by one."""
        found = {i: self._final_orders[i] for i in order_ids if i in self._final_orders}
        missing = sorted(order_ids - set(found), key=lambda i: (len(i), i))
        if len(missing) > 1:
            fetch = self.exchange.fetch_orders
            page = self.calls.call("reading orders", fetch, self.symbol, None, 1000, {"orderId": missing[0]})
            found.update((str(o["id"]), o) for o in page if str(o["id"]) in order_ids)
        for order_id in order_ids - set(found):
            found[order_id] = self.calls.call(
                "reading an order", self.exchange.fetch_order, order_id, self.symbol
            )
        for order_id, order in found.items():
            if order.get("status") in _FINAL:
                self._final_orders[order_id] = order
        return found

    # --- the snapshot ----------------------------------------------------------------------------------------

    def snapshot(self, bars: pd.DataFrame, since: pd.Timestamp | None) -> BrokerSnapshot:
        """Return the account after the last bar of ``bars`` closed (see ``CcxtBroker.snapshot``)."""
        as_of, last_close = _last_bar(bars)
        market = self.market()
        balance = self.balances()
        base_total, quote_total = (
            float((balance.get(market[k]) or {}).get("total") or 0.0) for k in ("base", "quote")
        )
        open_orders = self.open_orders()
        done = self.executions(self.trades_since(since, as_of))
        earlier = _Earlier(self, done)
        self._last_close = (as_of, last_close)
        return BrokerSnapshot(
            as_of=as_of,
            equity=quote_total + base_total * last_close,
            position=self._position(base_total, last_close, as_of, open_orders, earlier),
            fills=tuple(
                f for f in fills(done, earlier.entry_before, self.bar) if since is None or f.time >= since
            ),
            open_orders=tuple(str(o.get("clientOrderId")) for o in open_orders),
        )

    def _position(
        self,
        base_total: float,
        last_close: float,
        as_of: pd.Timestamp,
        open_orders: list[dict[str, Any]],
        earlier: _Earlier,
    ) -> Position | None:
        qty = self.amount(base_total)
        if self.below_minimum(qty, last_close):
            return None  # dust: too small to sell, nothing to manage
        guards: dict[str, float] = {}
        max_hold: int | None = None
        for order in open_orders:
            tag = self.decoder.tag(order.get("clientOrderId"), order.get("timestamp"))
            if tag in ("sl", "tp"):
                guards[tag] = _binance.trigger_price(order)
                max_hold = _binance.max_hold_of(order)
        entry = earlier.last_buy(_ms(as_of) + _DAY_MS)
        if entry is not None:
            max_hold = _binance.max_hold_of(dict(entry.order)) if max_hold is None else max_hold
            entry_price, entry_time, entry_id = (
                entry.price,
                pd.Timestamp(entry.time_ms, unit="ms", tz="UTC"),
                entry.client_id,
            )
        else:  # bought outside the bot's reach: hold it at the last close
            entry_price, entry_time, entry_id = last_close, as_of + self.bar, ""
        sl_price, tp_price = guards.get("sl", math.nan), guards.get("tp", math.nan)
        return Position(
            1, qty, entry_price, entry_time.floor(self.bar), sl_price, tp_price, max_hold or 0, entry_id
        )


class _Earlier:
    """Finds the last buy before a moment: the entry an exit closed, or the open position's entry.

    Looks among the executions read for the snapshot, then (once per snapshot) among the venue's most recent
    trades, reading only the one order it needs.
    """

    def __init__(self, account: SpotAccount, done: list[Execution]) -> None:
        self._account = account
        self._done = done
        self._recent: list[dict[str, Any]] | None = None

    def entry_before(self, exit_: Execution) -> Execution | None:
        return self.last_buy(exit_.time_ms)

    def last_buy(self, until_ms: int) -> Execution | None:
        buys = [e for e in self._done if e.side > 0 and e.time_ms <= until_ms]
        if buys:
            return buys[-1]
        if self._recent is None:
            self._recent = self._account.trades_since(None, pd.Timestamp(0, tz="UTC"))
        bought = [t for t in self._recent if t["side"] == "buy" and int(t["timestamp"]) <= until_ms]
        if not bought:
            return None
        last = max(bought, key=lambda t: (int(t["timestamp"]), str(t["id"])))
        (entry,) = self._account.executions([t for t in self._recent if t["order"] == last["order"]])
        return entry


def _last_bar(bars: pd.DataFrame) -> tuple[pd.Timestamp, float]:
    if not isinstance(bars, pd.DataFrame) or len(bars) == 0 or "close" not in bars.columns:
        raise DataError("bars must be a non-empty frame of closed bars with a 'close' column")
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise DataError("bars must have a UTC DatetimeIndex of bar open times (the canonical bar frame)")
    close = float(bars["close"].iloc[-1])
    if not (math.isfinite(close) and close > 0):
        raise DataError(f"the last close ({close}) at {index[-1]} must be a positive price")
    return pd.Timestamp(index[-1]).tz_convert("UTC"), close


def _ms(stamp: pd.Timestamp) -> int:
    return int(stamp.tz_convert("UTC").value // 1_000_000)
