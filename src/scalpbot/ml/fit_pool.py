"""Fit several models at once, one worker process per core: the walk-forward folds' fits of a train run.

A train run fits one model per validation fold and candidate label (per member, for an ensemble) on one
compute thread each, so on a machine with several cores all but one would idle. :func:`fit_each` fits them in
up to ``workers`` spawned processes at once; every fit is its own unit of work (an ensemble's members too), so
two labels' three folds keep six cores busy. Each worker fits with one thread, as the train job does
in-process, and hands the model back as the kind's own artifact bytes (the float32 weights, exactly), so the
models, their predictions and their ONNX export are the ones an in-process fit makes for the same seed.

The rows of a fit are sliced when it is sent (or fitted here), so the job holds one fit's copy at a time.
Plain processes and pipes, no pool: a pool's queues need POSIX semaphores, which AWS Lambda lacks. Where
workers cannot start, a worker dies or cannot load the model kind, the fits that did not come back are made
in this process, one after another, and the log says why: a run is never lost to the workers, only slower.
A worker dies with the job (``PR_SET_PDEATHSIG`` on Linux), so a killed job leaves no fit running.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, cast

from scalpbot.ml.registry import LabelledRows, ModelKind, TrainedModel, model_kind

__all__ = ["RowsSource", "available_cores", "die_with_parent", "fit_each"]

_log = logging.getLogger(__name__)

RowsSource = Callable[[], tuple[LabelledRows, LabelledRows]]
"""Return one fit's ``(train, validation)`` rows, sliced when called."""

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_STOP_WAIT_S = 5.0


def available_cores() -> int:
    """Return the CPU cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


@dataclass(frozen=True)
class _Unit:
    """One model to fit: the registered kind's name, the source of its rows and its hyper-parameters."""

    kind: str
    rows: RowsSource
    hp: Any


def _registered(kind: ModelKind) -> str | None:
    """Return the registry name a worker can load ``kind`` by, or None when the kind is not registered."""
    try:
        return kind.name if model_kind(kind.name) is kind else None
    except Exception:
        return None


def _units(kind: ModelKind, rows: Sequence[RowsSource], hp: Any) -> tuple[ModelKind, list[_Unit], int] | None:
    """Return the kind the workers fit, its units (an ensemble's members apart) and the members per fit."""
    from scalpbot.ml.ensemble import EnsembleKind

    if isinstance(kind, EnsembleKind):
        name = _registered(kind.member)
        if name is None:
            return None
        units = [_Unit(name, source, kind.seeded(hp, i)) for source in rows for i in range(kind.size)]
        return kind.member, units, kind.size
    name = _registered(kind)
    return None if name is None else (kind, [_Unit(name, source, hp) for source in rows], 1)


def fit_each(
    kind: ModelKind,
    rows: Sequence[RowsSource],
    hp: Any,
    *,
    workers: int = 1,
    show_progress: bool = False,
    log: Callable[[str], None] = _log.warning,
) -> list[TrainedModel]:
    """Return ``kind.fit(train, validation, hp)`` for the ``(train, validation)`` of each of ``rows``, in order.

    ``workers``: processes fitting at once (0: :func:`available_cores`; 1: every fit in this process, the last
    one with a progress bar of its epochs when ``show_progress``; more: a bar of the fits). The models equal
    the in-process fits'. ``log`` gets one line when workers fitted, and why any fit was made here instead.
    A fit that fails raises its own error (with the worker's traceback as a note); of several, the first in
    the order of ``rows``, as in-process fits would (the fits after it are not waited for).
    """
    workers = available_cores() if workers == 0 else workers
    plan = _units(kind, rows, hp) if workers > 1 else None
    if plan is None or len(plan[1]) < 2:
        return _in_process(kind, rows, hp, show_progress)
    member, units, size = plan
    workers = min(workers, len(units))
    started = time.perf_counter()
    with _fits_progress(len(units), show_progress) as advance:
        done, lost, failed = _in_workers(member, units, workers, advance)
        first_failed = min(failed, default=len(units))
        here = [j for j, fitted in enumerate(done[:first_failed]) if fitted is None]
        if lost:
            log(
                f"model fits in {workers} worker processes: {'; '.join(lost)}; "
                f"fitting the {len(here)} remaining of {len(units)} in this process"
            )
        for j in here:  # a fit that fails here is earlier in order than any that failed in a worker
            done[j] = member.fit(*units[j].rows(), units[j].hp)
            advance()
    if failed:
        raise failed[first_failed]
    fits = [cast(TrainedModel, fitted) for fitted in done]
    log(
        f"{len(units)} model fits in {workers} worker processes ({len(here)} in this one): "
        f"{time.perf_counter() - started:.1f} s"
    )
    if size == 1:
        return fits
    from scalpbot.ml.ensemble import EnsembleKind

    return [EnsembleKind.combine(fits[k * size : (k + 1) * size]) for k in range(len(rows))]


def _in_process(
    kind: ModelKind, rows: Sequence[RowsSource], hp: Any, show_progress: bool
) -> list[TrainedModel]:
    last = len(rows) - 1
    return [
        kind.fit(*source(), hp, show_progress=show_progress and k == last) for k, source in enumerate(rows)
    ]


@contextlib.contextmanager
def _fits_progress(total: int, show: bool) -> Iterator[Callable[[], None]]:
    """Yield ``advance()`` of a progress bar over ``total`` fits (a no-op when not shown)."""
    if not show:
        yield lambda: None
        return
    from scalpbot.adapters.progress import progress_bar

    with progress_bar(total, "model fits") as advance:
        yield lambda: advance(1)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the job that started it dies (``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))


