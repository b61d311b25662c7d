"""A basket's replay killed right after a write of one symbol's cycle, then run again, ends where an
uninterrupted run ends: every symbol's own state, the shared budget and the one ledger, byte for byte.

Two symbols (BTC/USDT and ETH/USDT on the same bars, the same eager release) and ``max_gross_notional =
4000`` (quote): on every bar both decide alike, BTC/USDT reserves first, and ETH/USDT's entry fits beside it
when the entries are small and is denied by the budget when they are not, so kills between the two symbols'
cycles of one bar and inside the second are exercised. The killed run is a real
``scalpbot replay`` process (``support.kill_after_write``); the rerun's clock is an hour later.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.marketdata.files import FileMarketData, sample_path
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import replay
from scalpbot.state.ledger import Ledger
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore
from scalpbot.wiring import build_services

from support.files import snapshot
from support.trained import LOOSE_RISK

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

BOT = "kb"
START, END = "2024-12-30T00:00:00Z", "2024-12-30T00:40:00Z"
TESTS = Path(__file__).resolve().parents[1]
CONFIG = f"""
[risk]
cooldown_after_losses = {int(LOOSE_RISK["cooldown_after_losses"])}
max_daily_loss = {LOOSE_RISK["max_daily_loss"]}
max_drawdown = {LOOSE_RISK["max_drawdown"]}

[portfolio]
max_gross_notional = 4000.0

[bot]
symbols = ["BTC/USDT", "ETH/USDT"]

[notify]
console = true
"""
BTC, ETH = f"state/{BOT}/symbols/BTC_USDT/", f"state/{BOT}/symbols/ETH_USDT/"
WRITES = [
    ("BTC/USDT's lease", rf"{BTC}lease\.json$", 1),
    ("ETH/USDT's lease, after BTC/USDT's first cycle", rf"{ETH}lease\.json$", 1),
    ("BTC/USDT's second snapshot, before ETH/USDT's cycle of that bar", rf"{BTC}portfolio\.json$", 2),
    ("ETH/USDT's first snapshot", rf"{ETH}portfolio\.json$", 1),
    ("the budget's reservation", rf"state/{BOT}/portfolio_risk\.json$", 1),
    ("the budget's second write", rf"state/{BOT}/portfolio_risk\.json$", 2),
    ("ETH/USDT's first portfolio denial", r"-denial-", 1),
    ("ETH/USDT's paper account", rf"{ETH}paper\.json$", 1),
    ("BTC/USDT's exit fill", r"-fill-", 2),
]


def _replay(store: Path, clock_offset: timedelta = timedelta(0)) -> None:
    """Replay the basket in this process, as ``scalpbot replay`` does, with the clock moved by ``clock_offset``."""
    settings = load_settings(Path("scalpbot.toml"), {"store": {"url": str(store)}})
    services = build_services(settings, FixedClock(datetime.now(UTC) + clock_offset))
    basket = [services.series(symbol) for symbol in settings.symbols]
    replay(services, basket, pd.Timestamp(START), pd.Timestamp(END), bot=BOT, notifier=ConsoleNotifier())


def _in(root: Path, store: Path, run: object) -> None:
    (root / "scalpbot.toml").write_text(CONFIG)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        run(store)  # type: ignore[operator]
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def uninterrupted(
    active_release: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """Return a pristine store (ETH/USDT added) and the bot's state after an uninterrupted replay of it."""
    root = tmp_path_factory.mktemp("basket-uninterrupted")
    pristine = root / "pristine"
    shutil.copytree(active_release[0], pristine)
    services = build_services(load_settings(None, {"store": {"url": str(pristine)}}))
    retrieve(services.dataset, FileMarketData(sample_path()), services.series("ETH/USDT"), resume=False)
    releases = ReleaseStore(services.store)
    source = releases.load("BTC/USDT", active_release[1], (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in source.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    releases.write("ETH/USDT", active_release[1], manifest, dict(source.artifacts))
    releases.promote("ETH/USDT", active_release[1], expected=None, reason="test", now=services.clock.now())
    store = root / "store"
    shutil.copytree(pristine, store)
    _in(root, store, _replay)
    return pristine, snapshot(store / "state" / BOT)


def test_the_uninterrupted_basket_writes_each_symbols_state_and_denies_the_second_symbol(
    uninterrupted: tuple[Path, dict[str, str]],
) -> None:
    _, state = uninterrupted
    for symbol in ("BTC_USDT", "ETH_USDT"):
        assert {f"symbols/{symbol}/portfolio.json", f"symbols/{symbol}/paper.json"} <= set(state)
    assert "portfolio_risk.json" in state and "portfolio.json" not in state
    assert not [path for path in state if path.endswith("lease.json")]
    kinds = {path.rsplit("/", 1)[-1].split("-")[1] for path in state if path.startswith("ledger/")}
    assert {"decision", "denial", "fill"} <= kinds


@pytest.mark.parametrize(("written", "pattern", "nth"), WRITES, ids=[w[0] for w in WRITES])
def test_a_basket_replay_killed_right_after_a_write_converges_when_run_again(
    uninterrupted: tuple[Path, dict[str, str]], tmp_path: Path, written: str, pattern: str, nth: int
) -> None:
    pristine, expected = uninterrupted
    store = tmp_path / "store"
    shutil.copytree(pristine, store)
    (tmp_path / "scalpbot.toml").write_text(CONFIG)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCALPBOT")},
        "SCALPBOT_STORE": str(store),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    args = ("replay", "--bot", BOT, "--from", START, "--to", END)
    done = subprocess.run(
        [sys.executable, "-m", "support.kill_after_write", pattern, str(nth), "--", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -9, f"not killed (exit {done.returncode}): {done.stdout}{done.stderr}"
    assert snapshot(store / "state" / BOT) != expected, f"the run was killed after {written} yet finished"
    _in(tmp_path, store, lambda s: _replay(s, clock_offset=timedelta(hours=1)))
    assert snapshot(store / "state" / BOT) == expected  # each symbol's state, the budget and the ledger
    ledger = Ledger(build_services(load_settings(None, {"store": {"url": str(store)}})).store, BOT)
    assert len(ledger.trades(symbol="BTC/USDT")) >= 1
