"""The minute retrieve job keeps a perpetual swap's funding rates stored beside its bars, from the OKX double:
incrementally (once the newest stored rate is 8 hours old), and a failure leaves the bars stored and is an
error event of the bot, recorded once while it lasts."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.jobs.trading import BarTrader, retrieve_closed
from scalpbot.state.funding import append_funding, funding_key, load_funding
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import (
    Services,
    build_executor,
    build_market_data,
    build_services,
    run_lease,
    stored_history,
)

from support.okx_swap_venue import running_okx_swap
from support.swap_trained import HELD_OUT, OKX_SWAP, SWAP_SYMBOL, funding_rates, swap_release
from support.trained import LOOSE_RISK

__all__ = ["swap_release"]

HISTORY = "/api/v5/public/funding-rate-history"
RATES = {pd.Timestamp(t): float(r) for t, r in funding_rates("2024-12-20", "2025-01-01").items()}


def okx_swap_services(store: Path, url: str, **extra: Any) -> Services:
    """Return services on the OKX double's BTC/USDT:USDT (public data through its URL, one attempt per call)."""
    overrides = {
        "store": {"url": str(store)},
        "exchange": {"id": "okx", "api_url": url, "max_retries": 1},
        "data": {"symbol": SWAP_SYMBOL, "lookback_days": 1},
        "venue": OKX_SWAP,
        **extra,
    }
    return build_services(load_settings(None, overrides))


@pytest.mark.slow  # a venue double end to end: HTTP server, ccxt markets, wiring
def test_each_retrieve_stores_the_bars_and_the_funding_rates_settled_since_the_newest_stored_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    start = pd.Timestamp("2024-12-25T00:00:30Z")
    with running_okx_swap(monkeypatch, funding=RATES, start=start.to_pydatetime()) as okx:
        services = okx_swap_services(tmp_path / "store", okx.server.url)
        series, choice = services.series(), build_market_data("ccxt", services)

        def run(at: pd.Timestamp) -> Any:
            okx.clock.set(at.to_pydatetime())
            asked = len([r for r in okx.server.requests if r.path == HISTORY])
            report = retrieve_closed(services, choice, series, at)
            return report, len([r for r in okx.server.requests if r.path == HISTORY]) - asked

        first, asked = run(start)  # nothing stored: the bars' look-back day
        assert first.added == 1439 and first.funding is not None and asked == 1  # 00:01 .. 23:59
        day = [t for t in RATES if start - pd.Timedelta(days=1) <= t <= start]
        assert first.funding.added == len(day) == 3 and first.funding.last == pd.Timestamp(
            "2024-12-25", tz="UTC"
        )
        assert first.payload()["funding"] == {
            "fetched": True, "added": 3, "last": "2024-12-25T00:00:00Z", "error": None,
        }  # fmt: skip
        minute, asked = run(
            start + pd.Timedelta(minutes=1)
        )  # the newest rate is 1 minute old: none can be missing
        assert minute.added == 1 and minute.funding is not None and not minute.funding.fetched and asked == 0
        late, asked = run(pd.Timestamp("2024-12-25T07:59:30Z"))
        assert late.funding is not None and not late.funding.fetched and asked == 0
        due, asked = run(pd.Timestamp("2024-12-25T08:00:30Z"))  # 8 h on: the 08:00 settlement is asked for
        assert due.funding is not None and (due.funding.fetched, due.funding.added, asked) == (True, 1, 1)
        # a day without a run: the next one fills all three settlements, nothing twice
        gap, asked = run(pd.Timestamp("2024-12-26T08:00:30Z"))
        assert gap.funding is not None and gap.funding.added == 3
    stored = load_funding(services.store, series.exchange, series.symbol)
    want = {t: r for t, r in RATES.items() if start - pd.Timedelta(days=1) <= t <= gap.funding.last}
    assert stored.to_dict() == want
    assert services.dataset.last_open_time(series) == pd.Timestamp("2024-12-26T07:59:00Z")


