"""Tuning speed-up with several workers (not a test): one policy study of T trials on PostgreSQL, 1, 2, 4 workers.

What it measures: the policy tuning of **one symbol's study** (the per-symbol training loop over ten symbols does
not exist yet): T trials of the train job's objective (walk-forward folds scored per hour, TPE) run by 1, 2 and 4
worker processes sharing one study on a real PostgreSQL server, as ``scalpbot train --workers N`` runs them.
Each worker is a spawned process that builds its evaluators and compiles (or loads) the kernels first; the clock
starts when all are ready and stops when the last has returned, so it covers the trials, the database round trips
and the budget bookkeeping, not the process start. Reported: trials/s, the speed-up over one worker, and how the
trials split between the workers, and the CPU time per trial of the workers and of the server with the cores
they kept busy (the work per trial should not grow with the workers: a speed-up needs idle cores, which a
machine busy with other work does not have). Each study is checked to hold exactly T complete trials.

Data: the bundled six weeks of real BTC/USDT 1m bars (``--file`` for another), cut into three consecutive folds
like the train job's validation folds. Predictions are fake but plausible (a noisy function of the future 15-bar
return, as in ``bench/policy_search.py``): the kernels cost what they cost on real predictions.

Server: a throwaway PostgreSQL cluster started for the run (Debian's binaries, see ``tests/support/postgres.py``)
with its default durability settings, or ``--storage URL`` for an existing database. It runs on the same cores as
the workers: on a 2-core machine expect at most about 2x, less the server's share.

Usage: python bench/tuning_workers.py [--trials T] [--workers 1,2,4] [--storage URL] [--file PATH]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys
import time
import uuid
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from scalpbot.adapters.marketdata.files import read_bar_file, sample_path
from scalpbot.core.evaluation import PolicyEvaluator, PolicyWindow
from scalpbot.core.policy_params import ParamBounds
from scalpbot.ml.shared_study import WORKER_ATTR
from scalpbot.ml.tuning import join_policy_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.postgres import running_postgres

HORIZON = 15
FOLDS = 3
OPTIONS: dict[str, Any] = {"periods_per_year": 365.0 * 24.0, "min_trades": 20, "fee": 0.0004}


def fake_predictions(close: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (probs (n, 3), vol (n,)): a noisy score of the future return, trailing realized volatility."""
    log_close = np.log(close)
    returns = np.diff(log_close, prepend=log_close[0])
    vol = pd.Series(returns).rolling(60, min_periods=2).std().bfill().to_numpy() * np.sqrt(HORIZON)
    forward = np.zeros(close.shape[0])
    forward[:-HORIZON] = log_close[HORIZON:] - log_close[:-HORIZON]
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.nan_to_num(forward / vol, posinf=0.0, neginf=0.0)
    score = 0.15 * scaled + np.random.default_rng(seed).normal(0.0, 1.0, close.shape[0])
    p_long = 1.0 / (1.0 + np.exp(-(score - 2.0)))
    p_short = 1.0 / (1.0 + np.exp(-(-score - 2.0)))
    return np.column_stack([p_short, 1.0 - p_long - p_short, p_long]), vol


def fold_windows(path: Path) -> list[PolicyWindow]:
    """Return three consecutive hourly-scored windows over the bars at ``path`` with fake predictions."""
    bars = read_bar_file(path).set_index("timestamp")[["open", "high", "low", "close"]]
    probs, vol = fake_predictions(bars["close"].to_numpy())
    edges = np.linspace(0, len(bars), FOLDS + 1).astype(int)
    return [
        PolicyWindow.from_frame(bars.iloc[a:b], probs[a:b], vol[a:b], period="1h")
        for a, b in itertools.pairwise(edges)
    ]


def worker(path: Path, storage: str, study: str, trials: int, start: Any, cpu: Any) -> None:
    """One worker: build and warm the evaluators, wait for the start, run its share, report its CPU seconds."""
    windows = fold_windows(path)
    for window in windows:
        PolicyEvaluator(window)(ParamBounds.default().base)
    start.wait()
    tick = time.process_time()
    join_policy_study(
        windows, ParamBounds.default(), storage=storage, study_name=study, n_trials=trials, **OPTIONS
    )
    cpu.put(time.process_time() - tick)


