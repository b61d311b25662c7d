"""Fit several models at once, one worker process per core: the walk-forward folds' fits of a train run.

A train run fits one model per validation fold (per member, for an ensemble) on one compute thread each, so on
a machine with several cores all but one would idle. :func:`fit_each` fits the folds' models in up to
``workers`` spawned processes at once; every member of an ensemble is its own unit of work, so 3 folds of a
3-member ensemble keep 2 cores busy to the end. Each worker fits with one thread, as the train job does
in-process, and hands the model back as the kind's own artifact bytes (the float32 weights, exactly), so the
models, their predictions and their ONNX export are the ones an in-process fit makes for the same seed.

Where worker processes cannot start (AWS Lambda has no ``/dev/shm`` for the pool's semaphores) or a worker
dies, the fits that did not come back run in this process, one after another, and the log says why: a run is
never lost to the pool, only slower.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, cast

from scalpbot.ml.registry import LabelledRows, ModelKind, TrainedModel, model_kind

__all__ = ["available_cores", "fit_each"]

_log = logging.getLogger(__name__)


def available_cores() -> int:
    """Return the CPU cores this process may run on (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class _Unit:
    """One model to fit in a worker: the registered kind's name, its rows and hyper-parameters."""

    kind: str
    train: LabelledRows
    validation: LabelledRows
    hp: Any


@dataclass(frozen=True)
class _Fitted:
    """What a worker returns: the model as its kind's artifact bytes and the fit's summary."""

    artifact: bytes
    epochs_run: int
    best_epoch: int
    best_val_loss: float | None
    final_train_loss: float
    train_seconds: float


def _fit_unit(unit: _Unit) -> _Fitted:
    """Fit ``unit`` in a worker process with one compute thread."""
    kind = model_kind(unit.kind)
    kind.threads(1)
    fitted = kind.fit(unit.train, unit.validation, unit.hp)
    return _Fitted(
        kind.save(fitted.model),
        fitted.epochs_run,
        fitted.best_epoch,
        fitted.best_val_loss,
        fitted.final_train_loss,
        fitted.train_seconds,
    )


def _registered(kind: ModelKind) -> str | None:
    """Return the registry name a worker can load ``kind`` by, or None when the kind is not registered."""
    try:
        return kind.name if model_kind(kind.name) is kind else None
    except Exception:
        return None


def _units(
    kind: ModelKind, rows: Sequence[tuple[LabelledRows, LabelledRows]], hp: Any
) -> tuple[ModelKind, list[_Unit], int] | None:
    """Return the kind the workers fit, its units (an ensemble's members apart) and the members per fit."""
    from scalpbot.ml.ensemble import EnsembleKind

    if isinstance(kind, EnsembleKind):
        name = _registered(kind.member)
        if name is None:
            return None
        units = [
            _Unit(name, train, validation, kind.seeded(hp, i))
            for train, validation in rows
            for i in range(kind.size)
        ]
        return kind.member, units, kind.size
    name = _registered(kind)
    if name is None:
        return None
    return kind, [_Unit(name, train, validation, hp) for train, validation in rows], 1


def fit_each(
    kind: ModelKind,
    rows: Sequence[tuple[LabelledRows, LabelledRows]],
    hp: Any,
    *,
    workers: int = 1,
    show_progress: bool = False,
    log: Callable[[str], None] = _log.info,
) -> list[TrainedModel]:
    """Return ``kind.fit(train, validation, hp)`` for each ``(train, validation)`` pair of ``rows``, in order.

    ``workers``: processes fitting at once (0: one per available core; 1: every fit in this process, the last
    one with a progress bar when ``show_progress``). The models equal the in-process fits'; a kind that is not
    in the registry (a worker could not load it) is fitted in this process.
    """
    workers = available_cores() if workers == 0 else workers
    plan = _units(kind, rows, hp) if workers > 1 and len(rows) > 0 else None
    if plan is None or len(plan[1]) < 2:
        return _in_process(kind, rows, hp, show_progress)
    member, units, size = plan
    done = _in_workers(member, units, min(workers, len(units)), log)
    fits = [
        fitted if fitted is not None else member.fit(unit.train, unit.validation, unit.hp)
        for unit, fitted in zip(units, done, strict=True)
    ]
    if size == 1:
        return fits
    from scalpbot.ml.ensemble import EnsembleKind

    return [EnsembleKind.combine(fits[k * size : (k + 1) * size]) for k in range(len(rows))]


def _in_process(
    kind: ModelKind, rows: Sequence[tuple[LabelledRows, LabelledRows]], hp: Any, show_progress: bool
) -> list[TrainedModel]:
    last = len(rows) - 1
    return [
        kind.fit(train, validation, hp, show_progress=show_progress and k == last)
        for k, (train, validation) in enumerate(rows)
    ]


def _serve(connection: Connection) -> None:
    """Worker loop: fit each unit received and send back its artifact (or the error); stop on None."""
    while True:
        unit = connection.recv()
        if unit is None:
            return
        try:
            connection.send(("fitted", _fit_unit(unit)))
        except Exception as e:  # the caller raises it, as the fit in-process would
            connection.send(("failed", e))


def _in_workers(
    member: ModelKind, units: list[_Unit], workers: int, log: Callable[[str], None]
) -> list[TrainedModel | None]:
    """Fit ``units`` in ``workers`` spawned processes; None where a unit did not come back (fit it here).

    Plain processes and pipes, no pool: a pool's queues need POSIX semaphores, which AWS Lambda lacks. Each
    idle worker gets the next unit; a worker that dies loses only the unit it held (None, fitted here).
    """
    done: list[TrainedModel | None] = [None] * len(units)
    pending = list(range(len(units)))
    held: dict[Connection, int] = {}  # the unit each busy worker fits
    processes: dict[Connection, BaseProcess] = {}
    lost: list[str] = []
    context = multiprocessing.get_context("spawn")
    try:
        try:
            for w in range(workers):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_serve, args=(theirs,), name=f"fit worker {w + 1}", daemon=True
                )
                process.start()
                theirs.close()
                processes[ours] = process
        except (OSError, NotImplementedError) as e:
            lost.append(f"{len(processes)} of {workers} started ({type(e).__name__}: {e})")
        for connection in processes:
            _send_next(connection, pending, units, held)
        while held:
            for ready in wait(list(held)):
                connection = cast(Connection, ready)
                j = held.pop(connection)
                try:
                    status, result = connection.recv()
                except (EOFError, OSError):
                    gone = processes.pop(connection)
                    gone.join(5)
                    lost.append(f"{gone.name} died (exit code {gone.exitcode})")
                    continue
                if status == "failed":
                    raise result
                done[j] = TrainedModel(
                    model=member.load(result.artifact),
                    epochs_run=result.epochs_run,
                    best_epoch=result.best_epoch,
                    best_val_loss=result.best_val_loss,
                    final_train_loss=result.final_train_loss,
                    train_seconds=result.train_seconds,
                )
                _send_next(connection, pending, units, held)
    finally:
        _stop(processes)
    if lost:
        log(
            f"model fits in {workers} worker processes: {'; '.join(lost)}; "
            f"fitting the {sum(d is None for d in done)} remaining of {len(units)} in this process"
        )
    return done


def _send_next(
    connection: Connection, pending: list[int], units: list[_Unit], held: dict[Connection, int]
) -> None:
    """Send the worker on ``connection`` the next pending unit, if any (a worker gone leaves it pending)."""
    if not pending:
        return
    try:
        connection.send(units[pending[0]])
    except OSError:
        return
    held[connection] = pending.pop(0)


def _stop(processes: dict[Connection, BaseProcess]) -> None:
    """Tell each worker to stop, then make sure it has (a worker still fitting is killed)."""
    for connection in processes:
        with contextlib.suppress(OSError):
            connection.send(None)
    for connection, process in processes.items():
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
        connection.close()
