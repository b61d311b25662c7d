"""`scalpbot run`: a failing job is notified while the others go on; SIGTERM stops cleanly, nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.notify.console import ConsoleNotifier
from scalpbot.errors import CycleFailed
from scalpbot.scheduler import ScheduledJob, Scheduler, replay_ticks

pytestmark = pytest.mark.slow

STEP = pd.Timedelta("1min")


def test_a_failing_job_is_notified_and_the_other_jobs_keep_running() -> None:
    ran: list[tuple[str, pd.Timestamp]] = []

    def ok(name: str) -> ScheduledJob:
        return ScheduledJob(name, lambda tick: ran.append((name, tick)))

    def broken(tick: pd.Timestamp) -> None:
        raise ConnectionError("exchange unreachable")

    notifier = ConsoleNotifier()
    ticks = replay_ticks(pd.Timestamp("2024-12-30T00:00Z"), pd.Timestamp("2024-12-30T03:00Z"), STEP)
    jobs = [ok("retrieve"), ScheduledJob("train", broken, pd.Timedelta(hours=1)), ok("execute")]
    report = Scheduler(jobs, notifier=notifier, symbol="BTC/USDT", stop=threading.Event()).run(ticks)
    assert report.ticks == 180
    assert report.runs == {"retrieve": 180, "train": 3, "execute": 180}
    assert report.failures == {"train": 3}
    errors = [m for m in notifier.sent if m[0] == "error"]
    assert len(errors) == 3
    assert errors[0][1] == "scalpbot train failed for BTC/USDT: ConnectionError"
    assert "exchange unreachable" in errors[0][2]


def test_a_cycle_that_failed_closed_counts_as_a_failure_without_a_second_notification() -> None:
    def closed(tick: pd.Timestamp) -> None:
        raise CycleFailed("broker paper cannot be reconciled")  # the executor notified its reason already

    notifier = ConsoleNotifier()
    ticks = replay_ticks(pd.Timestamp("2024-12-30T00:00Z"), pd.Timestamp("2024-12-30T00:05Z"), STEP)
    job = ScheduledJob("execute", closed)
    report = Scheduler([job], notifier=notifier, symbol="BTC/USDT", stop=threading.Event()).run(ticks)
    assert report.failures == {"execute": 5}
    assert list(notifier.sent) == []


def test_a_job_that_waits_first_runs_only_after_its_period() -> None:
    ran: list[pd.Timestamp] = []
    ticks = replay_ticks(pd.Timestamp("2024-12-30T00:00Z"), pd.Timestamp("2024-12-30T02:30Z"), STEP)
    job = ScheduledJob("monitor", ran.append, pd.Timedelta(hours=1), wait_first=True)
    Scheduler([job], notifier=ConsoleNotifier(), symbol="BTC/USDT", stop=threading.Event()).run(ticks)
    assert ran == [pd.Timestamp("2024-12-30T01:01Z"), pd.Timestamp("2024-12-30T02:01Z")]


def test_sigterm_lets_the_job_in_flight_finish_and_leaves_every_object_whole(
    active_release: tuple[Path, str], tmp_path: Path
) -> None:
    store = (
        tmp_path / "store"
    )  # a copy: the train job may promote, and the session's release must stay current
    shutil.copytree(active_release[0], store)
    (tmp_path / "scalpbot.toml").write_text(
        f'[store]\nurl = "{store}"\n[risk]\ncooldown_after_losses = 0\nmax_daily_loss = 1.0\nmax_drawdown = 1.0\n'
        "[train]\ntrials = 3\nmax_epochs = 1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SCALPBOT")}
    command = [sys.executable, "-m", "scalpbot", "run", "--bot", "sigterm", "--replay", "2024-12-28T00:00Z",
               "2024-12-29T00:00Z", "--train-every", "1000"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ledger = store / "state" / "sigterm" / "ledger"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (ledger.exists() and any(ledger.rglob("*.json"))):
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "stopped on request" in out
    for path in (store / "state" / "sigterm").rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            json.loads(path.read_bytes())  # every stored object is whole
    portfolio = json.loads((store / "state" / "sigterm" / "portfolio.json").read_bytes())
    assert portfolio["last_bar_time"] < "2024-12-28T23:59"
