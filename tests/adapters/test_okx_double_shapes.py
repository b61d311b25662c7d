"""The OKX spot double answers in the venue's shapes: field names, types and state values, as ccxt parses them.

References: OKX's API v5 documentation (order states, algo order states, the order and fill details) and
ccxt's static response fixture for OKX (repository ccxt/ccxt, ``ts/src/test/static/response/okx.json``,
method ``createOrder``), whose ``httpResponse`` field names are copied below; the order fields are those of
a real ``GET /api/v5/trade/order`` reply for a filled spot buy (commission in BTC, a negative ``fee``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ccxt
import pytest

from scalpbot.adapters.ccxt.common import rebased_api_urls

from support.okx_server import KEY, PASSPHRASE, SECRET
from support.okx_venue import OkxVenue, running_okx

CCXT_CREATE_ORDER_FIELDS = {"clOrdId", "ordId", "sCode", "sMsg", "tag", "ts"}
CCXT_CREATE_ALGO_ORDER_FIELDS = {"algoClOrdId", "algoId", "clOrdId", "sCode", "sMsg", "tag"}
ORDER_FIELDS = {
    "accFillSz", "algoClOrdId", "algoId", "avgPx", "cTime", "cancelSource", "cancelSourceReason", "category",
    "ccy", "clOrdId", "fee", "feeCcy", "fillPx", "fillSz", "fillTime", "instId", "instType", "lever", "ordId",
    "ordType", "pnl", "posSide", "px", "quickMgnType", "rebate", "rebateCcy", "reduceOnly", "side", "slOrdPx",
    "slTriggerPx", "slTriggerPxType", "source", "state", "sz", "tag", "tdMode", "tgtCcy", "tpOrdPx",
    "tpTriggerPx", "tpTriggerPxType", "tradeId", "uTime",
}  # fmt: skip
ORDER_STATES = {"canceled", "live", "partially_filled", "filled", "mmp_canceled"}
ALGO_STATES = {
    "live",
    "pause",
    "partially_effective",
    "effective",
    "canceled",
    "order_failed",
    "partially_failed",
}
FILL_FIELDS = {"instType", "instId", "tradeId", "ordId", "clOrdId", "billId", "tag", "fillPx", "fillSz", "side",
               "posSide", "execType", "feeCcy", "fee", "ts", "fillTime"}  # fmt: skip


@pytest.fixture
def okx(monkeypatch: pytest.MonkeyPatch) -> Iterator[OkxVenue]:
    with running_okx(monkeypatch) as running:
        yield running


@pytest.fixture
def client(okx: OkxVenue) -> Any:
    exchange = ccxt.okx(
        {
            "apiKey": KEY,
            "secret": SECRET,
            "password": PASSPHRASE,
            "urls": {"api": rebased_api_urls("okx", okx.server.url)},
            "options": {"fetchMarkets": {"types": ["spot"]}},
        }
    )
    exchange.load_markets()
    return exchange


def buy(client: Any, **extra: Any) -> dict[str, Any]:
    body = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "tgtCcy": "base_ccy"}
    reply: dict[str, Any] = client.private_post_trade_order({**body, "sz": "0.001", **extra})
    return reply


def test_an_order_reply_has_the_fields_of_ccxts_fixture_and_parses_into_an_order_id(client):
    reply = buy(client, clOrdId="abc123")

    (row,) = reply["data"]
    assert set(row) == CCXT_CREATE_ORDER_FIELDS and reply["code"] == "0"
    order = client.parse_order(row, client.market("BTC/USDT"))
    assert (order["id"], order["clientOrderId"]) == (row["ordId"], "abc123")


def test_a_filled_spot_buy_reads_as_okx_reports_it_and_ccxt_parses_its_fill_and_commission(client):
    buy(client, clOrdId="abc123")

    raw = client.private_get_trade_order({"instId": "BTC-USDT", "clOrdId": "abc123"})["data"][0]
    assert set(raw) >= ORDER_FIELDS and raw["state"] in ORDER_STATES
    assert all(isinstance(v, str) for k, v in raw.items() if k not in ("attachAlgoOrds", "linkedAlgoOrd"))
    order = client.parse_order(raw)
    assert (order["status"], order["filled"], order["side"]) == ("closed", 0.001, "buy")
    assert order["fee"]["currency"] == "BTC" and order["fee"]["cost"] == pytest.approx(0.000001)
    (trade,) = client.fetch_my_trades("BTC/USDT", params={"ordId": raw["ordId"]})
    assert set(trade["info"]) >= FILL_FIELDS
    assert trade["fee"]["currency"] == "BTC" and trade["fee"]["cost"] == pytest.approx(0.000001)
    balance = client.fetch_balance()
    assert balance["BTC"]["free"] == pytest.approx(0.001 - 0.000001)


def test_an_attached_protection_becomes_an_algo_order_ccxt_reads_as_an_open_stop(client, okx):
    buy(
        client,
        clOrdId="abc124",
        attachAlgoOrds=[
            {"attachAlgoClOrdId": "prot1", "slTriggerPx": "90000", "slOrdPx": "-1", "tpTriggerPx": "99000",
             "tpOrdPx": "-1"}
        ],
    )  # fmt: skip

    raw = client.private_get_trade_order({"instId": "BTC-USDT", "clOrdId": "abc124"})["data"][0]
    (attached,) = raw["attachAlgoOrds"]
    assert attached["attachAlgoClOrdId"] == "prot1" and attached["slTriggerPx"] == "90000"
    (algo,) = client.fetch_open_orders("BTC/USDT", params={"trigger": True, "ordType": "oco,conditional"})
    assert algo["info"]["state"] in ALGO_STATES and algo["info"]["ordType"] == "oco"
    assert (algo["status"], algo["stopLossPrice"], algo["takeProfitPrice"]) == ("open", 90000.0, 99000.0)
    assert algo["info"]["algoClOrdId"] == "prot1" and algo["amount"] == pytest.approx(0.001)


def test_a_standalone_algo_order_reply_has_the_fields_of_ccxts_fixture(client):
    buy(client, clOrdId="abc125")

    reply = client.private_post_trade_order_algo(
        {"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "oco", "sz": "0.000999",
         "algoClOrdId": "prot2", "slTriggerPx": "90000", "slOrdPx": "-1", "tpTriggerPx": "99000", "tpOrdPx": "-1"}
    )  # fmt: skip

    (row,) = reply["data"]
    assert set(row) == CCXT_CREATE_ALGO_ORDER_FIELDS and row["sCode"] == "0"
    order = client.parse_order(row, client.market("BTC/USDT"))
    assert order["id"] == row["algoId"]
