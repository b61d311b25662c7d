"""Tiny Lambda handlers for the tests of ``support.lambda_runtime`` (run in the awslambdaric subprocess).

``LAMBDA_TEST_FAIL_AT_IMPORT=1`` in the function's environment makes this module raise while being imported, to
exercise the runtime's init-error path.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

if os.environ.get("LAMBDA_TEST_FAIL_AT_IMPORT") == "1":
    raise RuntimeError("boom at import")

_calls = 0
_log = logging.getLogger("support.lambda_handlers_for_tests")


def echo(event: Any, context: Any) -> dict[str, Any]:
    """Return the event, a module-level call counter (warm reuse shows) and what the context says."""
    global _calls
    _calls += 1
    return {
        "event": event,
        "calls": _calls,
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "region": os.environ.get("AWS_REGION"),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "cwd": os.getcwd(),
    }


def fail(event: Any, context: Any) -> None:
    """Raise ``ValueError`` with the event's ``message``."""
    raise ValueError(event["message"])


def log(event: Any, context: Any) -> str:
    """Log at INFO with ``extra=`` fields, print a plain line, and return "logged"."""
    _log.info("hello %s", event["name"], extra={"bot": "demo", "n": 3, "obj": {1, 2} - {2}})
    _log.debug("not shown at the default INFO level")
    print("a plain line, not JSON")
    return "logged"


def exit_now(event: Any, context: Any) -> None:
    """End the runtime process mid-invocation, as a crash would."""
    os._exit(3)


def sleep(event: Any, context: Any) -> None:
    """Sleep ``event["seconds"]``: a handler that outlives the caller's patience."""
    time.sleep(event["seconds"])
