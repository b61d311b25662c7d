"""A store as an operator finds it: two bots replayed on the real sample with a trained release, one weekly report;
and a basket bot (two symbols sharing one risk budget) with its weekly review of the portfolio and each symbol."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.marketdata.files import FileMarketData, sample_path
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.jobs.basket_monitor import monitor_basket
from scalpbot.jobs.monitor import monitor
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import replay
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore
from scalpbot.wiring import Services, build_services

from support.trained import LOOSE_RISK, active_services

START = pd.Timestamp("2024-12-29T00:00:00Z")
END = pd.Timestamp("2024-12-29T12:00:00Z")


@pytest.fixture(scope="session")
def operated_store(active_release: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a store where bot ``alpha`` traded 12 hours (and has a weekly report) and ``beta`` 3 hours.

    ``beta`` runs with a cool-down of four hours after each loss, longer than its run: from its first losing
    trade on, its entries are denied to the end, so its ledger holds denials as well as decisions and its
    newest events are denials (whatever the shared release's trades).
    """
    store = tmp_path_factory.mktemp("operated") / "store"
    # the bars and releases only: bots other tests ran on the shared release are not this store's
    shutil.copytree(active_release[0], store, ignore=_other_bots(active_release[0]))
    services = active_services(store)
    series = services.series()
    quiet = ConsoleNotifier()
    replay(services, series, START, END, bot="alpha", notifier=quiet)
    cautious = active_services(store, cooldown_after_losses=1, cooldown_bars=240)  # denied to the end
    replay(cautious, series, START, START + pd.Timedelta(hours=3), bot="beta", notifier=quiet)
    monitor(services, series, bot="alpha", days=0.5, notifier=quiet)
    return store


BASKET = ("BTC/USDT", "ETH/USDT")
BASKET_BOT = "pair"
BASKET_HOURS = 3
BASKET_LIMITS = {"max_gross_notional": 10_000.0}
"""The budget's gross cap in USDT: both symbols decide alike on the same bars, so ETH/USDT's entry fits beside
BTC/USDT's when the entries are small and is denied (``max_gross_exposure``) when they are not."""


def basket_services(store: Path) -> Services:
    """Return services of the basket bot ``pair`` on ``store``: its symbols, its budget, loose risk limits."""
    overrides = {
        "store": {"url": str(store)},
        "risk": dict(LOOSE_RISK),
        "portfolio": dict(BASKET_LIMITS),
        "bot": {"name": BASKET_BOT, "symbols": list(BASKET)},
    }
    return build_services(load_settings(None, overrides))


@pytest.fixture(scope="session")
def basket_store(active_release: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a store where the basket bot ``pair`` (BTC/USDT and ETH/USDT on the sample's bars, the eager
    release for each, :data:`BASKET_LIMITS`) traded 3 hours and has its weekly review, and ``alpha`` (one
    symbol) traded one hour beside it."""
    store = tmp_path_factory.mktemp("basket") / "store"
    shutil.copytree(active_release[0], store, ignore=_other_bots(active_release[0]))
    services = basket_services(store)
    retrieve(services.dataset, FileMarketData(sample_path()), services.series("ETH/USDT"), resume=False)
    releases = ReleaseStore(services.store)
    source = releases.load("BTC/USDT", active_release[1], (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in source.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    releases.write("ETH/USDT", active_release[1], manifest, dict(source.artifacts))
    releases.promote("ETH/USDT", active_release[1], expected=None, reason="test", now=services.clock.now())
    quiet = ConsoleNotifier()
    end = START + pd.Timedelta(hours=BASKET_HOURS)
    replay(services, [services.series(s) for s in BASKET], START, end, bot=BASKET_BOT, notifier=quiet)
    single = active_services(store)
    replay(single, single.series(), START, START + pd.Timedelta(hours=1), bot="alpha", notifier=quiet)
    basket = [services.series(s) for s in BASKET]
    monitor_basket(services, basket, bot=BASKET_BOT, days=BASKET_HOURS / 24, notifier=quiet)
    return store


def _other_bots(root: Path) -> Callable[[str, list[str]], list[str]]:
    """Return a ``copytree`` filter that leaves out the store's bot state and reports."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if Path(folder) == root and n in ("state", "reports")]

    return ignore


def copy_of(store: Path, into: Path) -> Path:
    """Return a copy of ``store`` under ``into`` for a test that changes it."""
    target = into / "store"
    shutil.copytree(store, target)
    return target
