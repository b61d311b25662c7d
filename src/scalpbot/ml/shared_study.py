"""Studies that several workers tune at once on PostgreSQL: race-free creation, an exact trial budget, retries.

**Storage.** A ``postgresql://`` or ``postgresql+psycopg://`` URL (``train.study_storage``) opens Optuna's
``RDBStorage`` with the psycopg 3 driver, its sessions with ``synchronous_commit=off`` (a trial is many small
commits; waiting for the disk on each serialized the workers). Every trial records a heartbeat every ``heartbeat_s`` seconds; a
running trial whose heartbeat is older than three intervals (its worker was killed, or its machine lost) is
marked ``FAIL`` by the next worker that looks, and retried once with the same parameters
(``RetryHeartbeatStaleTrialCallback``).

**Creation.** Workers that start together take a PostgreSQL advisory lock while they create Optuna's tables,
the study and its attributes, so none of them sees a half-made schema or loses a ``DuplicatedStudyError`` race;
each worker draws its join number there (its sampler's seed offset: two workers never replay each other's
proposals).

**Budget.** ``budget`` is the number of ``COMPLETE`` trials the study should hold, across all workers. A worker
takes a second advisory lock (one per study name), counts the complete, running and waiting trials, and starts
a trial only while that count is below the budget or a waiting retry is there to take; the lock is released as
the trial's objective starts. Since trials are created and popped only under that lock, complete + running +
waiting never exceeds the budget, so a study never holds more complete trials than its budget. When the
remaining slots are all held by running trials, a worker waits for them: they complete, or their heartbeat goes
stale and they come back as a waiting retry. Every worker returns once the study holds exactly its budget.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from scalpbot.errors import ConfigError

__all__ = ["SharedStudy", "is_shared", "join_study", "shared_url"]

_SCHEMA_LOCK = "scalpbot optuna schema"
_SESSION_OPTIONS = "-c synchronous_commit=off"
"""The study connections' PostgreSQL settings: commits do not wait for the disk (see :func:`join_study`)."""
_WORKERS_ATTR = "scalpbot_workers_joined"
WORKER_ATTR = "scalpbot_worker"
_POLL_S = 0.2


def shared_url(storage: object) -> str | None:
    """Return the SQLAlchemy URL (psycopg 3 driver) when ``storage`` is a PostgreSQL URL, else ``None``."""
    if not isinstance(storage, str):
        return None
    scheme, sep, rest = storage.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        return None
    return f"postgresql+psycopg://{rest}"


def is_shared(storage: object) -> bool:
    """Return whether ``storage`` is a URL of a database several workers can tune one study in."""
    return shared_url(storage) is not None


def _lock_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


class _AdvisoryLock:
    """A PostgreSQL session advisory lock on its own connection (freed by the server if the process dies)."""

    def __init__(self, engine: sqlalchemy.Engine, name: str) -> None:
        self._engine = engine
        self._key = _lock_key(name)
        self._connection: sqlalchemy.Connection | None = None
        self._held = False

    def acquire(self) -> None:
        """Block until the lock is ours."""
        if self._connection is None:
            self._connection = self._engine.connect()
        self._connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        self._connection.commit()
        self._held = True

    def release(self) -> None:
        """Release the lock if held (idempotent: the trial releases it, and so does the worker's finally)."""
        if self._held and self._connection is not None:
            self._held = False
            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._connection.commit()

    def query(self, sql: str, **params: object) -> list[tuple[Any, ...]]:
        """Run a read query on the lock's connection (opened if need be); return its rows."""
        if self._connection is None:
            self._connection = self._engine.connect()
        rows = [tuple(row) for row in self._connection.execute(sqlalchemy.text(sql), params)]
        self._connection.commit()  # end the read; the advisory lock belongs to the session, not the transaction
        return rows

    def close(self) -> None:
        """Release the lock and close its connection."""
        try:
            self.release()
        finally:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


