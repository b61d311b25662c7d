"""Stopping a venue double leaves nothing running: no request thread outlives the test that started the server.

ccxt's HTTP session keeps its connection open between requests (HTTP/1.1 keep-alive); the double's thread for
that connection waits for the next request until the connection ends. A stopped double ends its connections and
joins their threads, also while a slow reply was being held for a client that gave up.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import ccxt
import pytest

from scalpbot.adapters.ccxt.common import rebased_api_urls
from scalpbot.adapters.clock import FixedClock

from support.binance_server import BinanceServer, sample_series
from support.okx_server import OkxServer

NOW = datetime(2024, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


def request_threads() -> set[threading.Thread]:
    """Return the live threads serving a connection of some threading HTTP server."""
    return {t for t in threading.enumerate() if "process_request_thread" in t.name}


def test_a_stopped_binance_double_leaves_no_thread_for_the_connection_ccxt_kept_open():
    before = request_threads()
    server = BinanceServer(FixedClock(NOW), sample_series()).start()
    exchange = ccxt.binance({"urls": {"api": rebased_api_urls("binance", server.url)}})
    assert exchange.public_get_time()["serverTime"]
    assert request_threads() - before, "the kept-alive connection has a thread waiting for its next request"
    server.stop()
    assert not request_threads() - before


def test_a_stopped_binance_double_joins_the_thread_holding_a_slow_reply_and_stops_at_once():
    before = request_threads()
    server = BinanceServer(FixedClock(NOW), sample_series()).start()
    server.delay_next(1, 60.0, path="/api/v3/time")
    exchange = ccxt.binance({"urls": {"api": rebased_api_urls("binance", server.url)}, "timeout": 200})
    with pytest.raises(ccxt.RequestTimeout):
        exchange.public_get_time()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5.0
    assert not request_threads() - before


def test_a_stopped_okx_double_leaves_no_thread_for_the_connection_ccxt_kept_open():
    before = request_threads()
    with OkxServer(FixedClock(NOW), sample_series()) as server:
        exchange = ccxt.okx({"urls": {"api": rebased_api_urls("okx", server.url)}})
        assert exchange.public_get_public_time()["data"]
        assert request_threads() - before
    assert not request_threads() - before
