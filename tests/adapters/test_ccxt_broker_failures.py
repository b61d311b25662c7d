"""CcxtBroker when the venue refuses or fails: rejected acks, fail closed after retries, no secret in any text."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator

import ccxt
import pytest

from scalpbot.adapters.ccxt.broker import CcxtBroker
from scalpbot.errors import ConfigError, ExchangeError, ExchangeTemporaryError

from support.binance_trading import ACCOUNT, OCO, OPEN_ORDERS, ORDER
from support.broker_venue import BOT, KEY, SECRET, SYMBOL, Venue, running_venue, statuses


@pytest.fixture
def venue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Venue]:
    with running_venue(monkeypatch) as running:
        yield running


# --- refusals come back as rejected acks ----------------------------------------------------------------


def test_an_entry_below_the_market_minimum_is_rejected_with_the_reason(venue):
    trader = venue.broker()

    acks = trader.submit(venue.signal(1, size=0.0004), venue.snapshot(trader))

    assert statuses(acks) == [("entry", "rejected")]
    assert "below the market minimum notional of 5 USDT" in acks[0].message
    assert venue.server.posts(ORDER) == []


def test_insufficient_funds_come_back_as_a_rejected_ack_with_the_venues_reason(venue):
    trader = venue.broker()

    acks = trader.submit(venue.signal(1, size=2.0), venue.snapshot(trader))  # twice the free USDT

    assert statuses(acks) == [("entry", "rejected")]
    assert "insufficient balance" in acks[0].message
    assert venue.server.posts(OCO) == [] and venue.sleeps == []


# --- fail closed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda s: setattr(s, "down", True), id="down"),
        pytest.param(lambda s: s.fail_next(10, 503, path=ACCOUNT), id="5xx"),
        pytest.param(lambda s: s.delay_next(10, 1.0, path=ACCOUNT), id="timeout"),
        pytest.param(lambda s: s.garble_next(10, ACCOUNT), id="malformed-json"),
    ],
)
def test_a_venue_that_cannot_be_read_makes_the_snapshot_raise_after_retries(venue, fault):
    trader = venue.broker(timeout=150)
    venue.snapshot(trader)  # markets loaded while the venue was fine
    fault(venue.server)

    with pytest.raises(ExchangeTemporaryError, match="still failed after 3 attempts") as caught:
        venue.snapshot(trader)

    assert isinstance(caught.value.__cause__, ccxt.BaseError)
    assert len(venue.sleeps) == 2
    assert [r for r in venue.server.requests if r.method != "GET"] == []


def test_temporary_failures_are_retried_and_the_snapshot_then_succeeds(venue):
    trader = venue.broker()
    venue.server.fail_next(1, 503, path=ACCOUNT)
    venue.server.garble_next(1, OPEN_ORDERS)

    snapshot = venue.snapshot(trader)

    assert snapshot.equity == pytest.approx(10_000.0) and snapshot.position is None
    assert len(venue.sleeps) == 2


def test_a_refusal_that_is_not_temporary_raises_exchange_error_without_retry(venue):
    trader = venue.broker()
    body = json.dumps({"code": -1130, "msg": "Invalid data sent for a parameter."})
    venue.server.fail_next(1, 400, path=ACCOUNT, body=body)

    with pytest.raises(ExchangeError, match="Invalid data sent") as caught:
        venue.snapshot(trader)

    assert not isinstance(caught.value, ExchangeTemporaryError) and venue.sleeps == []


def test_an_unsupported_exchange_is_a_config_error_before_any_request():
    with pytest.raises(ConfigError, match="'kraken' is not supported yet"):
        CcxtBroker("kraken", bot=BOT, symbol=SYMBOL, timeframe="1m")


def test_the_venue_checks_keys_signatures_timestamps_and_decimals_and_refuses_only_open_ids(venue):
    def post(form: str, *, key: str = KEY, secret: str = SECRET, sign: bool = True) -> dict[str, object]:
        stamp = venue.server.server_ms()
        body = f"{form}&timestamp={stamp}" if "timestamp=" not in form else form
        if sign:
            body += "&signature=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        headers = {"X-MBX-APIKEY": key, "Content-Type": "application/x-www-form-urlencoded"} if key else {}
        request = urllib.request.Request(f"{venue.server.url}{ORDER}", body.encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                assert int(reply.headers["X-MBX-USED-WEIGHT-1M"]) > 0
                return dict(json.load(reply))
        except urllib.error.HTTPError as e:
            return dict(json.load(e))

    market = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&newClientOrderId=x1"
    stop = "symbol=BTCUSDT&side=SELL&type=STOP_LOSS&quantity=0.0005&stopPrice=90000&newClientOrderId=x2"

    assert post(market, key="")["code"] == -2014
    assert post(market, key="unknown")["code"] == -2015
    assert post(market, sign=False)["code"] == -1102
    assert post(market, secret="wrong")["code"] == -1022
    assert post(f"{market}&timestamp={venue.server.server_ms() - 6000}")["code"] == -1021
    assert post(market.replace("0.001", "1e-03"))["code"] == -1100
    assert post(market)["status"] == "FILLED"
    assert post(market)["status"] == "FILLED"  # a filled market order's id can be sent again
    assert post(stop)["status"] == "NEW"
    assert post(stop) == {"code": -2010, "msg": "Duplicate order sent."}  # refused while it is open


# --- secrets --------------------------------------------------------------------------------------------


def test_api_keys_never_appear_in_messages_reprs_or_logs(venue, caplog):
    caplog.set_level(logging.DEBUG)
    refused = {
        "code": -2015,
        "msg": f"Invalid API-key, IP, or permissions for action, request key {KEY} {SECRET}.",
    }
    venue.server.fail_next(1, 401, path=ACCOUNT, body=json.dumps(refused))
    newcomer = venue.broker()
    with pytest.raises(ConfigError, match="rejected the API credentials") as caught:
        venue.snapshot(newcomer)
    trader = venue.broker()
    acks = trader.submit(venue.signal(1, size=0.0004), venue.snapshot(trader))
    venue.server.fail_next(3, 503, path=ACCOUNT, body=json.dumps({"code": -1000, "msg": f"{KEY} {SECRET}"}))
    with pytest.raises(ExchangeTemporaryError) as temporary:
        venue.snapshot(trader)

    texts = [repr(trader), str(trader), str(caught.value), str(temporary.value), *(a.message for a in acks)]
    assert "X-MBX-APIKEY" in caplog.text  # ccxt's debug log of the request headers went through the redaction
    for text in [*texts, caplog.text]:
        assert KEY not in text and SECRET not in text
