"""The folds' fits in worker processes: the same models as in-process fits, and never lost to the pool."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import scalpbot.ml.fit_pool as fit_pool
from scalpbot.errors import DataError
from scalpbot.ml.ensemble import EnsembleKind, release_kind
from scalpbot.ml.fit_pool import RowsSource, fit_each
from scalpbot.ml.model import ModelHyperParams, configure_threads
from scalpbot.ml.registry import MODEL_KINDS, LabelledRows, ModelKind, TrainedModel, model_kind

from support.model_data import synthetic

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

HP = ModelHyperParams(widths=(16,), batch_size=256, max_epochs=3, seed=11)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    configure_threads(1)


def folds(n: int = 3) -> list[RowsSource]:
    """Return ``n`` folds' sources of (train, validation) rows, each fold its own data."""

    def source(k: int) -> RowsSource:
        return lambda: (
            LabelledRows(*synthetic(1_500, seed=10 + k)),
            LabelledRows(*synthetic(400, seed=20 + k)),
        )

    return [source(k) for k in range(n)]


def predictions(kind: ModelKind, fits: list[TrainedModel]) -> list[np.ndarray]:
    x = synthetic(300, seed=99)[0]
    return [np.hstack([p, v[:, None]]) for p, v in (kind.predict(f.model, x) for f in fits)]


