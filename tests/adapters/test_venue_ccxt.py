"""A venue profile from ccxt's unified structures: steps, minimums, the account's fees, shorts and protection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import ccxt
import pytest

from scalpbot.adapters.ccxt.venue_profile import venue_from_market
from scalpbot.errors import ConfigError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _market(**changes: Any) -> dict[str, Any]:
    market: dict[str, Any] = {
        "symbol": "BTC/USDT",
        "type": "spot",
        "spot": True,
        "margin": True,  # the account could borrow; the bot trades the spot account and does not
        "taker": 0.001,
        "maker": 0.001,
        "precision": {"amount": 1e-05, "price": 0.01},
        "limits": {"amount": {"min": 1e-05, "max": 9000.0}, "cost": {"min": 5.0, "max": None}},
    }
    market.update(changes)
    return market


def test_a_binance_spot_market_gives_its_filters_and_no_shorts() -> None:
    binance = ccxt.binance()
    venue = venue_from_market(
        "binance",
        _market(),
        fees=None,
        precision_mode=binance.precisionMode,
        rate_limit_ms=binance.rateLimit,
        features=binance.features,
        fetched_at=NOW,
    )
    assert (venue.amount_step, venue.price_tick, venue.min_amount, venue.min_notional) == (
        1e-5,
        0.01,
        1e-5,
        5.0,
    )
    assert venue.shorts is False and venue.protection == ("oco",)
    assert venue.fetched_at == "2026-01-02T03:04:05Z"
    assert venue.sources["amount_step"] == "exchange" and venue.sources["taker_fee"] == "ccxt"
    assert venue.sources["request_weight_per_minute"] == "default" and venue.request_weight_per_minute == 6000


def test_the_accounts_own_fees_come_from_the_exchange() -> None:
    venue = venue_from_market(
        "binance",
        _market(),
        fees={"symbol": "BTC/USDT", "taker": 0.00075, "maker": 0.00075},
        precision_mode=ccxt.TICK_SIZE,
        rate_limit_ms=50,
        features=None,
        fetched_at=NOW,
    )
    assert (venue.taker_fee, venue.maker_fee) == (0.00075, 0.00075)
    assert venue.sources["taker_fee"] == venue.sources["maker_fee"] == "exchange"


def test_decimal_places_precision_becomes_a_step_and_a_swap_can_short() -> None:
    swap = _market(symbol="BTC/USDT:USDT", type="swap", spot=False, precision={"amount": 3, "price": 1})
    venue = venue_from_market(
        "okx",
        swap,
        fees=None,
        precision_mode=ccxt.DECIMAL_PLACES,
        rate_limit_ms=100,
        features=ccxt.okx().features,
        fetched_at=NOW,
    )
    assert venue.amount_step == pytest.approx(0.001) and venue.price_tick == pytest.approx(0.1)
    assert venue.shorts is True and venue.market_type == "swap"
    assert venue.protection == ("attached", "reduce_only")


def test_a_spot_venue_whose_create_order_takes_sl_and_tp_offers_attached_protection() -> None:
    bybit = ccxt.bybit()
    venue = venue_from_market(
        "bybit",
        _market(),
        fees=None,
        precision_mode=bybit.precisionMode,
        rate_limit_ms=bybit.rateLimit,
        features=bybit.features,
        fetched_at=NOW,
    )
    assert venue.protection == ("attached",) and venue.shorts is False


def test_an_option_market_is_refused() -> None:
    with pytest.raises(ConfigError, match="option market"):
        venue_from_market(
            "deribit",
            _market(type="option"),
            fees=None,
            precision_mode=ccxt.TICK_SIZE,
            rate_limit_ms=50,
            features=None,
            fetched_at=NOW,
        )
