"""The Lambda runtime in process: event time, one job per handler, errors notified once and re-raised.

The handlers through the real Lambda runtime client, on S3 and SNS, are in tests/aws/test_lambda_end_to_end.py.
"""

from __future__ import annotations

import io
import shutil
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.aws import LambdaRuntime, event_symbol, event_time
from scalpbot.config import load_settings
from scalpbot.errors import ConfigError, CycleFailed, ExchangeError
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import build_services

from support.binance_server import BinanceServer, Series, sample_series
from support.files import snapshot
from support.operated import BASKET, BASKET_BOT, BASKET_HOURS, BASKET_LIMITS, START, copy_of
from support.trained import LOOSE_RISK

pytestmark = pytest.mark.slow

# The exchange's clock: every bar the tests ask for has closed there.
EXCHANGE_NOW = pd.Timestamp("2024-12-31T23:00:00Z")


@pytest.fixture
def exchange(monkeypatch: pytest.MonkeyPatch) -> Iterator[BinanceServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with BinanceServer(FixedClock(EXCHANGE_NOW.to_pydatetime())) as server:
        yield server


@pytest.fixture
def store(active_release: tuple[Path, str], tmp_path: Path) -> Path:
    """A folder store with the sample's bars and a current (eager) release."""
    copy = tmp_path / "store"
    shutil.copytree(active_release[0], copy)
    return copy


def _runtime(
    store: Path, server: BinanceServer, **sections: dict[str, object]
) -> tuple[LambdaRuntime, ConsoleNotifier]:
    overrides: dict[str, dict[str, object]] = {
        "store": {"url": str(store)},
        "exchange": {"api_url": server.url, "max_retries": 1},
        "data": {"lookback_days": 1},
        "risk": dict(LOOSE_RISK),
        **sections,
    }
    services = build_services(load_settings(None, overrides))
    notifier = ConsoleNotifier(io.StringIO())
    return LambdaRuntime(services, notifier), notifier


def _objects_of(files: dict[str, str]) -> dict[str, str]:
    """The stored objects of a folder store's snapshot, without its lock files."""
    return {key: digest for key, digest in files.items() if not key.startswith(".locks/")}


def _objects(root: Path) -> dict[str, str]:
    return _objects_of(snapshot(root))


def test_event_time_is_the_scheduled_events_time_else_the_wall_clock() -> None:
    def wall() -> pd.Timestamp:
        return pd.Timestamp("2030-01-01T00:00:00Z")

    scheduled = {"detail-type": "Scheduled Event", "source": "aws.events", "time": "2024-12-30T06:01:00Z"}
    assert event_time(scheduled, wall) == pd.Timestamp("2024-12-30T06:01:00Z")
    assert event_time({"time": "2024-12-30T06:01:00"}, wall) == pd.Timestamp("2024-12-30T06:01:00Z")
    assert event_time({"time": "2024-12-30T07:01:00+01:00"}, wall) == pd.Timestamp("2024-12-30T06:01:00Z")
    assert event_time({}, wall) == wall()
    assert event_time(None, wall) == wall()
    for bad in ("yesterday", "", "NaT", 12.5):
        with pytest.raises(ConfigError, match="not an ISO-8601 timestamp"):
            event_time({"time": bad}, wall)


def test_retrieve_stores_the_bars_closed_before_the_event_time(
    tmp_path: Path, exchange: BinanceServer
) -> None:
    runtime, notifier = _runtime(tmp_path / "store", exchange)
    summary = runtime.retrieve({"time": "2024-12-30T06:00:00Z"}, None)
    assert summary["added"] == 1440  # lookback_days 1: the day before the event
    assert summary["last"] == "2024-12-30T05:59:00Z"
    again = runtime.retrieve({"time": "2024-12-30T06:02:00Z"}, None)
    assert again["added"] == 2 and again["already_stored"] == 0
    assert runtime.services.dataset.last_open_time(runtime.series) == pd.Timestamp("2024-12-30T06:01:00Z")
    assert [s for s in notifier.sent if s[0] == "error"] == []


def test_a_hole_in_the_exchanges_bars_is_warned_about_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    btc = sample_series()["BTCUSDT"]
    hole = pd.Timestamp("2024-12-30T05:30:00Z").value // 1_000_000
    keep = (btc.open_ms < hole) | (btc.open_ms >= hole + 3 * 60_000)  # 05:30, 05:31, 05:32 never published
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with BinanceServer(
        FixedClock(EXCHANGE_NOW.to_pydatetime()), {"BTCUSDT": Series(btc.open_ms[keep], btc.ohlcv[keep])}
    ) as server:
        runtime, notifier = _runtime(tmp_path / "store", server)
        assert runtime.retrieve({"time": "2024-12-30T06:00:00Z"}, None)["gaps"] == 1
        # The next minutes append to the same day, which still has the hole: no new warning.
        for minute in ("06:01", "06:02"):
            assert runtime.retrieve({"time": f"2024-12-30T{minute}:00Z"}, None)["added"] == 1
    warnings = [s for s in notifier.sent if s[0] == "warning"]
    assert len(warnings) == 1
    assert warnings[0][1] == "retrieve binance BTC/USDT 1m: check the data"
    assert warnings[0][2] == "1 gaps (largest: 3 bars after 2024-12-30T05:29:00+00:00)"


def test_a_failing_job_is_notified_once_re_raised_and_changes_nothing(
    tmp_path: Path, exchange: BinanceServer
) -> None:
    runtime, notifier = _runtime(tmp_path / "store", exchange)
    runtime.retrieve({"time": "2024-12-30T05:00:00Z"}, None)
    before = snapshot(tmp_path / "store")
    exchange.fail_next(5, 503)
    with pytest.raises(ExchangeError):
        runtime.retrieve({"time": "2024-12-30T06:00:00Z"}, None)
    assert snapshot(tmp_path / "store") == before
    errors = [s for s in notifier.sent if s[0] == "error"]
    assert len(errors) == 1
    assert errors[0][1].startswith("scalpbot retrieve failed for BTC/USDT")
    with pytest.raises(ConfigError):
        runtime.retrieve({"time": "soon"}, None)
    assert snapshot(tmp_path / "store") == before


def test_execute_idles_until_a_release_is_current(tmp_path: Path, exchange: BinanceServer) -> None:
    runtime, notifier = _runtime(tmp_path / "store", exchange)
    runtime.retrieve({"time": "2024-12-30T06:00:00Z"}, None)
    idle = runtime.execute({"time": "2024-12-30T06:00:00Z"}, None)
    assert idle["status"] == "idle" and "no release of BTC/USDT is current" in idle["message"]
    assert not runtime.services.store.list("state/")  # no lease, ledger or portfolio written
    assert notifier.sent == deque()


def test_execute_trades_the_bar_that_closed_last_at_the_event_time(
    store: Path, exchange: BinanceServer
) -> None:
    runtime, notifier = _runtime(store, exchange, bot={"name": "lambda"})
    first = runtime.execute({"time": "2024-12-30T06:00:00Z"}, None)
    assert first["bar"] == "2024-12-30T05:59:00+00:00" and first["status"] == "ok"
    # The same event again (a retry) processes nothing twice; the next minute trades the next bar, which the
    # handler fetches from the exchange itself.
    assert runtime.execute({"time": "2024-12-30T06:00:00Z"}, None)["status"] == "skipped"
    second = runtime.execute({"time": "2024-12-30T06:01:00Z"}, None)
    assert second["bar"] == "2024-12-30T06:00:00+00:00" and second["status"] == "ok"
    decisions = Ledger(runtime.services.store, "lambda").events(
        pd.Timestamp("2024-12-30T05:00:00Z"), pd.Timestamp("2024-12-30T07:00:00Z"), kinds=("decision",)
    )
    assert len(decisions) == 2
    assert not runtime.services.store.list("state/lambda/lease")  # the lease is released after each cycle
    assert [s for s in notifier.sent if s[0] == "error"] == []


def test_a_cycle_that_fails_closed_raises_without_a_second_notification(
    store: Path, exchange: BinanceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, notifier = _runtime(store, exchange, bot={"name": "closed"})
    runtime.execute({"time": "2024-12-30T06:00:00Z"}, None)

    def unreachable(*args: object) -> None:
        raise ExchangeError("binance: connection reset")

    monkeypatch.setattr(runtime.trader("test").executor.broker, "snapshot", unreachable)
    with pytest.raises(CycleFailed, match="cannot be reconciled"):
        runtime.execute({"time": "2024-12-30T06:01:00Z"}, None)
    errors = [s for s in notifier.sent if s[0] == "error"]
    assert len(errors) == 1 and "failed closed" in errors[0][1]
    assert not runtime.services.store.list("state/closed/lease")


def test_an_exchange_outage_fails_the_execute_job_with_one_notification(
    store: Path, exchange: BinanceServer
) -> None:
    runtime, notifier = _runtime(store, exchange, bot={"name": "outage"})
    before = snapshot(store)
    exchange.fail_next(5, 500)
    with pytest.raises(CycleFailed, match="bars cannot be retrieved"):
        runtime.execute({"time": "2025-01-01T00:05:00Z"}, None)
    timing = "state/outage/last_cycle.json"  # the failed cycle's timing, for the dashboard
    added = set(_objects(store)) - set(_objects_of(before)) - {timing}
    assert [key.rsplit("/", 1)[1].split("-")[1] for key in added] == ["error"]  # the outage, recorded
    assert {k: v for k, v in _objects(store).items() if k not in {*added, timing}} == _objects_of(before)
    errors = [s for s in notifier.sent if s[0] == "error"]
    assert len(errors) == 1 and errors[0][1] == "outage: execute failed closed"


def test_the_event_names_the_symbol_of_the_run_one_of_the_bots() -> None:
    basket = ("BTC/USDT", "ETH/USDT")
    assert event_symbol({"time": "2024-12-30T06:01:00Z"}, "one", ("BTC/USDT",)) == "BTC/USDT"
    assert event_symbol({"symbol": "BTC/USDT"}, "one", ("BTC/USDT",)) == "BTC/USDT"
    assert event_symbol({"symbol": "ETH/USDT"}, "pair", basket) == "ETH/USDT"
    with pytest.raises(ConfigError, match=r"invoke once per symbol"):
        event_symbol({"time": "2024-12-30T06:01:00Z"}, "pair", basket)
    with pytest.raises(ConfigError, match=r"'ETH/USDC' is not traded by bot pair .*did you mean ETH/USDT"):
        event_symbol({"symbol": "ETH/USDC"}, "pair", basket)
    with pytest.raises(ConfigError, match="is not traded by bot one"):
        event_symbol({"symbol": ["BTC/USDT"]}, "one", ("BTC/USDT",))


def test_a_symbol_the_bot_does_not_trade_is_refused_notified_and_writes_nothing(
    store: Path, exchange: BinanceServer
) -> None:
    runtime, notifier = _runtime(store, exchange, bot={"name": "solo"})
    before = snapshot(store)
    with pytest.raises(ConfigError, match="'ETH/USDT' is not traded by bot solo"):
        runtime.execute({"time": "2024-12-30T06:00:00Z", "symbol": "ETH/USDT"}, None)
    assert snapshot(store) == before
    errors = [s for s in notifier.sent if s[0] == "error"]
    assert len(errors) == 1 and errors[0][1].startswith("scalpbot execute failed for ETH/USDT: ConfigError")


def test_a_basket_runs_the_symbol_its_event_names_on_that_symbols_state_and_refuses_none(
    store: Path, exchange: BinanceServer
) -> None:
    basket = {"name": "pair", "symbols": ["BTC/USDT", "ETH/USDT"]}
    runtime, notifier = _runtime(store, exchange, bot=basket)
    before = snapshot(store)
    with pytest.raises(ConfigError, match="bot pair trades 2 symbols"):
        runtime.execute({"time": "2024-12-30T06:00:00Z"}, None)
    assert snapshot(store) == before
    btc = runtime.execute({"time": "2024-12-30T06:00:00Z", "symbol": "BTC/USDT"}, None)
    assert (btc["symbol"], btc["status"], btc["bar"]) == ("BTC/USDT", "ok", "2024-12-30T05:59:00+00:00")
    keys = runtime.services.store.list("state/pair/")
    assert "state/pair/symbols/BTC_USDT/portfolio.json" in keys
    assert "state/pair/portfolio.json" not in keys and not [k for k in keys if k.endswith("lease.json")]
    decisions = Ledger(runtime.services.store, "pair").events(kinds=("decision",))
    assert decisions and {d.payload["symbol"] for d in decisions} == {"BTC/USDT"}
    errors = [s for s in notifier.sent if s[0] == "error"]
    assert len(errors) == 1 and errors[0][1] == "scalpbot execute failed: ConfigError"  # names no symbol


def test_a_one_symbol_bot_keeps_its_keys_whether_or_not_the_event_names_its_symbol(
    store: Path, exchange: BinanceServer
) -> None:
    runtime, _ = _runtime(store, exchange, bot={"name": "one"})
    unnamed = runtime.execute({"time": "2024-12-30T06:00:00Z"}, None)
    named = runtime.execute({"time": "2024-12-30T06:01:00Z", "symbol": "BTC/USDT"}, None)
    assert (unnamed["status"], named["status"]) == ("ok", "ok")
    keys = runtime.services.store.list("state/one/")
    assert "state/one/portfolio.json" in keys and "state/one/paper.json" in keys
    assert not [k for k in keys if "/symbols/" in k]
    decisions = Ledger(runtime.services.store, "one").events(kinds=("decision",))
    assert len(decisions) == 2 and all("symbol" not in d.payload for d in decisions)


def test_a_baskets_symbols_review_their_weeks_then_one_invocation_reviews_the_portfolio(
    basket_store: Path, tmp_path: Path, exchange: BinanceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scalpbot.jobs.improve

    monkeypatch.setattr(
        scalpbot.jobs.improve, "weekly_steps", lambda services, series: ()
    )  # tested elsewhere
    store = copy_of(basket_store, tmp_path)
    shutil.rmtree(store / "reports")
    runtime, notifier = _runtime(
        store,
        exchange,
        bot={"name": BASKET_BOT, "symbols": list(BASKET)},
        portfolio=dict(BASKET_LIMITS),
    )
    at = (START + pd.Timedelta(hours=BASKET_HOURS)).isoformat()
    folder = f"reports/{BASKET_BOT}/{START:%Y-%m-%d}/"
    for symbol in BASKET:  # the state machine's Map, one invocation per symbol
        runtime.monitor({"time": at, "symbol": symbol}, None)
    pages = {k: runtime.services.store.get(k).data for k in runtime.services.store.list(folder)}
    assert f"{folder}BTC_USDT/report.html" in pages and f"{folder}ETH_USDT/report.html" in pages
    assert f"{folder}report.html" not in pages  # no symbol writes the portfolio's page
    summary = runtime.monitor({"time": at, "scope": "portfolio"}, None)
    assert summary["report"] == f"{folder}report.html" and set(summary["symbols"]) == set(BASKET)  # type: ignore[arg-type]
    after = {k: runtime.services.store.get(k).data for k in runtime.services.store.list(folder)}
    assert {k: v for k, v in after.items() if k in pages} == pages  # the symbols' pages are theirs
    portfolio_page = after[f"{folder}report.html"].decode()
    assert 'href="BTC_USDT/report.html"' in portfolio_page and 'href="ETH_USDT/report.html"' in portfolio_page
    weekly = [s for s in notifier.sent if s[1] == f"{BASKET_BOT}: weekly report"]
    assert len(weekly) == 1 and all(symbol in weekly[0][2] for symbol in ("portfolio", *BASKET))


def test_a_one_symbol_bot_has_no_portfolio_review_beside_its_own(
    store: Path, exchange: BinanceServer
) -> None:
    runtime, _ = _runtime(store, exchange)
    before = snapshot(store)
    summary = runtime.monitor({"time": "2024-12-30T00:00:00Z", "scope": "portfolio"}, None)
    assert summary["skipped"].startswith("a bot of one symbol")
    assert snapshot(store) == before