@dataclass
class SharedStudy:
    """One worker's handle on a shared study: the study, its join number and the budget lock."""

    study: optuna.Study
    study_id: int
    worker_index: int
    worker: str
    _lock: _AdvisoryLock

    def counts(self) -> dict[TrialState, int]:
        """Return the number of trials per state: one query on the lock's connection (Optuna's ``trials``)."""
        rows = self._lock.query(
            "SELECT state, count(*) FROM trials WHERE study_id = :study GROUP BY state", study=self.study_id
        )
        found: dict[TrialState, int] = dict.fromkeys(TrialState, 0)
        for state, count in rows:
            found[TrialState[str(state)]] = int(count)
        return found

    def run_to_budget(
        self,
        objective: Callable[[optuna.Trial], float],
        budget: int,
        deadline: float | None,
    ) -> None:
        """Run trials of ``objective`` until the study holds ``budget`` complete trials or ``deadline`` passes.

        ``deadline`` is a ``time.monotonic()`` instant (``None``: no limit).
        """

        def one_trial(trial: optuna.Trial) -> float:
            self._lock.release()
            trial.set_user_attr(WORKER_ATTR, self.worker)
            return objective(trial)

        try:
            while deadline is None or time.monotonic() < deadline:
                self._lock.acquire()
                counts = self.counts()
                if counts[TrialState.COMPLETE] >= budget:
                    break
                live = counts[TrialState.COMPLETE] + counts[TrialState.RUNNING] + counts[TrialState.WAITING]
                if live >= budget and not counts[TrialState.WAITING]:
                    self._lock.release()  # every slot is held by a running trial: wait for it, or its heartbeat
                    optuna.storages.fail_stale_trials(self.study)
                    time.sleep(_POLL_S)
                    continue
                left = None if deadline is None else max(deadline - time.monotonic(), 1e-3)
                self.study.optimize(one_trial, n_trials=1, timeout=left)
        finally:
            self._lock.close()


def join_study(
    url: str,
    name: str,
    *,
    heartbeat_s: int,
    check: Callable[[optuna.Study], None],
) -> SharedStudy:
    """Create the study ``name`` in the PostgreSQL database at ``url``, or load it, and join it as a worker.

    ``check(study)`` runs under the creation lock before the worker counts itself in (the fingerprint check: it
    raises ``ConfigError`` when the study was tuned on something else).
    """
    if heartbeat_s < 1:
        raise ConfigError(f"heartbeat_s must be a whole number of seconds >= 1; got {heartbeat_s}")
    try:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    except ImportError as e:
        raise ConfigError(
            f"a PostgreSQL study storage needs the psycopg driver: pip install 'scalpbot[postgres]' ({e})"
        ) from e
    schema_lock = _AdvisoryLock(engine, _SCHEMA_LOCK)
    try:
        schema_lock.acquire()
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise ConfigError(
            f"cannot reach the study storage {_redacted(url)}: {e.__class__.__name__}: {e}"
        ) from e
    try:
        storage = RDBStorage(
            url,
            # A trial's record is many small commits (each parameter, the heartbeats, the value); waiting for
            # each to reach the disk serialized the workers on PostgreSQL's WAL flush. A server crash may lose
            # the last fraction of a second of them (never corrupt them): such a trial goes stale and is
            # retried, and the budget stays exact. Bars, releases and orders are not in this database.
            engine_kwargs={
                "pool_pre_ping": True,
                "connect_args": {"options": _SESSION_OPTIONS},
            },
            heartbeat_interval=heartbeat_s,
            grace_period=3 * heartbeat_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        )
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", load_if_exists=True
        )
        check(study)
        joined = int(study.user_attrs.get(_WORKERS_ATTR, 0))
        study.set_user_attr(_WORKERS_ATTR, joined + 1)
    finally:
        schema_lock.close()
    worker = f"{socket.gethostname()}:{os.getpid()}:{joined}"
    study_id = storage.get_study_id_from_name(name)
    return SharedStudy(study, study_id, joined, worker, _AdvisoryLock(engine, f"scalpbot study {name}"))


def _redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"
