"""A perpetual swap's facts read through ccxt from the OKX double: its venue profile in base units and its
funding-rate history, stored beside the bars."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from scalpbot.adapters.ccxt.common import rebased_api_urls
from scalpbot.adapters.ccxt.funding import fetch_funding
from scalpbot.adapters.ccxt.venue_profile import fetch_venue
from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.errors import ConfigError, DataError
from scalpbot.state.funding import append_funding, funding_key, load_funding

from support.binance_usdm_server import running_usdm
from support.okx_swap_venue import running_okx_swap

SYMBOL = "BTC/USDT:USDT"
EIGHT_HOURS = pd.Timedelta(hours=8)


def rates(start: str, count: int) -> dict[pd.Timestamp, float]:
    first = pd.Timestamp(start, tz="UTC")
    return {first + k * EIGHT_HOURS: round(0.0001 * ((k % 7) - 2), 6) for k in range(count)}


def test_the_swap_profile_is_in_base_units_with_shorts_and_reduce_only_protection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_okx_swap(monkeypatch) as okx:
        venue = fetch_venue(
            "okx", SYMBOL, config={"options": {"fetchMarkets": {"types": ["swap"]}}},
            api_urls=rebased_api_urls("okx", okx.server.url), now=datetime(2024, 12, 1, tzinfo=UTC),
        )  # fmt: skip
    assert (venue.market_type, venue.shorts) == ("swap", True)
    assert venue.amount_step == 0.0001 and venue.min_amount == 0.0001  # 0.01 contract of 0.01 BTC
    assert venue.price_tick == pytest.approx(0.1)
    assert "reduce_only" in venue.protection and "attached" in venue.protection


def test_the_funding_history_is_paged_from_okx_without_gaps_and_stored_beside_the_bars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = rates("2024-10-01", 230)  # more than two pages of 100
    with running_okx_swap(monkeypatch, funding=history) as okx:
        urls = rebased_api_urls("okx", okx.server.url)
        start, end = pd.Timestamp("2024-10-02", tz="UTC"), pd.Timestamp("2024-12-01", tz="UTC")
        got = fetch_funding("okx", SYMBOL, start, end, config={}, api_urls=urls)
        with pytest.raises(ConfigError, match="not a perpetual swap"):
            fetch_funding("okx", "BTC/USDT", start, end, config={}, api_urls=urls)
        pages = [r for r in okx.server.requests if r.path.endswith("funding-rate-history")]
    want = pd.Series({t: r for t, r in history.items() if start <= t < end})
    assert list(got.index) == list(want.index) and got.to_numpy().tolist() == want.to_numpy().tolist()
    assert len(pages) == 2 and all(int(p.params["limit"]) == 100 for p in pages)

    store = MemoryStore()
    assert append_funding(store, "okx", SYMBOL, got) == len(got)
    assert append_funding(store, "okx", SYMBOL, got.iloc[:50]) == 0  # the same window again: nothing new
    assert funding_key("okx", SYMBOL) == "data/okx/BTC_USDT_USDT/funding.json"
    back = load_funding(store, "okx", SYMBOL, start, pd.Timestamp("2024-10-10", tz="UTC"))
    assert list(back.index) == [t for t in want.index if t <= pd.Timestamp("2024-10-10", tz="UTC")]
    with pytest.raises(DataError, match="settled rates do not change"):
        append_funding(store, "okx", SYMBOL, got.iloc[:1] + 0.001)


def test_the_binance_usd_m_profile_and_funding_history_are_read_through_ccxts_binanceusdm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = rates("2024-10-01", 230)
    with running_usdm(monkeypatch, funding=history) as venue:
        urls = rebased_api_urls("binanceusdm", venue.server.url)
        profile = fetch_venue(
            "binanceusdm", SYMBOL, config={}, api_urls=urls, now=datetime(2024, 12, 1, tzinfo=UTC)
        )
        start, end = pd.Timestamp("2024-10-02", tz="UTC"), pd.Timestamp("2024-12-01", tz="UTC")
        got = fetch_funding("binanceusdm", SYMBOL, start, end, config={}, api_urls=urls)
        pages = [r for r in venue.server.requests if r.path == "/fapi/v1/fundingRate"]
    assert (profile.market_type, profile.shorts, profile.amount_step, profile.min_amount) == (
        "swap",
        True,
        0.001,
        0.001,
    )
    assert profile.price_tick == pytest.approx(0.1) and profile.min_notional == 100.0
    assert "reduce_only" in profile.protection
    want = pd.Series({t: r for t, r in history.items() if start <= t < end})
    assert list(got.index) == list(want.index) and got.to_numpy().tolist() == want.to_numpy().tolist()
    assert len(pages) == 2 and int(pages[0].params["startTime"]) == int(start.timestamp() * 1000)
