"""The one execute use case under the faults an operator meets: live config in a replay, an exchange outage
in the trade loop, a hole in the bars, a lost ledger event."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.errors import LedgerGap
from scalpbot.inference.signals import ReleaseCache, release_signals
from scalpbot.jobs.monitor import measure_week
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import BarTrader, replay, trade_loop
from scalpbot.state.cycle_timing import load_cycle_timing
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.releases import ReleaseStore
from scalpbot.wiring import (
    Services,
    build_executor,
    build_market_data,
    build_services,
    run_lease,
    stored_history,
    venue_profile,
)

from support.binance_server import BinanceServer
from support.binance_trading import BinanceTradingServer
from support.cli import run_cli
from support.trained import LOOSE_RISK, active_services

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

KEY, SECRET = "K3yAbCdEfGhIjKlMnOp", "S3cretQrStUvWxYz0123"


@pytest.fixture
def live_config(
    active_release: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BinanceTradingServer]:
    """Configure a live bot (ccxt broker, keys, the local exchange as its venue) on a copy of the trained store."""
    store = tmp_path / "store"
    shutil.copytree(active_release[0], store)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with BinanceTradingServer(FixedClock(datetime(2024, 12, 30, 1, tzinfo=UTC))) as server:
        (tmp_path / "scalpbot.toml").write_text(
            f"""
store.url = "{store}"
[execute]
broker = "ccxt"
[exchange]
api_url = "{server.url}"
[train]
trials = 5
max_epochs = 2
min_trades = 5
[risk]
cooldown_after_losses = 0
max_daily_loss = 1.0
max_drawdown = 1.0
"""
        )
        monkeypatch.setenv("SCALPBOT_EXCHANGE__API_KEY", KEY)
        monkeypatch.setenv("SCALPBOT_EXCHANGE__SECRET", SECRET)
        yield server


def test_a_replay_with_the_live_broker_configured_sends_nothing_to_the_exchange(
    live_config: BinanceTradingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "replay", "--bot", "hist", "--from", "2024-12-30T00:00:00Z", "--to", "2024-12-30T00:30:00Z"
    )
    assert code == 0, err
    assert "replayed" in out and "trades" in out
    assert live_config.requests == []
    assert Ledger(_store_services().store, "hist").events(kinds=("order_ack",))  # it did trade, on paper


def test_run_replay_with_the_live_broker_configured_sends_nothing_to_the_exchange(
    live_config: BinanceTradingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "run", "--bot", "hist", "--replay", "2024-12-30T00:00:00Z", "2024-12-30T00:30:00Z"
    )
    assert code == 0, err
    assert "runs train 1, execute 30; failures none" in out, out
    assert live_config.requests == []
    stored = PortfolioStore(_store_services().store, "hist").load()
    assert stored is not None and stored.snapshot.last_bar_time == pd.Timestamp("2024-12-30T00:29:00Z")
    again = run_cli(
        capsys, "run", "--bot", "hist", "--replay", "2024-12-30T00:00:00Z", "2024-12-30T00:30:00Z", "--json"
    )
    assert again[0] == 0, again[2]
    summary = json.loads(again[1])  # the same run again: every bar already processed, nothing sent
    assert (summary["runs"]["execute"], summary["failures"], summary["ticks"]) == (30, {}, 30)
    assert live_config.requests == []


def _store_services() -> Services:
    return build_services(load_settings(Path("scalpbot.toml"), {}))


def _live_store(
    active_release: tuple[Path, str], root: Path, until: pd.Timestamp, server_url: str
) -> Services:
    """Return services on a store holding the trained release and the sample's bars closed before ``until``."""
    store = root / "store"
    shutil.copytree(active_release[0] / "models", store / "models")
    services = build_services(
        load_settings(
            None,
            {
                "store": {"url": str(store)},
                "exchange": {"api_url": server_url, "max_retries": 1},
                "risk": dict(LOOSE_RISK),
            },
        ),
        FixedClock(until.to_pydatetime()),
    )
    source = active_services(active_release[0])
    bars = source.dataset.read(source.series(), until - pd.Timedelta(days=2), until)
    services.dataset.append(services.series(), bars)
    return services


