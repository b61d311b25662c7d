"""CcxtMarketData against a local server that speaks Binance's REST format (no internet)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.request import urlopen

import ccxt
import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.ccxt.common import RetryPolicy, rebased_api_urls
from scalpbot.adapters.ccxt.market_data import CcxtMarketData, ccxt_exchange
from scalpbot.adapters.clock import FixedClock
from scalpbot.core.bars import ORDER_FLOW_COLUMNS, validate_bars
from scalpbot.errors import ConfigError, ExchangeError, ExchangeTemporaryError

from support.binance_server import BinanceServer, Series, sample_series

NOW = datetime(2024, 12, 1, 12, 0, 30, tzinfo=UTC)
SPOT_ONLY = {"options": {"fetchMarkets": {"types": ["spot"]}}}
KLINES = "/api/v3/klines"
MINUTE = timedelta(minutes=1)


@pytest.fixture(scope="module")
def series() -> dict[str, Series]:
    return sample_series()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def server(
    clock: FixedClock, series: dict[str, Series], monkeypatch: pytest.MonkeyPatch
) -> Iterator[BinanceServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with BinanceServer(clock, series) as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


def source(
    server: BinanceServer,
    clock: FixedClock,
    sleeps: list[float],
    config: dict[str, Any] | None = None,
    **kw: Any,
) -> CcxtMarketData:
    settings: dict[str, Any] = {**SPOT_ONLY, "rateLimit": 1, **(config or {})}
    retry: dict[str, Any] = {"base_delay": 0.5, "max_delay": 4.0, "max_attempts": 4}
    retry.update({k: kw.pop(k) for k in list(kw) if k in retry})
    return CcxtMarketData(
        "binance",
        clock,
        config=settings,
        api_urls=rebased_api_urls("binance", server.url),
        sleep=sleeps.append,
        rng=random.Random(0),
        retry=RetryPolicy(**retry),
        **{"page_limit": 1000, **kw},
    )


def fetch(
    src: CcxtMarketData, since: datetime | None, until: datetime | None, symbol: str = "BTC/USDT"
) -> pd.DataFrame:
    chunks = list(src.fetch_bars(symbol, "1m", since, until))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()


def expected(series: dict[str, Series], since: datetime, until: datetime) -> pd.DataFrame:
    btc = series["BTCUSDT"]
    lo, hi = (int(t.timestamp() * 1000) for t in (since, until))
    keep = (btc.open_ms >= lo) & (btc.open_ms < hi)
    stamps = pd.to_datetime(btc.open_ms[keep], unit="ms", utc=True).as_unit("ns")
    frame = pd.DataFrame(btc.ohlcv[keep], columns=["open", "high", "low", "close", "volume"])
    frame.insert(0, "timestamp", stamps)
    return frame


def test_bars_span_several_pages_exactly_once_with_sample_values(server, clock, sleeps, series):
    since, until = datetime(2024, 11, 28, tzinfo=UTC), datetime(2024, 11, 30, 12, tzinfo=UTC)
    src = source(server, clock, sleeps, page_limit=1000)

    chunks = list(src.fetch_bars("BTC/USDT", "1m", since, until))

    assert [len(c) for c in chunks] == [1000, 1000, 1000, 600]
    bars = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(bars.drop(columns=list(ORDER_FLOW_COLUMNS)), expected(series, since, until))
    assert bars["timestamp"].is_unique
    assert (bars["timestamp"].diff().iloc[1:] == MINUTE).all()
    starts = [int(r.params["startTime"]) for r in server.requests_to(KLINES)]
    assert starts == [int((since + i * 1000 * MINUTE).timestamp() * 1000) for i in range(4)]


def test_page_boundaries_never_repeat_or_drop_bars_with_small_pages(server, clock, sleeps, series):
    since, until = datetime(2024, 12, 1, 3, 7, tzinfo=UTC), datetime(2024, 12, 1, 4, 0, tzinfo=UTC)
    src = source(server, clock, sleeps, page_limit=7)

    bars = fetch(src, since, until)

    pd.testing.assert_frame_equal(bars.drop(columns=list(ORDER_FLOW_COLUMNS)), expected(series, since, until))
    assert len(server.requests_to(KLINES)) == 8  # 53 bars in pages of 7


def test_chunks_have_utc_open_times_and_float_columns(server, clock, sleeps):
    bars = fetch(source(server, clock, sleeps), NOW - 5 * MINUTE, None)

    assert str(bars["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(bars[c].dtype == np.float64 for c in ["open", "high", "low", "close", "volume"])


def test_binance_klines_bring_the_number_of_trades_and_the_taker_buy_volume(server, clock, sleeps):
    since, until = datetime(2024, 12, 1, 3, 0, tzinfo=UTC), datetime(2024, 12, 1, 3, 30, tzinfo=UTC)
    raw = json.loads(
        urlopen(
            f"{server.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={int(since.timestamp() * 1000)}"
            f"&endTime={int(until.timestamp() * 1000) - 1}"
        ).read()
    )

    bars = fetch(source(server, clock, sleeps, page_limit=7), since, until)

    assert list(bars.columns) == ["timestamp", "open", "high", "low", "close", "volume", *ORDER_FLOW_COLUMNS]
    assert bars["trades"].tolist() == [float(row[8]) for row in raw]
    assert bars["taker_buy_volume"].tolist() == [float(row[9]) for row in raw]
    assert (bars[list(ORDER_FLOW_COLUMNS)].dtypes == np.float64).all()
    stored = validate_bars(bars, "1m", source="binance")
    assert list(stored.columns[-2:]) == list(ORDER_FLOW_COLUMNS)


def test_still_forming_bar_is_served_but_never_yielded(server, clock, sleeps):
    src = source(server, clock, sleeps)
    served = src.exchange.fetch_ohlcv("BTC/USDT", "1m", int((NOW - 3 * MINUTE).timestamp() * 1000), 10)

    bars = fetch(src, NOW - 3 * MINUTE, None)

    assert pd.Timestamp(served[-1][0], unit="ms", tz="UTC") == pd.Timestamp("2024-12-01T12:00:00Z")
    assert bars["timestamp"].iloc[-1] == pd.Timestamp("2024-12-01T11:59:00Z")


def test_bar_that_closes_exactly_now_is_yielded(server, clock, sleeps):
    clock.set(datetime(2024, 12, 1, 12, 0, tzinfo=UTC))

    bars = fetch(source(server, clock, sleeps), datetime(2024, 12, 1, 11, 50, tzinfo=UTC), None)

    assert bars["timestamp"].iloc[-1] == pd.Timestamp("2024-12-01T11:59:00Z")
    assert len(bars) == 10


def test_until_is_exclusive_and_stops_fetching(server, clock, sleeps):
    until = datetime(2024, 11, 25, 0, 10, tzinfo=UTC)

    bars = fetch(source(server, clock, sleeps), datetime(2024, 11, 25, tzinfo=UTC), until)

    assert bars["timestamp"].iloc[-1] == pd.Timestamp(until) - MINUTE
    assert len(bars) == 10
    assert len(server.requests_to(KLINES)) == 1


def test_since_none_starts_at_the_exchanges_first_bar(server, clock, sleeps):
    bars = fetch(source(server, clock, sleeps), None, datetime(2024, 11, 20, 0, 10, tzinfo=UTC))

    assert bars["timestamp"].iloc[0] == pd.Timestamp("2024-11-20T00:00:00Z")
    assert len(bars) == 10
    assert server.requests_to(KLINES)[0].params["startTime"] == "0"


def test_empty_window_yields_nothing_without_asking_for_bars(server, clock, sleeps):
    moment = datetime(2024, 11, 25, tzinfo=UTC)

    assert fetch(source(server, clock, sleeps), moment, moment).empty
    assert server.requests_to(KLINES) == []


def test_storage_spelling_of_the_symbol_is_accepted(server, clock, sleeps):
    bars = fetch(source(server, clock, sleeps), NOW - 3 * MINUTE, None, symbol="ETH_USDT")

    assert len(bars) == 2
    assert server.requests_to(KLINES)[0].params["symbol"] == "ETHUSDT"


@pytest.mark.parametrize("status", [429, 418, 500, 503])
def test_temporary_http_errors_are_retried_with_growing_backoff(server, clock, sleeps, series, status):
    since, until = datetime(2024, 11, 28, tzinfo=UTC), datetime(2024, 11, 28, 0, 30, tzinfo=UTC)
    server.fail_next(3, status)

    bars = fetch(source(server, clock, sleeps), since, until)

    pd.testing.assert_frame_equal(bars.drop(columns=list(ORDER_FLOW_COLUMNS)), expected(series, since, until))
    assert len(server.requests_to(KLINES)) == 4
    assert len(sleeps) == 3
    if status in (418, 429):  # the server asks for Retry-After: 1, which is honoured over a shorter backoff
        assert sleeps[:2] == [1.0, 1.0] and 1.0 <= sleeps[2] <= 2.0
    else:
        assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0 and 1.0 <= sleeps[2] <= 2.0


def test_gateway_error_with_an_html_body_is_retried(server, clock, sleeps):
    server.fail_next(1, 502, body="<html><body><h1>502 Bad Gateway</h1></body></html>")

    bars = fetch(source(server, clock, sleeps), NOW - 3 * MINUTE, None)

    assert len(bars) == 2
    assert len(sleeps) == 1


def test_exhausted_retries_raise_exchange_temporary_error(server, clock, sleeps):
    server.fail_next(10, 503)
    src = source(server, clock, sleeps, max_attempts=3)

    with pytest.raises(ExchangeTemporaryError, match="after 3 attempts") as caught:
        fetch(src, NOW - 3 * MINUTE, None)

    assert isinstance(caught.value.__cause__, ccxt.BaseError)
    assert len(server.requests_to(KLINES)) == 3
    assert len(sleeps) == 2


def test_backoff_never_exceeds_max_delay(server, clock, sleeps):
    server.fail_next(10, 429)

    with pytest.raises(ExchangeTemporaryError):
        fetch(
            source(server, clock, sleeps, max_attempts=8, base_delay=0.5, max_delay=1.5),
            NOW - 3 * MINUTE,
            None,
        )

    assert len(sleeps) == 7
    assert max(sleeps) <= 1.5


def test_timeouts_are_retried_until_the_server_answers(server, clock, sleeps):
    server.delay_next(1, 2.0)

    bars = fetch(source(server, clock, sleeps, config={"timeout": 200}), NOW - 3 * MINUTE, None)

    assert len(bars) == 2
    assert len(server.requests_to(KLINES)) == 2


def test_persistent_timeouts_raise_exchange_temporary_error(server, clock, sleeps):
    server.delay_next(5, 2.0)
    src = source(server, clock, sleeps, config={"timeout": 150}, max_attempts=2)

    with pytest.raises(ExchangeTemporaryError, match="RequestTimeout") as caught:
        fetch(src, NOW - 3 * MINUTE, None)

    assert isinstance(caught.value.__cause__, ccxt.RequestTimeout)


def test_load_markets_failures_are_retried_too(server, clock, sleeps):
    server.fail_next(2, 503, path="/api/v3/exchangeInfo")

    bars = fetch(source(server, clock, sleeps), NOW - 3 * MINUTE, None)

    assert len(bars) == 2
    assert len(server.requests_to("/api/v3/exchangeInfo")) == 3


def test_a_venue_lists_and_serves_the_markets_it_is_given_and_no_others(clock, sleeps, series, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    btc = series["BTCUSDT"]
    sol = Series(btc.open_ms + 3_600_000, btc.ohlcv * np.array([0.002, 0.002, 0.002, 0.002, 500.0]))
    listed = {"SOLUSDT": ("SOL", "USDT", "0.01000000", "0.00100000", "90000.00000000")}
    with BinanceServer(clock, {**series, "SOLUSDT": sol}, listed) as venue:
        src = source(venue, clock, sleeps)
        bars = fetch(src, NOW - 3 * MINUTE, None, symbol="SOL/USDT")

        assert sorted(src.exchange.markets) == ["SOL/USDT"]
        assert src.exchange.markets["SOL/USDT"]["precision"]["amount"] == 0.001
        hour_before = (NOW - 3 * MINUTE - timedelta(hours=1)).timestamp() * 1000
        first = int(np.searchsorted(btc.open_ms, hour_before))
        assert bars["close"].tolist() == pytest.approx((btc.ohlcv[first : first + 2, 3] * 0.002).tolist())
        with pytest.raises(ConfigError, match="'BTC/USDT' is not listed on binance"):
            fetch(src, NOW - 3 * MINUTE, None)


@pytest.mark.parametrize(
    ("start", "end", "limit"),
    [
        (None, None, 500),
        (None, "2024-12-01T11:00", 30),
        ("2024-11-30T23:30", None, 1000),
        ("2024-11-30T23:30", "2024-12-01T01:00", 1000),
        ("2024-12-01T11:58", None, 1000),
        ("2024-12-01T13:00", None, 10),
        ("2024-12-31T23:58", "2025-01-01T00:00", 5),
    ],
)
@pytest.mark.parametrize("interval", ["1m", "5m", "1h"])
def test_klines_are_the_opens_in_the_window_up_to_the_venues_now(server, series, start, end, limit, interval):
    step = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}[interval]
    ms = {
        k: int(pd.Timestamp(v, tz="UTC").timestamp() * 1000)
        for k, v in (("startTime", start), ("endTime", end))
        if v
    }
    status, rows = server._respond(
        KLINES,
        {"symbol": "BTCUSDT", "interval": interval, "limit": str(limit)} | {k: str(v) for k, v in ms.items()},
    )

    opens = np.unique(series["BTCUSDT"].open_ms // step * step)
    now = int(NOW.timestamp() * 1000)
    keep = (opens <= now) & (opens >= ms.get("startTime", 0)) & (opens <= ms.get("endTime", now))
    wanted = opens[keep][:limit] if start else opens[keep][-limit:]
    assert status == 200 and [row[0] for row in rows] == wanted.tolist()


def test_unknown_symbol_is_a_config_error_suggesting_listed_ones(server, clock, sleeps):
    with pytest.raises(ConfigError, match=r"'BTC/USD' is not listed on binance \(did you mean 'BTC/USDT'"):
        fetch(source(server, clock, sleeps), NOW - 3 * MINUTE, None, symbol="BTC/USD")

    assert server.requests_to(KLINES) == []


def test_symbol_rejected_by_the_exchange_is_a_config_error_without_retry(server, clock, sleeps):
    server.fail_next(1, 400, body=json.dumps({"code": -1121, "msg": "Invalid symbol."}))

    with pytest.raises(ConfigError, match="Invalid symbol") as caught:
        fetch(source(server, clock, sleeps), NOW - 3 * MINUTE, None)

    assert isinstance(caught.value.__cause__, ccxt.BadSymbol)
    assert sleeps == []


def test_other_exchange_refusals_are_exchange_errors_without_retry(server, clock, sleeps):
    server.fail_next(1, 400, body=json.dumps({"code": -1130, "msg": "Invalid data sent for a parameter."}))

    with pytest.raises(ExchangeError, match="Invalid data sent") as caught:
        fetch(source(server, clock, sleeps), NOW - 3 * MINUTE, None)

    assert not isinstance(caught.value, ExchangeTemporaryError)
    assert len(server.requests_to(KLINES)) == 1


def test_unknown_exchange_id_suggests_the_closest_one():
    with pytest.raises(ConfigError, match=r"'binanse' is not a ccxt exchange id \(did you mean 'binance'"):
        ccxt_exchange("binanse")


def test_unknown_timeframe_is_a_config_error_before_any_request(server, clock, sleeps):
    with pytest.raises(ConfigError, match="timeframe '1min' is not supported"):
        source(server, clock, sleeps).fetch_bars("BTC/USDT", "1min", NOW - MINUTE, None)

    assert server.requests == []


def test_naive_datetimes_are_rejected_with_a_hint(server, clock, sleeps):
    with pytest.raises(ConfigError, match="aware UTC datetime"):
        source(server, clock, sleeps).fetch_bars("BTC/USDT", "1m", datetime(2024, 12, 1), None)


def test_rejected_credentials_are_a_config_error_that_never_shows_them(server, clock, sleeps):
    key, secret = "K3yAbCdEfGhIjKlMnOp", "S3cretQrStUvWxYz0123"
    body = {"code": -2015, "msg": f"Invalid API-key, IP, or permissions for action, request key {key}."}
    server.fail_next(1, 401, path="/sapi/v1/capital/config/getall", body=json.dumps(body))
    src = source(server, clock, sleeps, config={"apiKey": key, "secret": secret})

    with pytest.raises(ConfigError, match="rejected the API credentials") as caught:
        fetch(src, NOW - 3 * MINUTE, None)

    for text in (str(caught.value), repr(src), str(src)):
        assert key not in text and secret not in text


def test_requests_are_spaced_by_rate_limit_times_endpoint_cost(server, clock, sleeps):
    rate_limit_ms = 250
    cost = ccxt_exchange("binance").api["public"]["get"]["klines"]["cost"]
    src = source(server, clock, sleeps, config={"rateLimit": rate_limit_ms}, page_limit=60)

    fetch(src, NOW - timedelta(hours=5), None)

    arrivals = [r.received_at for r in server.requests_to(KLINES)]
    assert len(arrivals) == 5
    assert min(np.diff(arrivals)) >= rate_limit_ms * cost / 1000 - 0.02


def test_exchange_that_ignores_since_does_not_loop_forever(server, clock, sleeps):
    stale = [
        [1_700_000_000_000 + 60_000 * i, "1", "2", "0.5", "1.5", "10", 0, "0", 1, "0", "0", "0"]
        for i in range(5)
    ]
    server.fail_next(100, 200, body=json.dumps(stale))

    assert fetch(source(server, clock, sleeps), NOW - 3 * MINUTE, None).empty
    assert len(server.requests_to(KLINES)) == 1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"base_delay": 2.0, "max_delay": 1.0}, "0 <= base_delay <= max_delay"),
        ({"max_wait": -1.0}, "max_wait must be >= 0"),
    ],
)
def test_a_retry_policy_refuses_values_it_cannot_follow(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetryPolicy(**values)


def test_retry_delays_double_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_usdm_perpetual_klines_bring_order_flow_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from support.binance_usdm_server import running_usdm

    with running_usdm(monkeypatch) as usdm:
        src = CcxtMarketData(
            "binanceusdm",
            usdm.clock,
            config={"rateLimit": 1},
            api_urls=rebased_api_urls("binanceusdm", usdm.server.url),
        )
        bars = fetch(src, usdm.clock.now() - 30 * MINUTE, None, symbol="BTC/USDT:USDT")
    assert len(bars) == 29  # from 11:31, the first open at or after now - 30 min, to 11:59
    assert list(bars.columns[-2:]) == list(ORDER_FLOW_COLUMNS)
    assert (bars["trades"] > 0).all()
    assert (bars["taker_buy_volume"] <= bars["volume"]).all()
