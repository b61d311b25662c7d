"""The ccxt broker's view of one spot market: market rules, reads of the venue, and the snapshot built from them.

Everything here goes through :class:`~scalpbot.adapters.ccxt.common.CcxtCalls` (retries, error mapping). The
snapshot is rebuilt from the venue alone, so a restarted broker knows what an earlier one did: the position is
the base quantity the bot's own executions leave it (entries net of the commission taken in base, less its
exits), above the market minimum; its entry is the bot's last entry, its SL/TP are the open protection orders,
its ``max_hold`` rides on the orders (see the venue family, :mod:`.family`). Base coins the bot did not buy are refused at the
first snapshot unless ``adopt`` is set, in which case the whole base balance is the position.

**Bounded reads.** A snapshot reads the balances, the open orders, the most recent page of the account's trades
on the symbol and (when some of those trades' orders are not cached yet) the most recent page of its orders:
at most four reads however long the bot has been idle, plus one per order older than that page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ccxt
import pandas as pd

from scalpbot.adapters.ccxt._fills import Execution, IdDecoder, executions, fills, own_quantity
from scalpbot.adapters.ccxt.common import CcxtCalls
from scalpbot.adapters.ccxt.venue_profile import venue_from_market
from scalpbot.core.execution import BrokerSnapshot, Position
from scalpbot.core.lots import floor_to_step_nb
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, DataError, ExchangeError

if TYPE_CHECKING:
    from scalpbot.adapters.ccxt.family import Family

_FINAL = ("closed", "canceled", "expired", "rejected")


class SpotAccount:
    """One bot's account on one ccxt spot market (``symbol`` unified, e.g. ``BTC/USDT``) of a venue ``family``."""

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
        family: Family,
        venue: Venue | None = None,
        adopt: bool = False,
    ) -> None:
        self.exchange = exchange
        self.family = family
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
        self._free_quote: tuple[pd.Timestamp, float] | None = None
        self._adopt = adopt
        self._checked_foreign = False

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

    def free_quote_at(self, as_of: pd.Timestamp) -> float:
        """Return the quote currency free after bar ``as_of`` closed: from that bar's snapshot, else read now."""
        if self._free_quote is not None and self._free_quote[0] == as_of:
            return self._free_quote[1]
        return float((self.balances().get(self.market()["quote"]) or {}).get("free") or 0.0)

    def cost(self, quote: float) -> float:
        """Return a quote amount truncated to the price tick, as ccxt sends a market buy's cost (``order_rules``)."""
        return float(floor_to_step_nb(float(quote), self.venue().price_tick))

    def cost_text(self, quote: float) -> str:
        """Return a market buy's quote amount as the venue wants it written (ccxt's cost precision)."""
        return str(self.exchange.cost_to_precision(self.symbol, self.cost(quote)))

    def recent_trades(self) -> list[dict[str, Any]]:
        """Return the account's most recent trades on the symbol (one page, oldest first)."""
        fetch = self.exchange.fetch_my_trades
        return list(self.calls.call("reading recent trades", fetch, self.symbol, None, self.family.page))

    def order_trades(self, order_id: str) -> list[dict[str, Any]]:
        """Return the trades of one order."""
        fetch = self.exchange.fetch_my_trades
        return list(
            self.calls.call(
                "reading an order's trades",
                fetch,
                self.symbol,
                None,
                None,
                self.family.order_trades_params(order_id),
            )
        )

    def executions(self, trades: list[dict[str, Any]]) -> list[Execution]:
        """Return ``trades`` aggregated per order with the order's client id and decoded tag."""
        orders = self._orders({str(t["order"]) for t in trades})
        market = self.market()
        return executions(
            trades, orders, self.decoder, base=market["base"], quote=market["quote"], fee_rate=self._fee_rate
        )

    def _orders(self, order_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Return ccxt orders by venue id: finished ones from the cache (they never change), the others from
        one read of the most recent orders, any still missing one by one."""
        found = {i: self._final_orders[i] for i in order_ids if i in self._final_orders}
        if set(found) != order_ids:
            page = self.family.recent_orders(self, self.family.page)
            found.update((str(o["id"]), o) for o in page if str(o["id"]) in order_ids)
        for order_id in order_ids - set(found):
            found[order_id] = self.calls.call(
                "reading an order", self.exchange.fetch_order, order_id, self.symbol
            )
        found = {i: self.family.read_order(self, o) for i, o in found.items()}
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
        done = self.executions(self.recent_trades())
        held, dust, entry = own_quantity(done, self.amount)
        self._refuse_foreign(base_total - held - dust, last_close)
        self._last_close = (as_of, last_close)
        self._free_quote = (as_of, float((balance.get(market["quote"]) or {}).get("free") or 0.0))
        ours = base_total if self._adopt else min(held, base_total)

        def entry_before(exit_: Execution) -> Execution | None:
            # Executions are in the venue's execution order (trade ids): an exit closes the entry before it, even
            # when a new entry fills in the same millisecond right after it (a time stop and a re-entry at one open).
            earlier = done[: next(k for k, e in enumerate(done) if e.order_id == exit_.order_id)]
            entries = [e for e in earlier if e.tag == "entry" and e.side > 0]
            return entries[-1] if entries else None

        return BrokerSnapshot(
            as_of=as_of,
            equity=quote_total + base_total * last_close,
            position=self._position(ours, last_close, as_of, open_orders, entry),
            fills=tuple(
                f
                for f in fills(done, entry_before, self.bar, self.amount)
                if since is None or f.time >= since
            ),
            open_orders=tuple(str(o.get("clientOrderId")) for o in open_orders),
        )

    def _refuse_foreign(self, foreign: float, last_close: float) -> None:
        """At the first snapshot, refuse base coins above dust that the bot did not buy (unless adopted)."""
        if self._checked_foreign:
            return
        self._checked_foreign = True
        qty = self.amount(foreign)
        if self._adopt or self.below_minimum(qty, last_close):
            return
        base = self.market()["base"]
        raise ConfigError(
            f"the {self.exchange.id} account holds {qty:g} {base} that this bot did not buy; it trades only "
            f"its own inventory. Trade from a dedicated (sub-)account, move the {base} away, or adopt it "
            "explicitly (--adopt, or execute.adopt = true) to let the bot protect and sell it as its position"
        )

    def _position(
        self,
        held: float,
        last_close: float,
        as_of: pd.Timestamp,
        open_orders: list[dict[str, Any]],
        entry: Execution | None,
    ) -> Position | None:
        qty = self.amount(held)
        if self.below_minimum(qty, last_close):
            return None  # dust: too small to sell, nothing to manage
        guards, max_hold = self.family.guards(self, open_orders)
        if entry is not None:
            max_hold = self.family.max_hold_of(entry.order) if max_hold is None else max_hold
            entry_price, entry_time, entry_id = (
                entry.price,
                pd.Timestamp(entry.time_ms, unit="ms", tz="UTC"),
                entry.client_id,
            )
        else:  # adopted: bought outside the bot's reach, held at the last close
            entry_price, entry_time, entry_id = last_close, as_of + self.bar, ""
        sl_price, tp_price = guards.get("sl", math.nan), guards.get("tp", math.nan)
        return Position(
            1, qty, entry_price, entry_time.floor(self.bar), sl_price, tp_price, max_hold or 0, entry_id
        )


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
