"""The Binance spot double answers in the venue's shapes: field names, types and status values, as ccxt parses them.

References: Binance's spot API documentation (order statuses, the ``newOrderRespType=FULL`` reply, account and
trade lists) and ccxt's static response fixture for Binance (repository ccxt/ccxt,
``ts/src/test/static/response/binance.json``, method ``createOrder``, description "spot ..."), whose
``httpResponse`` field names are copied below.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from scalpbot.adapters.ccxt.common import rebased_api_urls

from support.broker_venue import Venue, running_venue

CCXT_SPOT_CREATE_ORDER_FIELDS = {
    "symbol",
    "orderId",
    "orderListId",
    "clientOrderId",
    "transactTime",
    "price",
    "origQty",
    "executedQty",
    "origQuoteOrderQty",
    "cummulativeQuoteQty",
    "status",
    "timeInForce",
    "type",
    "side",
    "workingTime",
    "fills",
    "selfTradePreventionMode",
}
ORDER_STATUSES = {
    "NEW",
    "PENDING_NEW",
    "PARTIALLY_FILLED",
    "FILLED",
    "CANCELED",
    "PENDING_CANCEL",
    "REJECTED",
    "EXPIRED",
    "EXPIRED_IN_MATCH",
}
DECIMAL_FIELDS = ("price", "origQty", "executedQty", "cummulativeQuoteQty", "origQuoteOrderQty")
TRADE_FIELDS = {
    "symbol",
    "id",
    "orderId",
    "orderListId",
    "price",
    "qty",
    "quoteQty",
    "commission",
    "commissionAsset",
    "time",
    "isBuyer",
    "isMaker",
    "isBestMatch",
}


@pytest.fixture
def venue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Venue]:
    with running_venue(monkeypatch) as running:
        yield running


@pytest.fixture
def parser(venue: Venue) -> Any:
    exchange = ccxt.binance({"urls": {"api": rebased_api_urls("binance", venue.server.url)}})
    exchange.options["fetchMarkets"] = {"types": ["spot"]}
    exchange.load_markets()
    return exchange


def market_buy(venue: Venue, client_id: str = "c1") -> dict[str, Any]:
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.00100",
        "newClientOrderId": client_id,
    }
    reply: dict[str, Any] = venue.server.book.new_order(params, venue.server._now_ms())
    return reply


def test_a_market_order_reply_has_the_fields_ccxt_fixture_shows_and_parses_as_a_closed_order(venue, parser):
    reply = market_buy(venue)

    assert set(reply) >= CCXT_SPOT_CREATE_ORDER_FIELDS
    assert reply["status"] in ORDER_STATUSES
    for name in DECIMAL_FIELDS:
        assert isinstance(reply[name], str) and Decimal(reply[name]) >= 0
    fill = reply["fills"][0]
    assert set(fill) == {"price", "qty", "commission", "commissionAsset", "tradeId"}

    order = parser.parse_order(reply)

    assert (order["symbol"], order["type"], order["side"], order["status"]) == (
        "BTC/USDT",
        "market",
        "buy",
        "closed",
    )
    assert order["filled"] == 0.001 and order["clientOrderId"] == "c1"
    assert order["average"] == pytest.approx(float(fill["price"]))
    assert [t["fee"]["currency"] for t in order["trades"]] == ["BTC"] * len(reply["fills"])


def test_an_expired_partial_fill_parses_as_expired_with_its_filled_quantity(venue, parser):
    venue.server.book.liquidity.append((Decimal("0.5"), "EXPIRED_IN_MATCH"))

    order = parser.parse_order(market_buy(venue))

    assert order["status"] == "expired" and order["filled"] == 0.0005 and order["remaining"] == 0.0005


def test_trades_and_balances_have_binances_fields_and_parse(venue, parser):
    market_buy(venue)
    venue.server.book.read()

    (raw,) = [t for t in venue.server.book.my_trades({"symbol": "BTCUSDT"})][:1]
    account = venue.server.book.account(venue.server._now_ms(), omit_zero=False)

    assert set(raw) >= TRADE_FIELDS and isinstance(raw["price"], str) and isinstance(raw["id"], int)
    trade = parser.parse_trade(raw, parser.market("BTC/USDT"))
    assert (trade["side"], trade["fee"]["currency"]) == ("buy", "BTC")
    assert set(account) >= {"makerCommission", "canTrade", "balances", "accountType", "permissions"}
    balance = parser.parse_balance_custom(account, "spot")
    assert balance["BTC"]["total"] == pytest.approx(0.001 * 0.999)
    assert balance["USDT"]["free"] < 10_000
