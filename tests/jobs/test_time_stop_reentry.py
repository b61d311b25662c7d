"""A same-direction signal on the bar whose time stop closes the position re-enters at the next open, as in a
backtest: the cycle checks that entry and reserves it in the bot's budget like any other; denied, the time stop
still closes the position and nothing re-enters."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.clock import SystemClock
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.adapters.store.folder import FolderStore
from scalpbot.core.backtest.portfolio import Leg, portfolio_backtest
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.portfolio_risk import PortfolioLimits, Reservation
from scalpbot.inference.signals import release_signals
from scalpbot.jobs.cycle import Executor, run_cycle
from scalpbot.jobs.services import venue_profile
from scalpbot.state.dataset import BarDataset
from scalpbot.state.history import MemoryHistory
from scalpbot.state.ledger import Ledger
from scalpbot.state.risk_budget import RiskBudget
from scalpbot.wiring import Services, build_executor

from support.symbol_cycles import EdgeRelease, bot_settings, publish_release

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

START = pd.Timestamp("2025-03-03T00:00:00Z")
BOT = "reentry"
SYMBOL = "BTC/USDT"
OTHER = "ETH/USDT"
TRADED = 8
"""Bars traded after the features' window: a long held two bars, closed by its time stop, re-entered, ..."""
LIMITS = {"max_positions": 1}


def _bars() -> pd.DataFrame:
    """A market that barely moves (no stop or target is reached): only the time stop closes positions."""
    n = FEATURE_WINDOW + TRADED
    rng = np.random.default_rng(7)
    close = 60_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-5, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    index = pd.date_range(START, periods=n, freq="1min", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.00001,
            "low": np.minimum(open_, close) * 0.99999,
            "close": close,
            "volume": rng.uniform(1.0, 100.0, n),
        },
        index=index,
    )


def _services(tmp_path: Path) -> Services:
    """A bot of two symbols whose BTC/USDT release is long on every bar, holding each position two bars."""
    store = FolderStore(tmp_path / "store")
    release = EdgeRelease(
        (0.05, 0.15, 0.8), 0.004, {"entry_threshold": 0.1, "max_position": 0.3, "max_hold": 2}
    )
    publish_release(store, SYMBOL, release, START)
    settings = bot_settings((SYMBOL, OTHER), LIMITS)
    return Services(settings, store, BarDataset(store, settings.data.format), SystemClock(), build_executor)


def _executor(tmp_path: Path) -> Executor:
    services = _services(tmp_path)
    return build_executor(
        services,
        services.series(SYMBOL),
        bot=BOT,
        bars=MemoryHistory(_bars()),
        mode="replay",
        notifier=ConsoleNotifier(io.StringIO()),
    )


def _bars_traded() -> list[pd.Timestamp]:
    first = START + pd.Timedelta(minutes=FEATURE_WINDOW - 1)
    return list(pd.date_range(first, periods=TRADED, freq="1min", tz="UTC"))


def test_a_reentry_at_the_time_stop_holds_the_budgets_reservation(tmp_path: Path) -> None:
    executor = _executor(tmp_path)
    budget = RiskBudget(executor.store, BOT, PortfolioLimits(**LIMITS))
    reentries = 0
    for bar in _bars_traded():
        report = run_cycle(executor, bar)
        assert report.status == "ok" and report.denial is None
        position = executor.snapshots.load().snapshot.position  # type: ignore[union-attr]
        book = budget.load()
        assert book is not None
        reserved = book.reservations[SYMBOL]
        if position is not None and report.signal is not None and reserved.bar == bar:
            reentries += position.entry_client_id != reserved.client_id  # re-entering at the next open
        elif position is not None:
            assert reserved.client_id == position.entry_client_id, (
                f"{bar}: the position is not the one reserved"
            )
    assert reentries >= 2, "no position was closed by its time stop and re-entered"
    fills = Ledger(executor.store, BOT).events(kinds=("fill",))
    assert {f.payload["reason"] for f in fills} == {"entry", "time"}


def test_a_denied_reentry_lets_the_time_stop_close_the_position(tmp_path: Path) -> None:
    executor = _executor(tmp_path)
    budget = RiskBudget(executor.store, BOT, PortfolioLimits(**LIMITS))
    bars = _bars_traded()
    for bar in bars[:2]:  # entered at the open of the second bar, held two bars
        run_cycle(executor, bar)
    position = executor.snapshots.load().snapshot.position  # type: ignore[union-attr]
    assert position is not None
    # The bot's other symbol opens a position: the one slot is taken when BTC/USDT would re-enter.
    other = Reservation(1, 1_000.0, "eth-entry", bars[1])
    budget.settle(OTHER, exits=[], held=other, at=bars[1], equity=10_000.0)

    report = run_cycle(executor, bars[2])  # the time stop closes at the next open; the re-entry is denied

    assert report.denial is not None and "open positions across the bot" in report.denial
    denial = Ledger(executor.store, BOT).events(kinds=("denial",))[-1].payload
    assert (denial["scope"], denial["code"]) == ("portfolio", "max_positions")
    book = budget.load()
    assert book is not None and book.reservations[SYMBOL].client_id == position.entry_client_id
    run_cycle(executor, bars[3])
    assert executor.snapshots.load().snapshot.position is None  # type: ignore[union-attr]
    book = budget.load()
    assert book is not None and set(book.reservations) == {OTHER}  # the closed position gave its slot back
    time_exit = [
        f for f in Ledger(executor.store, BOT).events(kinds=("fill",)) if f.payload["reason"] == "time"
    ]
    assert [f.time for f in time_exit] == [bars[3]]


def test_the_portfolio_backtest_reserves_the_reentry_as_the_cycle_does(tmp_path: Path) -> None:
    services = _services(tmp_path)
    series = services.series(SYMBOL)
    bars = _bars()
    executor = build_executor(
        services,
        series,
        bot=BOT,
        bars=MemoryHistory(bars),
        mode="replay",
        notifier=ConsoleNotifier(io.StringIO()),
    )
    traded = _bars_traded()
    for bar in traded:
        run_cycle(executor, bar)
    venue = venue_profile(services.store, services.settings, series)
    inside = (bars.index >= traded[0]) & (bars.index <= traded[-1])
    leg = Leg(
        SYMBOL,
        bars.loc[inside],
        release_signals(bars, executor.model()).loc[inside],
        fee=venue.taker_fee,
        rules=venue.order_rules(),
        limits=executor.limits,
        market_rules=executor.market_rules,
    )
    expected = portfolio_backtest([leg], executor.portfolio, bot=BOT, initial_equity=10_000.0)
    book = RiskBudget(services.store, BOT, executor.portfolio).load()
    assert book is not None and expected.book is not None
    assert {s: (r.client_id, r.bar) for s, r in book.reservations.items()} == {
        s: (r.client_id, r.bar) for s, r in expected.book.reservations.items()
    }
    assert book.equity == pytest.approx(expected.book.equity, rel=1e-12)