@pytest.mark.slow  # a venue double end to end: HTTP server, ccxt markets, wiring
def test_a_failed_funding_fetch_keeps_the_bars_and_reports_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    start = pd.Timestamp("2024-12-25T00:00:30Z")
    with running_okx_swap(monkeypatch, funding=RATES, start=start.to_pydatetime()) as okx:
        services = okx_swap_services(tmp_path / "store", okx.server.url)
        series, choice = services.series(), build_market_data("ccxt", services)
        okx.server.limits[HISTORY] = 0  # every funding read refused (HTTP 429 50011)
        report = retrieve_closed(services, choice, series, start)
        assert report.added == 1439  # the bars are stored
        assert report.funding is not None and report.funding.added == 0
        assert report.funding.error is not None and "funding rates of BTC/USDT:USDT" in report.funding.error
        assert load_funding(services.store, series.exchange, series.symbol).empty
        okx.server.limits[HISTORY] = 20
        again = retrieve_closed(services, choice, series, start + pd.Timedelta(minutes=1))
        assert again.funding is not None and again.funding.error is None and again.funding.added == 3
        asked = len([r for r in okx.server.requests if r.path == HISTORY])
        spot = okx_swap_services(
            tmp_path / "spot", okx.server.url, data={"symbol": "BTC/USDT", "lookback_days": 1}
        )
        report = retrieve_closed(spot, build_market_data("ccxt", spot), spot.series(), start)
        assert report.added == 1439 and report.funding is None  # spot pays no funding: never asked
        assert len([r for r in okx.server.requests if r.path == HISTORY]) == asked


def test_a_live_bot_on_a_swap_records_a_failing_funding_fetch_once_and_trades_on(
    swap_release: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shutil.copytree(swap_release[0], tmp_path / "store")
    held_out = pd.Timestamp(HELD_OUT)
    start = held_out + pd.Timedelta(hours=8, seconds=5)  # the 08:00 rate is due
    stored = funding_rates()
    key = tmp_path / "store" / funding_key("okx", SWAP_SYMBOL)
    key.unlink()  # the training stored every rate of the sample: keep those up to the held-out week's start
    with running_okx_swap(monkeypatch, funding=RATES, start=start.to_pydatetime()) as okx:
        services = okx_swap_services(
            tmp_path / "store", okx.server.url, risk={**LOOSE_RISK, "max_position_fraction": 3.0},
            execute={"leverage": 3.0, "margin_mode": "isolated"},
        )  # fmt: skip
        services = dataclasses.replace(services, clock=okx.clock)
        append_funding(services.store, "okx", SWAP_SYMBOL, stored[stored.index <= held_out])
        series, notifier = services.series(), ConsoleNotifier()
        executor = build_executor(
            services, series, bot="swap-paper", bars=stored_history(services, series), notifier=notifier
        )
        trader = BarTrader(
            services, executor, series, source=build_market_data("ccxt", services),
            lease=run_lease(services, "swap-paper"), release_lease=False,
        )  # fmt: skip
        reports = []
        for minute in range(5):
            okx.server.limits[HISTORY] = 0 if minute < 3 else 20  # funding reads refused for three minutes
            reports.append(trader(pd.Timestamp(okx.clock.now())))
            okx.clock.advance(timedelta(minutes=1))
        trader.close()
    assert [r.status for r in reports] == ["ok"] * 5  # the bot trades on with the rates it has
    errors = Ledger(services.store, "swap-paper").events(kinds=("error",))
    assert [e.payload["where"] for e in errors] == ["funding"]  # recorded once, not once a minute
    assert "cannot be retrieved" in errors[0].payload["message"]
    assert [s[1] for s in notifier.sent if s[0] == "error"] == ["swap-paper: funding rates not retrieved"]
    stored = load_funding(services.store, series.exchange, series.symbol)
    assert pd.Timestamp("2024-12-25T08:00:00Z") in stored.index  # fetched once the venue answered