def test_the_trade_loop_keeps_running_through_a_two_minute_outage_notifies_it_once_and_trades_after_it(
    active_release: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    start = pd.Timestamp("2024-12-30T12:00:00Z")
    clock = FixedClock((start + pd.Timedelta(seconds=5)).to_pydatetime())
    with BinanceServer(clock) as server:
        services = _live_store(active_release, tmp_path, start, server.url)
        services = Services(services.settings, services.store, services.dataset, clock)
        series = services.series()
        notifier = ConsoleNotifier()
        executor = build_executor(
            services, series, bot="loop", bars=stored_history(services, series), notifier=notifier
        )
        trader = BarTrader(
            services,
            executor,
            series,
            source=build_market_data("ccxt", services),
            lease=run_lease(services, "loop"),
            release_lease=False,
        )
        outage = (start + pd.Timedelta(minutes=1), start + pd.Timedelta(minutes=3))
        server.unavailable(outage[0].to_pydatetime(), outage[1].to_pydatetime())
        reports = []

        def wait(seconds: float) -> bool:
            clock.advance(timedelta(seconds=seconds))
            return len(reports) == 6

        trade_loop(trader, clock, wait, on_cycle=reports.append)
    assert [r.status for r in reports] == ["ok", "failed", "failed", "ok", "ok", "ok"]
    assert [r.bar.strftime("%H:%M") for r in reports] == [
        "11:59",
        "12:00",
        "12:01",
        "12:02",
        "12:03",
        "12:04",
    ]
    errors = [s for s in notifier.sent if s[0] == "error"]
    assert len(errors) == 1 and "bars cannot be retrieved" in errors[0][2]
    assert [s[1] for s in notifier.sent if s[0] == "info"] == ["loop: execute recovered"]
    ledger = Ledger(services.store, "loop")
    assert len(ledger.events(kinds=("error",))) == 1  # recorded once, not once a minute
    skipped = ledger.events(kinds=("skip",))
    assert [(e.payload["reason"], e.payload["bars"]) for e in skipped] == [("not_run", 2)]
    stored = PortfolioStore(services.store, "loop").load()
    assert stored is not None and stored.snapshot.last_bar_time == pd.Timestamp("2024-12-30T12:04:00Z")
    assert services.dataset.last_open_time(series) == pd.Timestamp("2024-12-30T12:04:00Z")  # nothing lost
    assert not run_lease(services, "loop").held and not (tmp_path / "store/state/loop/lease.json").exists()
    timing = load_cycle_timing(services.store, "loop")  # the dashboard's latency: bar close to cycle done
    assert timing is not None and timing.bar == pd.Timestamp("2024-12-30T12:04:00Z")
    assert timing.latency_seconds == pytest.approx(2.0, abs=1.0) and timing.cycle_seconds >= 0


def test_a_replay_across_a_three_hour_hole_equals_the_backtest_and_says_why_cycles_were_skipped(
    active_release: tuple[Path, str], tmp_path: Path
) -> None:
    source = active_services(active_release[0])
    hole = (pd.Timestamp("2024-12-30T02:00:00Z"), pd.Timestamp("2024-12-30T05:00:00Z"))
    start, end = pd.Timestamp("2024-12-29T22:00:00Z"), pd.Timestamp("2024-12-30T09:00:00Z")
    bars = source.dataset.read(source.series(), start - pd.Timedelta(days=2), end)
    gappy = bars.loc[(bars.index < hole[0]) | (bars.index >= hole[1])]
    store = tmp_path / "store"
    shutil.copytree(active_release[0] / "models", store / "models")
    services = active_services(store)
    retrieve(services.dataset, _Frame(gappy), services.series(), resume=False)
    report = replay(services, services.series(), start, end, bot="holes", notifier=ConsoleNotifier())
    trades = Ledger(services.store, "holes").trades(start, end)
    # The backtest of the same release on the same stored bars (its features run across the hole).
    venue = venue_profile(services.store, services.settings, services.series())
    trading = ReleaseCache(ReleaseStore(services.store), "BTC/USDT").current().for_venue(venue)
    history = services.dataset.read_with_warmup(services.series(), start, end, FEATURE_WINDOW)
    signals = release_signals(history, trading)
    inside = history.index >= start
    costs = services.settings.backtest
    expected = backtest(
        history.loc[inside], signals.loc[inside], fee=venue.taker_fee, slippage=costs.slippage,
        initial_equity=costs.initial_equity, rules=venue.order_rules(),
    ).trades  # fmt: skip
    closed = trades.loc[trades["exit_reason"] != "open"].reset_index(drop=True)
    expected = expected.loc[expected["exit_reason"] != "open"].reset_index(drop=True)
    assert len(closed) >= 5
    pd.testing.assert_frame_equal(
        closed[["entry_time", "exit_time", "side"]], expected[["entry_time", "exit_time", "side"]],
        check_dtype=False, check_categorical=False,
    )  # fmt: skip
    np.testing.assert_allclose(closed["pnl"], expected["pnl"], rtol=1e-9, atol=1e-9)
    after_hole = [t for t in closed["entry_time"] if hole[1] <= t < hole[1] + pd.Timedelta(hours=2)]
    assert after_hole, "the bot must trade right after the hole, as the backtest does"
    skips = Ledger(services.store, "holes").events(kinds=("skip",))
    assert [(e.time, e.payload["reason"], e.payload["bars"]) for e in skips] == [(hole[1], "hole", 180)]
    assert hole[0].isoformat() in skips[0].payload["message"]
    assert report.cycles == {"ok": int(((gappy.index >= start) & (gappy.index < end)).sum())}


class _Frame:
    """A market data source over a frame in memory (a file source without the file)."""

    name = "frame"

    def __init__(self, bars: pd.DataFrame) -> None:
        self._bars = bars

    def fetch_bars(
        self, symbol: str, timeframe: str, since: datetime | None, until: datetime | None
    ) -> Iterator[pd.DataFrame]:
        yield self._bars


def test_a_deleted_fill_event_is_reported_not_silently_dropped(
    active_release: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    shutil.copytree(active_release[0], store)
    services = active_services(store)
    start, end = pd.Timestamp("2024-12-30T00:00:00Z"), pd.Timestamp("2024-12-30T03:00:00Z")
    replay(services, services.series(), start, end, bot="lossy", notifier=ConsoleNotifier())
    ledger = Ledger(services.store, "lossy")
    fills = ledger.events(kinds=("fill",))
    assert len(fills) >= 6
    assert sorted(f.payload["seq"] for f in fills) == list(range(1, len(fills) + 1))
    all_trades = ledger.trades()
    for lost in (fills[3], fills[-1]):  # one in the middle, and the newest
        data = services.store.get(lost.key).data
        services.store.delete(lost.key)
        count = PortfolioStore(services.store, "lossy").load()
        assert count is not None
        with pytest.raises(LedgerGap, match=f"missing fill #{lost.payload['seq']}"):
            ledger.trades(fill_count=count.snapshot.fill_count)
        code, _, err = run_cli(capsys, "--store", str(store), "trades", "--bot", "lossy")
        assert code == 1 and f"missing fill #{lost.payload['seq']}" in err
        with pytest.raises(LedgerGap, match=f"missing fill #{lost.payload['seq']}"):
            measure_week(services, "lossy", services.series(), start, end)  # the weekly metrics
        services.store.put(lost.key, data)
    assert len(ledger.trades()) == len(all_trades)
