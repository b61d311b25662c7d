"""A store as an operator finds it: two bots replayed on the real sample with a trained release, one weekly report."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.jobs.monitor import monitor
from scalpbot.jobs.trading import replay

from support.trained import active_services

START = pd.Timestamp("2024-12-29T00:00:00Z")
END = pd.Timestamp("2024-12-29T12:00:00Z")


@pytest.fixture(scope="session")
def operated_store(active_release: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a store where bot ``alpha`` traded 12 hours (and has a weekly report) and ``beta`` 3 hours.

    ``beta`` runs with a cool-down after each loss, so its ledger holds denials as well as decisions.
    """
    store = tmp_path_factory.mktemp("operated") / "store"
    # the bars and releases only: bots other tests ran on the shared release are not this store's
    shutil.copytree(active_release[0], store, ignore=_other_bots(active_release[0]))
    services = active_services(store)
    series = services.series()
    quiet = ConsoleNotifier()
    replay(services, series, START, END, bot="alpha", notifier=quiet)
    cautious = active_services(store, cooldown_after_losses=1, cooldown_bars=30)  # beta's entries get denied
    replay(cautious, series, START, START + pd.Timedelta(hours=3), bot="beta", notifier=quiet)
    monitor(services, series, bot="alpha", days=0.5, notifier=quiet)
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
