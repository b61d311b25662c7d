"""The execute path never imports keras, torch, optuna, gymnasium or stable-baselines3 (Lambda size, cold start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("keras", "torch", "optuna", "gymnasium", "stable_baselines3", "tensorflow", "jax", "backtesting")

SCRIPT = """
import json, sys, pandas as pd
from scalpbot.config import load_settings
from scalpbot.jobs.trading import build_executor, stored_bars
from scalpbot.jobs.execute import run_cycle
from scalpbot.services import build_services
services = build_services(load_settings(None, {"store": {"url": sys.argv[1]}}))
series = services.series()
executor = build_executor(services, series, bot="light", bars=stored_bars(services, series))
report = run_cycle(executor, pd.Timestamp("2024-12-30T06:00:00Z"))
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2].split(",")))
print(json.dumps({"status": report.status, "heavy": heavy}))
"""


def test_a_full_execute_cycle_in_a_fresh_interpreter_loads_no_heavy_library(
    active_release: tuple[Path, str],
) -> None:
    store, _ = active_release
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(store), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"status": "ok", "heavy": []}
