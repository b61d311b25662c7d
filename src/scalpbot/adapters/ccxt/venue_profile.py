"""Read a venue profile from the exchange through ccxt: ``load_markets`` and, with API keys, ``fetch_trading_fees``.

ccxt's unified market (``precision``, ``limits``, ``type``, ``taker``/``maker``) is turned into a
:class:`~scalpbot.core.venue.Venue` by :func:`venue_from_market`, a pure function of ccxt's structures:

* ``precision.amount`` / ``precision.price`` are the amount step and price tick (ccxt's ``TICK_SIZE`` mode, as on
  Binance; in ``DECIMAL_PLACES`` mode a precision of ``p`` is a step of ``10**-p``); ``limits.amount.min`` and
  ``limits.cost.min`` the minimum amount and notional. Source ``exchange``.
* the account's own fees come from ``fetch_trading_fees`` (source ``exchange``); without API keys, or where the
  venue does not offer it, ccxt's published schedule in the market (source ``ccxt``).
* shorts: a spot market cannot be shorted (the bot trades the spot account and does not borrow); swaps and
  futures can (source ``exchange``: it follows from the market's type).
* protection: attached SL/TP where ccxt's ``features`` describe ``createOrder``'s ``attachedStopLossTakeProfit``
  (``None`` where it has none), OCO on Binance spot (``/api/v3/orderList/oco``), reduce-only stops on derivatives; the rate limit is ccxt's
  ``rateLimit`` (source ``ccxt``). The request-weight budget is not in ccxt's unified structures: it stays the
  default profile's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from scalpbot.adapters.ccxt.common import connect
from scalpbot.core.venue import VALUE_FIELDS, Source, Venue, default_venue, market_type_of
from scalpbot.errors import ConfigError, ExchangeError

__all__ = ["fetch_venue", "venue_from_market"]

_DECIMAL_PLACES = 2  # ccxt.DECIMAL_PLACES; TICK_SIZE is 4


def venue_from_market(
    exchange_id: str,
    market: Mapping[str, Any],
    *,
    fees: Mapping[str, Any] | None,
    precision_mode: int,
    rate_limit_ms: float,
    features: Mapping[str, Any] | None,
    fetched_at: datetime,
) -> Venue:
    """Return the profile of one ccxt ``market`` (see the module docstring); ``fees`` is the symbol's entry of
    ``fetch_trading_fees`` or ``None``."""
    symbol = str(market["symbol"])
    kind = str(market.get("type") or market_type_of(symbol))
    if kind not in ("spot", "swap", "future"):
        raise ConfigError(
            f"{symbol} on {exchange_id} is a {kind} market; scalpbot trades spot, swap or future"
        )
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    sources: dict[str, Source] = dict.fromkeys(VALUE_FIELDS, "exchange")
    if fees is not None and fees.get("taker") is not None:
        taker, maker = float(fees["taker"]), float(fees.get("maker", fees["taker"]))
    else:
        taker, maker = float(market.get("taker") or 0.0), float(market.get("maker") or 0.0)
        sources.update(taker_fee="ccxt", maker_fee="ccxt")
    sources.update(
        protection="ccxt",
        rate_limit_ms="ccxt",
        request_weight_per_minute="default",
        buy_fee_in_base="default",
    )
    return Venue(
        exchange=exchange_id,
        symbol=symbol,
        market_type="spot" if kind == "spot" else "swap" if kind == "swap" else "future",
        taker_fee=taker,
        maker_fee=maker,
        amount_step=_step(precision.get("amount"), precision_mode),
        price_tick=_step(precision.get("price"), precision_mode),
        min_amount=_limit(limits, "amount"),
        min_notional=_limit(limits, "cost"),
        shorts=kind != "spot",
        buy_fee_in_base=kind == "spot",
        protection=_protection(exchange_id, kind, features or {}),
        rate_limit_ms=float(rate_limit_ms or 0.0),
        request_weight_per_minute=default_venue(exchange_id, symbol).request_weight_per_minute,
        sources=sources,
        fetched_at=fetched_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _step(value: Any, precision_mode: int) -> float:
    if value is None:
        return 0.0
    number = float(value)
    if precision_mode == _DECIMAL_PLACES:
        return 10.0 ** -int(number)
    return number if math.isfinite(number) and number > 0 else 0.0


def _limit(limits: Mapping[str, Any], name: str) -> float:
    value = (limits.get(name) or {}).get("min")
    return float(value) if value is not None and math.isfinite(float(value)) else 0.0


def _protection(exchange_id: str, kind: str, features: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    if exchange_id == "binance" and kind == "spot":
        found.append("oco")
    section = features.get(kind) or {}
    if kind != "spot":  # derivatives: ccxt groups features by linear/inverse
        section = section.get("linear") or section.get("inverse") or {}
    create = (section or {}).get("createOrder") or {}
    if create.get("attachedStopLossTakeProfit") is not None:  # ccxt: a dict of details when supported
        found.append("attached")
    if kind != "spot":  # every derivatives venue takes reduce-only orders
        found.append("reduce_only")
    return tuple(found)


def fetch_venue(
    exchange_id: str,
    symbol: str,
    *,
    config: Mapping[str, Any] | None,
    api_urls: Mapping[str, Any] | None,
    now: datetime,
    max_attempts: int = 5,
) -> Venue:
    """Return the profile of ``symbol`` read from ``exchange_id`` (markets, and the account's fees with keys).

    ``config`` is ccxt's constructor dict (``timeout``, ``options``, ``sandbox``, credentials); ``api_urls``
    replaces ``urls['api']``. Raise ``ConfigError`` for an unknown symbol, ``ExchangeError`` if the venue fails.
    """
    exchange, calls = connect(
        exchange_id,
        config,
        api_urls=api_urls,
        max_attempts=max_attempts,
        base_delay=1.0,
        max_delay=30.0,
        sleep=time.sleep,
        rng=None,
        strict_json=True,
    )
    markets = calls.call("loading markets", exchange.load_markets)
    if symbol not in markets:
        raise ConfigError(f"symbol '{symbol}' is not listed on {exchange_id}; use BASE/QUOTE, e.g. BTC/USDT")
    fees: Mapping[str, Any] | None = None
    if exchange.apiKey and exchange.has.get("fetchTradingFees"):
        try:
            fees = calls.call("reading the trading fees", exchange.fetch_trading_fees).get(symbol)
        except ExchangeError:
            fees = None  # the published schedule stands in, marked as ccxt's
    return venue_from_market(
        exchange_id,
        markets[symbol],
        fees=fees,
        precision_mode=int(exchange.precisionMode),
        rate_limit_ms=float(exchange.rateLimit),
        features=exchange.features,
        fetched_at=now,
    )
