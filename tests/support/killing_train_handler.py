"""The train function's handler with a tuning worker that dies mid-trial, for the kill tests of the tune phase.

With ``TUNING_WORKER_KILL_AT=N`` in the function's environment, the process SIGKILLs itself in the middle of the
policy evaluation it makes for the ``N``-th time (a trial evaluates every validation fold, one call each): the
trial is ``RUNNING`` with a heartbeat in the database, and nothing is said goodbye to, as when Lambda stops an
invocation at its timeout or loses its host.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from scalpbot.aws import training_and_deployment_lambda_handler
from scalpbot.core.evaluation import PolicyEvaluator
from scalpbot.ml import tuning

__all__ = ["handler"]


class _KillingEvaluator(PolicyEvaluator):
    calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        type(self).calls += 1
        if type(self).calls == int(os.environ["TUNING_WORKER_KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(*args, **kwargs)


tuning.PolicyEvaluator = _KillingEvaluator  # type: ignore[misc]


def handler(event: Any, context: Any) -> Any:
    """Run the train function's handler (its evaluations counted, the ``N``-th one killing the process)."""
    return training_and_deployment_lambda_handler(event, context)
