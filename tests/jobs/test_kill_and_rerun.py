"""SIGKILL right after each kind of store write, then run again: the rerun ends where an uninterrupted run ends.

The killed runs are real ``scalpbot`` processes (``support.kill_after_write``) killed with SIGKILL right after
the write returned - no cleanup runs. The rerun is the same command; its clock is an hour later, as an
operator's rerun would be, so the dead run's lease has expired. Nothing may be lost or doubled: the bot's
whole state (ledger events, portfolio, paper account) and its trades equal the uninterrupted run's byte for
byte, and the stored bars equal an uninterrupted fetch's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.marketdata.files import FileMarketData
from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.config import load_settings
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.trading import replay
from scalpbot.state.ledger import Ledger
from scalpbot.wiring import build_services

from support.files import snapshot, write_csv
from support.trained import LOOSE_RISK

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

BOT = "k"
START, END = "2024-12-30T00:00:00Z", "2024-12-30T00:40:00Z"
TESTS = Path(__file__).resolve().parents[1]
CONFIG = f"""
[risk]
cooldown_after_losses = {int(LOOSE_RISK["cooldown_after_losses"])}
max_daily_loss = {LOOSE_RISK["max_daily_loss"]}
max_drawdown = {LOOSE_RISK["max_drawdown"]}

[notify]
console = true
"""

# (what was just written, key pattern, which matching write): each kind of write a trading cycle makes.
CYCLE_WRITES = [
    ("lease acquired", rf"state/{BOT}/lease\.json$", 1),
    ("paper order queued", rf"state/{BOT}/paper\.json$", 1),
    ("decision event", r"-decision-", 1),
    ("order_ack event", r"-order_ack-", 1),
    ("entry fill event", r"-fill-", 1),
    ("exit fill event", r"-fill-", 2),
    ("first portfolio snapshot", rf"state/{BOT}/portfolio\.json$", 1),
    ("risk budget reservation", rf"state/{BOT}/portfolio_risk\.json$", 1),
    ("risk budget given back with the trade's pnl", rf"state/{BOT}/portfolio_risk\.json$", 2),
    ("portfolio snapshot after the entry", rf"state/{BOT}/portfolio\.json$", 3),
    ("lease released, not yet deleted", rf"state/{BOT}/lease\.json$", 2),
]


def _run_killed(cwd: Path, store: Path, pattern: str, nth: int, *args: str) -> None:
    """Run ``scalpbot ARGS`` on ``store`` and assert it was killed right after the chosen write."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCALPBOT")},
        "SCALPBOT_STORE": str(store),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "support.kill_after_write", pattern, str(nth), "--", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -9, f"not killed (exit {done.returncode}): {done.stdout}{done.stderr}"


def _replay(store: Path, clock_offset: timedelta = timedelta(0)) -> None:
    """Replay the window in this process, as ``scalpbot replay`` does, with the clock moved by ``clock_offset``."""
    settings = load_settings(Path("scalpbot.toml"), {"store": {"url": str(store)}})
    services = build_services(settings, FixedClock(datetime.now(UTC) + clock_offset))
    replay(
        services,
        services.series(),
        pd.Timestamp(START),
        pd.Timestamp(END),
        bot=BOT,
        notifier=ConsoleNotifier(),
    )


def _uninterrupted_run(source: Path, root: Path, config: str, run: Callable[[Path], None]) -> Path:
    """Run ``run`` once on a copy of the store ``source``, in ``root`` with its config file; return the copy."""
    store = root / "store"
    shutil.copytree(source, store)
    (root / "scalpbot.toml").write_text(config)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        run(store)
    finally:
        os.chdir(cwd)
    return store