def assert_same_fits(kind: ModelKind, got: list[TrainedModel], expected: list[TrainedModel]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(predictions(kind, got), predictions(kind, expected), strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit
    assert [(f.epochs_run, f.best_epoch, f.best_val_loss) for f in got] == [
        (f.epochs_run, f.best_epoch, f.best_val_loss) for f in expected
    ]


def no_workers_left() -> bool:
    return not [p for p in multiprocessing.active_children() if p.name.startswith("fit worker")]


@pytest.mark.parametrize("members", [1, 2])
def test_fits_in_worker_processes_are_the_models_an_in_process_fit_makes(members: int) -> None:
    kind = release_kind("mlp", members)
    rows = folds()
    in_process = fit_each(kind, rows, HP, workers=1, log=pytest.fail)  # nothing to say
    said: list[str] = []
    in_workers = fit_each(kind, rows, HP, workers=2, log=said.append)
    assert_same_fits(kind, in_workers, in_process)
    assert len(said) == 1 and said[0].startswith(
        f"{3 * members} model fits in 2 worker processes (0 in this one): "
    )
    assert no_workers_left()
    if members > 1:  # an ensemble's members are fitted apart and put back in member order
        assert isinstance(kind, EnsembleKind)
        assert all(len(f.model) == members for f in in_workers)
        member = kind.member
        alone = member.fit(*rows[2](), kind.seeded(HP, 1))
        got = TrainedModel(in_workers[2].model[1], 0, 0, None, 0, 0)
        np.testing.assert_array_equal(predictions(member, [got])[0], predictions(member, [alone])[0])


def test_where_worker_processes_cannot_start_the_fits_run_here_and_the_log_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_process(self: Any) -> None:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(multiprocessing.get_context("spawn").Process, "start", no_process)
    kind = model_kind("mlp")
    rows = folds(2)
    said: list[str] = []
    got = fit_each(kind, rows, HP, workers=2, log=said.append)
    assert_same_fits(kind, got, fit_each(kind, rows, HP, workers=1))
    assert said[0] == (
        "model fits in 2 worker processes: 0 of 2 started (OSError: [Errno 38] Function not implemented); "
        "fitting the 2 remaining of 2 in this process"
    )
    assert said[1].startswith("2 model fits in 2 worker processes (2 in this one): ")


def test_a_worker_killed_while_it_fits_loses_only_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL one of two workers once it holds a fit: the other takes the pending fits, this process makes
    the one the dead worker held, and the models are the in-process fits'."""
    sent = threading.Event()
    send_next = fit_pool._Workers.send_next

    def send_and_tell(self: Any, connection: Any) -> None:
        send_next(self, connection)
        if connection in self.held and self.processes[connection].name == "fit worker 1":
            sent.set()

    monkeypatch.setattr(fit_pool._Workers, "send_next", send_and_tell)
    kind = release_kind("mlp", 2)
    rows = folds()
    said: list[str] = []
    result: list[list[TrainedModel]] = []
    run = threading.Thread(target=lambda: result.append(fit_each(kind, rows, HP, workers=2, log=said.append)))
    run.start()
    assert sent.wait(120)
    victim = next(p for p in multiprocessing.active_children() if p.name == "fit worker 1")
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)  # it holds its first fit: starting up, or fitting
    run.join(300)
    assert not run.is_alive() and victim.exitcode == -signal.SIGKILL
    assert_same_fits(kind, result[0], fit_each(kind, rows, HP, workers=1))
    assert said[0] == (
        "model fits in 2 worker processes: fit worker 1 died (no reply, exit code -9); "
        "fitting the 1 remaining of 6 in this process"
    )
    assert no_workers_left()


def test_a_fit_that_fails_in_a_worker_raises_its_own_error_with_the_workers_traceback() -> None:
    kind = model_kind("mlp")
    good = folds(2)

    def bad() -> tuple[LabelledRows, LabelledRows]:
        train, validation = good[1]()
        return LabelledRows(train.x, train.y_class, np.full(train.y_vol.size, np.nan)), validation

    with pytest.raises(DataError, match="training y_vol is negative or not finite in 1500 row") as raised:
        fit_each(kind, [good[0], bad], HP, workers=2)
    assert any("raised in fit worker process" in note for note in raised.value.__notes__)
    assert no_workers_left()


def test_of_several_failing_fits_the_first_in_order_raises_whichever_worker_fails_first() -> None:
    """Fold 1's fit fails in a worker held stopped until fold 2's has failed in the other: the error raised is
    fold 1's, as fitting the folds one after another here would raise, and no worker is left running."""
    kind = model_kind("mlp")
    good = folds(3)

    def failing(k: int, hold_first: bool = False) -> RowsSource:
        def rows() -> tuple[LabelledRows, LabelledRows]:
            if hold_first:  # the worker holding fold 1 (sent just before) waits until fold 2 has failed
                (worker,) = [p for p in multiprocessing.active_children() if p.name == "fit worker 1"]
                os.kill(worker.pid, signal.SIGSTOP)
                threading.Timer(2.0, os.kill, (worker.pid, signal.SIGCONT)).start()
            train, validation = good[k]()
            vol = np.full(train.y_vol.size, np.nan)
            vol[: k + 1] = 1.0
            return LabelledRows(train.x, train.y_class, vol), validation

        return rows

    said: list[str] = []
    with pytest.raises(DataError, match="not finite in 1499 row") as raised:
        fit_each(kind, [failing(0), failing(1, hold_first=True), good[2]], HP, workers=2, log=said.append)
    assert any("raised in fit worker process" in note for note in raised.value.__notes__)
    assert said == []
    assert no_workers_left()
    with pytest.raises(DataError, match="not finite in 1499 row"):
        fit_each(kind, [failing(0), failing(1), good[2]], HP, workers=1)


def test_a_kind_a_worker_cannot_load_is_fitted_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind registered at run time (a plug-in) is in this process's registry, not in a fresh worker's: the
    workers say so and this process fits every model."""
    mlp = model_kind("mlp")
    monkeypatch.setitem(MODEL_KINDS, "plugin", lambda: plugin)

    class Plugin:
        name = "plugin"

        def __getattr__(self, attribute: str) -> Any:
            return getattr(mlp, attribute)

    plugin = Plugin()
    said: list[str] = []
    got = fit_each(plugin, folds(3), HP, workers=2, log=said.append)  # type: ignore[arg-type]
    assert_same_fits(mlp, got, fit_each(mlp, folds(3), HP, workers=1))
    assert "a worker cannot load model kind 'plugin'" in said[0] and "fitting the 3 remaining of 3" in said[0]
    assert no_workers_left()


NO_SEMAPHORES = """
import multiprocessing.synchronize


def _no_sem_open(self, *args, **kwargs):  # as on AWS Lambda: no /dev/shm, so sem_open fails
    raise OSError(38, "Function not implemented")


multiprocessing.synchronize.SemLock.__init__ = _no_sem_open
"""

LAMBDA_LIKE_RUN = """
import concurrent.futures, json, sys
sys.path.insert(0, sys.argv[1])
from support.model_data import synthetic
import scalpbot.ml.fit_pool as fit_pool
from scalpbot.ml.fit_pool import RowsSource, fit_each
from scalpbot.ml.model import ModelHyperParams
from scalpbot.ml.registry import LabelledRows, model_kind
try:
    concurrent.futures.ProcessPoolExecutor(2).submit(print).result()
    pool = "started"
except OSError as e:
    pool = str(e)
hp = ModelHyperParams(widths=(16,), batch_size=256, max_epochs=3, seed=11)
rows = [
    (lambda k=k: (LabelledRows(*synthetic(1_500, seed=10 + k)), LabelledRows(*synthetic(400, seed=20 + k))))
    for k in range(3)
]
said = []
fits = fit_each(model_kind("mlp"), rows, hp, workers=2, log=said.append)
x = synthetic(300, seed=99)[0]
print(json.dumps({"pool": pool, "said": said, "probs": [model_kind("mlp").predict(f.model, x)[0].tolist() for f in fits]}))
"""


def test_the_workers_need_no_posix_semaphores_which_aws_lambda_lacks(tmp_path: Path) -> None:
    """In an interpreter (and its children) where every semaphore fails as on Lambda, a process pool cannot
    start, the fit workers do: the fits run in parallel, with no fallback, and equal the in-process fits."""
    (tmp_path / "sitecustomize.py").write_text(NO_SEMAPHORES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    tests = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-c", LAMBDA_LIKE_RUN, str(tests)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["pool"] == "[Errno 38] Function not implemented" and len(out["said"]) == 1
    assert out["said"][0].startswith("3 model fits in 2 worker processes (0 in this one): ")
    kind = model_kind("mlp")
    expected = predictions(kind, fit_each(kind, folds(), HP, workers=1))
    for got, want in zip(out["probs"], expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want[:, :3])  # JSON keeps every float64 bit


JOB_TO_KILL = """
import multiprocessing, sys, threading, time
sys.path.insert(0, sys.argv[1])
from support.model_data import synthetic
from scalpbot.ml.fit_pool import fit_each
from scalpbot.ml.model import ModelHyperParams
from scalpbot.ml.registry import LabelledRows, model_kind


def tell_pids():
    while len(multiprocessing.active_children()) < 2:
        time.sleep(0.05)
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)


threading.Thread(target=tell_pids, daemon=True).start()
hp = ModelHyperParams(widths=(256, 256), batch_size=64, max_epochs=500, patience=500, seed=1)
rows = [lambda: (LabelledRows(*synthetic(20_000, seed=1)), LabelledRows(*synthetic(2_000, seed=2)))] * 2
fit_each(model_kind("mlp"), rows, hp, workers=2)
"""


def test_a_job_killed_while_its_workers_fit_leaves_no_worker_running() -> None:
    tests = Path(__file__).resolve().parents[1]
    job = subprocess.Popen(
        [sys.executable, "-c", JOB_TO_KILL, str(tests)], stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    assert job.stdout is not None
    pids = [int(pid) for pid in job.stdout.readline().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and min(_cpu_seconds(pid) for pid in pids) < 8.0:
        time.sleep(0.2)  # past their imports (about 3 s of CPU): fitting
    job.kill()
    job.wait(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    orphans = [pid for pid in pids if _alive(pid)]
    for pid in orphans:  # leave nothing running, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert orphans == []


def _cpu_seconds(pid: int) -> float:
    """Return the CPU time process ``pid`` has used (user and system), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().split(")")[-1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    """Return whether process ``pid`` still runs (a zombie, dead but not reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
