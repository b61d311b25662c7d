"""The local scheduler: the four jobs on their cadences in one process, on the wall clock or a replay clock.

Each tick is a bar close. Jobs run in a fixed order - retrieve, execute, then train and monitor when due - and
one job's failure is notified (job, symbol, short cause) while the others go on. A stop request (SIGINT or
SIGTERM) lets the job in flight finish, then the loop returns: every write a job makes is atomic, so nothing is
left half-written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from scalpbot.ports import Notifier

JobRun = Callable[[pd.Timestamp], object]


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A job and its cadence: it runs on the first tick (or, with ``wait_first``, once ``every`` has passed since
    it) and then once ``every`` has passed since its last run; ``every`` ``None``: on each tick."""

    name: str
    run: JobRun
    every: pd.Timedelta | None = None
    wait_first: bool = False


@dataclass
class SchedulerReport:
    """How many times each job ran and failed, and whether the loop was stopped."""

    ticks: int = 0
    runs: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    stopped: bool = False


class Scheduler:
    """Run jobs on each tick of a clock; see the module docstring."""

    def __init__(
        self, jobs: Iterable[ScheduledJob], *, notifier: Notifier, symbol: str, stop: threading.Event
    ) -> None:
        self._jobs = tuple(jobs)
        self._notifier = notifier
        self._symbol = symbol
        self._stop = stop
        self._last: dict[str, pd.Timestamp] = {}

    def run(self, ticks: Iterable[pd.Timestamp]) -> SchedulerReport:
        """Run every job due at each tick (a bar close time, UTC) until the ticks end or a stop is requested."""
        from scalpbot.adapters.notify.fanout import notify_job_error

        report = SchedulerReport()
        for tick in ticks:
            if self._stop.is_set():
                report.stopped = True
                break
            report.ticks += 1
            for job in self._jobs:
                if self._stop.is_set():
                    report.stopped = True
                    break
                last = self._last.get(job.name)
                if last is None and job.wait_first:
                    self._last[job.name] = tick
                    continue
                if job.every is not None and last is not None and tick - last < job.every:
                    continue
                self._last[job.name] = tick
                report.runs[job.name] = report.runs.get(job.name, 0) + 1
                try:
                    job.run(tick)
                except Exception as e:  # one job's failure must not stop the others
                    report.failures[job.name] = report.failures.get(job.name, 0) + 1
                    notify_job_error(self._notifier, job.name, self._symbol, e)
        return report


def wall_ticks(
    step: pd.Timedelta, now: Callable[[], pd.Timestamp], stop: threading.Event, delay_s: float = 2.0
) -> Iterator[pd.Timestamp]:
    """Yield each bar close on the wall clock (``delay_s`` after it, so the exchange has closed the bar)."""
    while not stop.is_set():
        current = now()
        close = current.floor(step)
        yield close
        wait = (close + step - now()).total_seconds() + delay_s
        if stop.wait(max(wait, 0.5)):
            return


def replay_ticks(start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta) -> list[pd.Timestamp]:
    """Return the bar closes of the replay window ``[start, end)``: the close of each bar opening in it."""
    return list(pd.date_range(start + step, end, freq=step, inclusive="both"))
