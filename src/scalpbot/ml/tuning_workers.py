"""Tune one policy study with several local worker processes on PostgreSQL.

:func:`tune_with_workers` starts ``workers - 1`` extra processes (``spawn``: each imports scalpbot afresh and
gets the windows pickled) that run :func:`scalpbot.ml.tuning.join_policy_study` on the same storage and study,
and tunes in the calling process too. The calling process returns once the study holds its budget of complete
trials, with the result over every worker's trials; the extra processes are then joined. A worker that dies
(killed, out of memory) costs nothing but time: its running trial's heartbeat stops and another worker runs it
again, so the budget completes while any worker lives.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Sequence
from typing import Any

from scalpbot.core.evaluation import PolicyWindow
from scalpbot.core.policy_params import ParamBounds
from scalpbot.errors import ConfigError
from scalpbot.ml.shared_study import is_shared
from scalpbot.ml.tuning import TuningResult, join_policy_study, tune_policy

__all__ = ["tune_with_workers"]

_log = logging.getLogger(__name__)

_JOIN_S = 120.0


def _work(window: Sequence[PolicyWindow], bounds: ParamBounds | None, options: dict[str, Any]) -> None:
    join_policy_study(window, bounds, **options)


def _start(processes: Sequence[multiprocessing.process.BaseProcess]) -> None:
    """Start ``processes`` in turn; on a failure log it and start no more (those running share the budget)."""
    for process in processes:
        try:
            process.start()
        except Exception:
            _log.exception("tuning worker %s could not start; tuning goes on without it", process.name)
            return


def tune_with_workers(
    window: PolicyWindow | Sequence[PolicyWindow],
    bounds: ParamBounds | None = None,
    *,
    workers: int,
    storage: str,
    **options: Any,
) -> tuple[TuningResult, tuple[int | None, ...]]:
    """Tune with ``workers`` processes (this one included); return the result and the extra ones' exit codes.

    ``options`` are :func:`scalpbot.ml.tuning.tune_policy`'s; ``n_trials`` is the study's total budget
    (``top_up`` is implied). One worker on a non-shared ``storage`` is plain :func:`tune_policy`; several need
    a PostgreSQL ``storage``. An exit code other than 0 means that worker died or failed (``None``: it could not
    start): its trials were run by the others (the result holds the whole budget). The extra processes are
    started while this one tunes already.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1 process; got {workers}")
    if workers > 1 and not is_shared(storage):
        raise ConfigError(
            "several tuning workers share one study through PostgreSQL: set train.study_storage to "
            "postgresql://user@host/database (a sqlite or in-store study has one worker)"
        )
    windows = [window] if isinstance(window, PolicyWindow) else list(window)
    options = {**options, "top_up": True}
    worker_options = {**options, "storage": storage, "show_progress": False}
    context = multiprocessing.get_context("spawn")
    extra = [
        context.Process(target=_work, args=(windows, bounds, worker_options), name=f"tuning-worker-{i + 1}")
        for i in range(workers - 1)
    ]
    # Starting a spawned process blocks until it has re-imported the main module and read its pickled
    # windows (about a second each): this process tunes meanwhile, and the workers join the study when ready.
    starter = threading.Thread(target=_start, args=(extra,), name="tuning-workers-start", daemon=True)
    starter.start()
    finished = False
    try:
        result = tune_policy(windows, bounds, storage=storage, **options)
        finished = True
    finally:
        starter.join()
        for process in extra:
            if process.pid is None:  # its start failed (logged by the starter)
                continue
            if not finished:
                process.terminate()
            process.join(_JOIN_S)
            if process.is_alive():  # the budget is complete: a worker still running is stuck
                process.kill()
                process.join()
    return result, tuple(process.exitcode for process in extra)
