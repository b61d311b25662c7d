"""One tuning worker in its own process, for the tests of several workers on one PostgreSQL study.

``python -m support.tuning_worker URL STUDY BUDGET FOLDER [--kill-at N] [--heartbeat S]`` (``src`` and ``tests``
on ``PYTHONPATH``; :func:`worker_env` builds that environment): build the planted window, warm the kernels,
write ``FOLDER/ready-<pid>``, wait for ``FOLDER/go``, then run
:func:`scalpbot.ml.tuning.join_policy_study` with a total budget of ``BUDGET`` complete trials and print how
many it completed. The start line lets several workers begin at the same moment, racing to create the tables
and the study.

``--kill-at N``: SIGKILL this process in the middle of its N-th trial (its parameters drawn, the trial
``RUNNING`` with a heartbeat in the database): no ``finally``, no goodbye to the server, as a machine losing
power or a Lambda invocation timing out.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from scalpbot.core.evaluation import PolicyEvaluator
from scalpbot.core.policy_params import ParamBounds
from scalpbot.ml import tuning

from support.planted_window import planted_window

ROOT = Path(__file__).resolve().parents[2]


def worker_env() -> dict[str, str]:
    """Return this environment with the checkout's ``src`` and ``tests`` first on ``PYTHONPATH``.

    ``src`` explicitly: an editable install may point at another checkout (a git worktree's main one).
    """
    paths = [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def worker_command(url: str, study: str, budget: int, folder: Path, *extra: str) -> list[str]:
    """Return the command line of one worker."""
    return [sys.executable, "-m", "support.tuning_worker", url, study, str(budget), str(folder), *extra]


class _KillingEvaluator(PolicyEvaluator):
    """A ``PolicyEvaluator`` that SIGKILLs the process on its ``kill_at``-th call."""

    calls = 0
    kill_at = 0

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        type(self).calls += 1
        if type(self).calls == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("study")
    parser.add_argument("budget", type=int)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument("--heartbeat", type=int, default=1)
    args = parser.parse_args()
    window = planted_window()
    PolicyEvaluator(window)(ParamBounds.default().base)  # compile or load the kernels before the start line
    if args.kill_at:
        _KillingEvaluator.kill_at = args.kill_at
        tuning.PolicyEvaluator = _KillingEvaluator  # type: ignore[misc]
    (args.folder / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while not (args.folder / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("no start signal within 120 s")
        time.sleep(0.01)
    ran = tuning.join_policy_study(
        window,
        ParamBounds.default(),
        storage=args.url,
        study_name=args.study,
        n_trials=args.budget,
        heartbeat_s=args.heartbeat,
        min_trades=5,
    )
    print(ran)


if __name__ == "__main__":
    main()
