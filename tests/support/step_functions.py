"""Run the template's state machines on moto's Step Functions interpreter, their Lambda tasks on the real handlers.

moto (5.2) interprets Amazon States Language when ``execute_state_machine`` is configured (its port of the
LocalStack interpreter: Map, Parallel, Retry, Catch, intrinsic functions, the ``lambda:invoke`` and
``sns:publish`` integrations). A task calls Lambda and SNS through boto3 at ``localhost:$MOTO_PORT``; moto runs
a Lambda function only in Docker, so :func:`executing_state_machines` hands each invocation to a pool of
:class:`~support.lambda_runtime.LocalLambda` environments of that function instead: the real handler under the
real runtime client, one free environment per concurrent invocation, as Lambda scales out.

The interpreter's calls go to a second moto server without the one-request-at-a-time lock of
``support.moto_server`` (a Lambda invocation there would hold the lock while its handler calls S3 on it); both
servers share moto's in-process backends, so buckets and topics are the same on either.
"""

from __future__ import annotations

import json
import queue
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from moto.awslambda.models import LambdaFunction
from moto.server import ThreadedMotoServer

from support.lambda_runtime import Invocation, LocalLambda

__all__ = ["LambdaPool", "executing_state_machines"]


class LambdaPool:
    """``size`` warm environments of one handler; each invocation takes a free one (waiting for one if none is)."""

    def __init__(self, stack: ExitStack, handler: str, size: int, **options: Any) -> None:
        self._free: queue.Queue[LocalLambda] = queue.Queue()
        for _ in range(size):
            self._free.put(stack.enter_context(LocalLambda(handler, **options)))
        self.invocations: list[tuple[Any, Invocation]] = []

    def invoke(self, event: Any) -> Invocation:
        """Invoke one free environment with ``event`` and record it."""
        environment = self._free.get()
        try:
            result = environment.invoke(event)
        finally:
            self._free.put(environment)
        self.invocations.append((event, result))
        return result


def _configure(endpoint: str, execute: bool) -> None:
    body = json.dumps({"stepfunctions": {"execute_state_machine": execute}}).encode()
    request = urllib.request.Request(f"{endpoint}/moto-api/config", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


@contextmanager
def executing_state_machines(
    monkeypatch: pytest.MonkeyPatch, functions: Mapping[str, LambdaPool]
) -> Iterator[str]:
    """Yield the endpoint of a moto server whose state machines run, ``functions`` (by name) serving Lambda."""

    def invoke(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        pool = functions.get(self.function_name)
        if pool is None:
            raise AssertionError(f"no handler serves the Lambda function {self.function_name}")
        result = pool.invoke(event if event is not None else {})
        return json.dumps(result.payload), not result.ok, ""

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("MOTO_PORT", str(port))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", invoke)
    _configure(endpoint, True)
    try:
        yield endpoint
    finally:
        _configure(endpoint, False)
        server.stop()