def _serve(connection: Connection, parent: int) -> None:
    """Worker loop: fit each unit received and send back its artifact (or why not); stop on None."""
    die_with_parent()
    if os.getppid() != parent:  # the job died before the request above took effect
        return
    while True:
        message = connection.recv()
        if message is None:
            return
        name, hp, train, validation = message
        try:
            kind = model_kind(name)
        except Exception as e:  # a kind registered in the job at run time: the job fits it itself
            connection.send(("unavailable", f"{type(e).__name__}: {e}", ""))
            continue
        kind.threads(1)
        try:  # the model travels as its kind's artifact bytes
            fitted = kind.fit(train, validation, hp)
            reply: tuple[str, Any, str] = ("fitted", replace(fitted, model=kind.save(fitted.model)), "")
        except Exception as e:  # the job raises it, as the fit in-process would
            reply = ("failed", e, traceback.format_exc())
        connection.send(reply)


def _in_workers(
    member: ModelKind, units: list[_Unit], workers: int, advance: Callable[[], None]
) -> tuple[list[TrainedModel | None], list[str], dict[int, BaseException]]:
    """Fit ``units`` in ``workers`` spawned processes; return the fits (None: not done, fit it here), why any
    were not, and the errors of the fits that failed by unit.

    Once a fit has failed, only the units before it are still sent and waited for (one of them may fail
    first in order); the busy workers fitting later ones are stopped.
    """
    done: list[TrainedModel | None] = [None] * len(units)
    lost: list[str] = []
    failed: dict[int, BaseException] = {}
    pool = _Workers(units, lost)
    try:
        pool.start(workers)
        while pool.busy():
            for connection, j, (status, result, remote) in pool.replies():
                if status == "failed":
                    result.add_note(f"raised in fit worker process:\n{remote}")
                    failed[j] = result
                    pool.keep_before(min(failed))
                    pool.send_next(connection)
                    continue
                if status == "unavailable":
                    lost.append(f"a worker cannot load model kind {units[j].kind!r} ({result})")
                    pool.pending.clear()  # no worker can: every remaining fit is made here
                    continue
                done[j] = replace(result, model=member.load(result.model))
                advance()
                pool.send_next(connection)
    finally:
        pool.stop()
    return done, lost, failed


class _Workers:
    """The worker processes, the unit each busy one holds and the units not sent yet."""

    def __init__(self, units: list[_Unit], lost: list[str]) -> None:
        self.units = units
        self.lost = lost
        self.pending = list(range(len(units)))
        self.held: dict[Connection, int] = {}
        self.processes: dict[Connection, BaseProcess] = {}

    def start(self, workers: int) -> None:
        """Start up to ``workers`` processes and send each a unit (a failure to start is noted, not raised)."""
        context = multiprocessing.get_context("spawn")
        try:
            for w in range(workers):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_serve, args=(theirs, os.getpid()), name=f"fit worker {w + 1}", daemon=True
                )
                process.start()
                theirs.close()
                self.processes[ours] = process
        except Exception as e:  # no processes here (a sandbox, a daemon process): fit in this one
            self.lost.append(f"{len(self.processes)} of {workers} started ({type(e).__name__}: {e})")
        for connection in list(self.processes):
            self.send_next(connection)

    def busy(self) -> bool:
        """Return whether any worker holds a unit."""
        return bool(self.held)

    def keep_before(self, unit: int) -> None:
        """Forget the units from ``unit`` on: the pending ones are not sent, the workers holding one stopped."""
        self.pending = [j for j in self.pending if j < unit]
        for connection, j in list(self.held.items()):
            if j >= unit:
                del self.held[connection]
                process = self.processes.pop(connection)
                process.kill()
                process.join()
                connection.close()

    def send_next(self, connection: Connection) -> None:
        """Send the worker on ``connection`` the next pending unit, its rows sliced now (if any is left)."""
        if not self.pending:
            return
        unit = self.units[self.pending[0]]
        try:
            connection.send((unit.kind, unit.hp, *unit.rows()))
        except OSError as e:  # it died while idle: the unit stays pending
            self._gone(connection, f"{type(e).__name__}")
            return
        self.held[connection] = self.pending.pop(0)

    def replies(self) -> list[tuple[Connection, int, tuple[str, Any, str]]]:
        """Wait for replies; return ``(connection, unit, reply)`` of each (a dead worker's unit is dropped)."""
        replies = []
        for ready in wait(list(self.held)):
            connection = cast(Connection, ready)
            j = self.held.pop(connection)
            try:
                replies.append((connection, j, connection.recv()))
            except (EOFError, OSError):
                self._gone(connection, "no reply")
        return replies

    def _gone(self, connection: Connection, why: str) -> None:
        process = self.processes.pop(connection)
        process.join(_STOP_WAIT_S)
        self.lost.append(f"{process.name} died ({why}, exit code {process.exitcode})")
        connection.close()

    def stop(self) -> None:
        """Stop every worker: the idle ones when told, the busy ones (a fit no one waits for) at once."""
        for connection, process in self.processes.items():
            if connection in self.held:
                process.kill()
            else:
                with contextlib.suppress(OSError):
                    connection.send(None)
        deadline = time.monotonic() + _STOP_WAIT_S
        for connection, process in self.processes.items():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
            connection.close()
        self.processes.clear()
        self.held.clear()