@pytest.fixture(scope="module")
def uninterrupted(
    active_release: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """Return a pristine copy of the trained store and the bot's state after an uninterrupted replay."""
    root = tmp_path_factory.mktemp("uninterrupted")
    pristine = root / "pristine"
    shutil.copytree(active_release[0], pristine)
    store = _uninterrupted_run(pristine, root, CONFIG, _replay)
    return pristine, snapshot(store / "state" / BOT)


def test_the_uninterrupted_replay_makes_every_kind_of_write(
    uninterrupted: tuple[Path, dict[str, str]],
) -> None:
    _, state = uninterrupted
    kinds = {path.rsplit("/", 1)[-1].split("-")[1] for path in state if path.startswith("ledger/")}
    assert {"decision", "order_ack", "fill"} <= kinds
    assert {"portfolio.json", "paper.json", "portfolio_risk.json"} <= set(state)
    assert "lease.json" not in state
    fills = [p for p in state if "-fill-" in p]
    assert len(fills) >= 2


@pytest.mark.parametrize(("written", "pattern", "nth"), CYCLE_WRITES, ids=[w[0] for w in CYCLE_WRITES])
def test_a_replay_killed_right_after_a_write_converges_when_run_again(
    uninterrupted: tuple[Path, dict[str, str]], tmp_path: Path, written: str, pattern: str, nth: int
) -> None:
    pristine, expected = uninterrupted
    store = tmp_path / "store"
    shutil.copytree(pristine, store)
    (tmp_path / "scalpbot.toml").write_text(CONFIG)
    _run_killed(tmp_path, store, pattern, nth, "replay", "--bot", BOT, "--from", START, "--to", END)
    assert snapshot(store / "state" / BOT) != expected, f"the run was killed after the {written} yet finished"
    _replay(store, clock_offset=timedelta(hours=1))
    assert snapshot(store / "state" / BOT) == expected  # the ledger, the portfolio and the paper account
    trades = Ledger(build_services(load_settings(None, {"store": {"url": str(store)}})).store, BOT).trades()
    assert len(trades) >= 1


def _fetch_args(source: Path) -> list[str]:
    return ["fetch", "--source", f"file:{source}"]


@pytest.mark.parametrize(("written", "nth"), [("an existing day merged", 1), ("a new day created", 2)])
def test_a_fetch_killed_right_after_a_day_is_written_converges_when_run_again(
    sample_bars: pd.DataFrame, tmp_path: Path, written: str, nth: int
) -> None:
    first = sample_bars.loc["2024-12-20T00:00Z":"2024-12-21T11:59Z"]
    more = sample_bars.loc["2024-12-21T12:00Z":"2024-12-23T23:59Z"]
    stores = {}
    for name in ("uninterrupted", "killed"):
        store = tmp_path / name
        services = build_services(load_settings(None, {"store": {"url": str(store)}}))
        retrieve(
            services.dataset, FileMarketData(write_csv(first, tmp_path / "first.csv")), services.series()
        )
        stores[name] = store
    source = write_csv(more, tmp_path / "more.csv")
    services = build_services(load_settings(None, {"store": {"url": str(stores["uninterrupted"])}}))
    retrieve(services.dataset, FileMarketData(source), services.series())
    expected = snapshot(stores["uninterrupted"])
    _run_killed(tmp_path, stores["killed"], r"^data/.*\.parquet$", nth, *_fetch_args(source))
    assert snapshot(stores["killed"]) != expected, f"killed after {written}, yet the fetch finished"
    services = build_services(load_settings(None, {"store": {"url": str(stores["killed"])}}))
    retrieve(services.dataset, FileMarketData(source), services.series())
    assert snapshot(stores["killed"]) == expected


TRAIN_CONFIG = """
[train]
trials = 5
max_epochs = 2
min_trades = 5
days = 14
"""
TRAIN_WRITES = [
    ("tuning study saved", r"/studies/.*\.db$", 1),
    ("onnx model written", r"/model\.onnx$", 1),
    ("keras model written", r"/model\.keras$", 1),
    ("manifest written", r"/manifest\.json$", 1),
]


def _train(store: Path) -> None:
    from scalpbot.jobs.train import train

    services = build_services(load_settings(Path("scalpbot.toml"), {"store": {"url": str(store)}}))
    train(services, services.series())


def _releases(store: Path) -> dict[str, dict[str, object]]:
    """Return each complete release's manifest, by content hash, without what records when it was written."""
    import json

    root = store / "models" / "BTC_USDT" / "releases"
    found = {}
    for manifest in sorted(root.glob("*/manifest.json")):
        body = json.loads(manifest.read_text())
        # A .keras file is a zip that records when it was saved; the model itself is compared in onnx bytes.
        body["artifacts"].pop("model.keras")
        body["tuning"] = {k: v for k, v in body["tuning"].items() if not k.endswith("_s")}  # seconds taken
        found[manifest.parent.name.split("-")[1]] = {
            k: v for k, v in body.items() if k not in ("created_at", "release_id", "seal")
        }
    return found


@pytest.fixture(scope="module")
def trained_once(
    uninterrupted: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, dict[str, object]]]:
    """Return a store holding only bars, and the releases one uninterrupted train run leaves in a copy of it."""
    root = tmp_path_factory.mktemp("trained-once")
    bars_only = root / "bars"
    shutil.copytree(uninterrupted[0] / "data", bars_only / "data")
    releases = _releases(_uninterrupted_run(bars_only, root, TRAIN_CONFIG, _train))
    assert len(releases) == 1
    return bars_only, releases


@pytest.mark.parametrize(("written", "pattern", "nth"), TRAIN_WRITES, ids=[w[0] for w in TRAIN_WRITES])
def test_a_train_run_killed_right_after_a_write_converges_when_run_again(
    trained_once: tuple[Path, dict[str, dict[str, object]]],
    tmp_path: Path,
    written: str,
    pattern: str,
    nth: int,
) -> None:
    bars_only, expected = trained_once
    store = tmp_path / "store"
    shutil.copytree(bars_only, store)
    (tmp_path / "scalpbot.toml").write_text(TRAIN_CONFIG)
    _run_killed(tmp_path, store, pattern, nth, "train")
    _train(store)
    assert _releases(store) == expected  # one release, the same one: nothing lost, nothing doubled
    _train(store)  # and once more: still that one release
    assert _releases(store) == expected