def server_cpu_s(pid: int | None) -> float:
    """Return the CPU seconds of the PostgreSQL server ``pid`` and its processes, ended ones included (Linux)."""
    if pid is None or not Path(f"/proc/{pid}/stat").exists():
        return float("nan")

    def fields(stat: Path) -> list[str]:
        return stat.read_text().rpartition(")")[2].split()

    own = fields(Path(f"/proc/{pid}/stat"))
    total = sum(int(own[i]) for i in (11, 12, 13, 14))  # utime, stime, and those of its reaped children
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            data = fields(stat)
        except OSError:
            continue
        if int(data[1]) == pid:  # a live backend
            total += int(data[11]) + int(data[12])
    return total / os.sysconf("SC_CLK_TCK")


def run(
    path: Path, storage: str, trials: int, workers: int, server_pid: int | None
) -> tuple[float, float, float, Counter[str]]:
    """Tune a fresh study with ``workers`` processes; return the wall seconds, the workers' and the server's CPU
    seconds, and the trials per worker."""
    context = multiprocessing.get_context("spawn")
    start, cpu = context.Barrier(workers + 1), context.Queue()
    study = f"bench-{workers}-{uuid.uuid4().hex[:8]}"
    processes = [
        context.Process(target=worker, args=(path, storage, study, trials, start, cpu))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    start.wait()
    server_before = server_cpu_s(server_pid)
    tick = time.perf_counter()
    workers_cpu = sum(cpu.get() for _ in processes)
    for process in processes:
        process.join()
    wall = time.perf_counter() - tick
    server = server_cpu_s(server_pid) - server_before
    if any(process.exitcode != 0 for process in processes):
        raise SystemExit(f"a worker failed: exit codes {[p.exitcode for p in processes]}")
    done = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    states = Counter(t.state.name for t in done)
    if states != {"COMPLETE": trials}:
        raise SystemExit(f"study {study} holds {dict(states)}, not {trials} complete trials")
    return wall, workers_cpu, server, Counter(t.user_attrs[WORKER_ATTR] for t in done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--storage", help="a PostgreSQL URL [a throwaway local server]")
    parser.add_argument("--file", type=Path, default=sample_path())
    args = parser.parse_args()
    os.environ.update(NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")  # the workers inherit it: one thread each
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counts = [int(n) for n in args.workers.split(",")]
    windows = fold_windows(args.file)
    evaluator = PolicyEvaluator(windows[0], **{k: v for k, v in OPTIONS.items() if k != "min_trades"})
    evaluator(ParamBounds.default().base)
    tick = time.perf_counter()
    for _ in range(20):
        evaluator(ParamBounds.default().base)
    kernel_ms = (time.perf_counter() - tick) / 20 * 1e3 * FOLDS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"data: {args.file.name}, {sum(len(w) for w in windows):,} bars in {FOLDS} hourly-scored folds; "
        f"kernels ~{kernel_ms:.1f} ms per trial; {cores} cores (os.cpu_count() {os.cpu_count()})"
    )
    print(f"one study of {args.trials} trials (TPE) per run; workers are spawned processes sharing it")
    if hasattr(os, "getloadavg"):
        one, five, fifteen = os.getloadavg()
        print(
            f"load average before the runs (other work on the cores skews the figures): {one:.1f} {five:.1f} {fifteen:.1f}"
        )
    server = nullcontext(None) if args.storage else running_postgres(durable=True)
    with server as pg:
        storage = args.storage or pg.create_database("bench")
        where = "the given database" if args.storage else f"a local PostgreSQL server ({pg.bin_dir})"
        print(f"storage: {where}, default durability (fsync on)")
        base = None
        for workers in counts:
            wall, cpu, server, split = run(args.file, storage, args.trials, workers, pg and pg.pid)
            if workers == 1:
                base = wall
            rate = args.trials / wall
            speedup = f"{base / wall:.2f}x" if base else "-"
            load = f" (load {os.getloadavg()[0]:.1f})" if hasattr(os, "getloadavg") else ""
            print(
                f"{workers} worker(s){load}: {wall:6.1f} s, {rate:6.1f} trials/s, speed-up {speedup} over one worker; "
                f"trials per worker {sorted(split.values(), reverse=True)}"
            )
            per_trial = 1e3 / args.trials
            print(
                f"    CPU per trial: workers {cpu * per_trial:.0f} ms + server {server * per_trial:.0f} ms; "
                f"{(cpu + server) / wall:.2f} cores busy on average"
            )


if __name__ == "__main__":
    main()
