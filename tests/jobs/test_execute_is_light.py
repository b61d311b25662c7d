"""The execute path never imports keras, torch, optuna, gymnasium or stable-baselines3 (Lambda size, cold start)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scalpbot.adapters.clock import FixedClock

from support.binance_server import BinanceServer
from support.files import snapshot

HEAVY = ("keras", "torch", "optuna", "gymnasium", "stable_baselines3", "tensorflow", "jax", "backtesting")

SCRIPT = """
import json, sys, pandas as pd
from scalpbot.config import load_settings
from scalpbot.jobs.cycle import run_cycle
from scalpbot.wiring import build_executor, build_services, stored_history
services = build_services(load_settings(None, {"store": {"url": sys.argv[1]}}))
series = services.series()
executor = build_executor(services, series, bot="light", bars=stored_history(services, series))
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


LAMBDA_SCRIPT = """
import json, sys
import scalpbot.aws as aws
result = aws.execution_lambda_handler({"time": "2024-12-30T06:01:00Z"}, None)
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1].split(",")))
print(json.dumps({"status": result["status"], "bar": result["bar"], "heavy": heavy}))
"""


def test_the_execution_lambda_handler_loads_no_heavy_library_and_compiles_nothing_after_the_warm_up(
    active_release: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the images: kernels compiled by ``scalpbot.warmup`` at build time, loaded by the handler."""
    store = tmp_path / "store"
    shutil.copytree(active_release[0], store)
    seed, cache = tmp_path / "seed", tmp_path / "tmp" / "numba-cache"
    monkeypatch.setenv("NUMBA_CPU_NAME", "generic")
    warm = subprocess.run(
        [sys.executable, "-m", "scalpbot.warmup"],
        env={**os.environ, "NUMBA_CACHE_DIR": str(seed)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert warm.returncode == 0, warm.stderr
    built = snapshot(seed)
    assert any(name.endswith(".nbc") for name in built)
    monkeypatch.setenv("SCALPBOT_STORE", str(store))
    monkeypatch.setenv("SCALPBOT_NUMBA_CACHE_SEED", str(seed))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with BinanceServer(FixedClock(datetime(2024, 12, 31, tzinfo=UTC))) as exchange:
        monkeypatch.setenv("SCALPBOT_EXCHANGE__API_URL", exchange.url)
        done = subprocess.run(
            [sys.executable, "-c", LAMBDA_SCRIPT, ",".join(HEAVY)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"status": "ok", "bar": "2024-12-30T06:00:00+00:00", "heavy": []}
    # Every kernel the cycle ran came from the seed: numba wrote no new or changed cache file.
    assert snapshot(cache) == built


def test_seeding_the_kernel_cache_adds_missing_files_and_overwrites_none(tmp_path: Path) -> None:
    from scalpbot.aws import seed_numba_cache

    seed, cache = tmp_path / "seed", tmp_path / "cache"
    (seed / "core_1").mkdir(parents=True)
    (seed / "core_1" / "a.nbi").write_bytes(b"seed index")
    (seed / "core_1" / "a.1.nbc").write_bytes(b"seed kernel")
    (cache / "core_1").mkdir(parents=True)  # numba creates the folders when the modules are imported
    (cache / "core_1" / "a.nbi").write_bytes(b"newer index")
    assert seed_numba_cache(str(seed), str(cache)) == 1
    assert snapshot(cache) == {
        "core_1/a.nbi": _digest(b"newer index"),
        "core_1/a.1.nbc": _digest(b"seed kernel"),
    }
    assert seed_numba_cache(str(seed), str(cache)) == 0
    assert seed_numba_cache(None, str(cache)) == 0
    assert seed_numba_cache(str(tmp_path / "missing"), str(cache)) == 0


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
