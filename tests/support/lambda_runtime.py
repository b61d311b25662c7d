"""Run a Lambda handler through the real AWS Lambda runtime client against a local Runtime API, for tests.

``LocalLambda`` starts ``python -m awslambdaric <module.function>`` (the same client AWS ships in its Python base
images) in a subprocess, with the environment Lambda sets, and serves it the Runtime API (version 2018-06-01) from
an ``http.server`` on 127.0.0.1 in a thread:

- ``GET  /2018-06-01/runtime/invocation/next`` blocks until ``invoke`` queues an event, then answers it with the
  ``Lambda-Runtime-*`` headers and ``Content-Type: application/json`` (awslambdaric 4.x segfaults without it);
- ``POST /2018-06-01/runtime/invocation/{id}/response`` and ``.../{id}/error`` complete that invocation;
- ``POST /2018-06-01/runtime/init/error`` records the init failure (the client then exits with status 1).

One process serves every ``invoke`` of one ``LocalLambda``, one at a time, as a warm Lambda environment does:
module-level state persists between invocations. The process's stdout and stderr go to one file, so everything
the handler wrote before it posted its answer is in ``logs()`` by the time ``invoke`` returns.

What awslambdaric does with logging (4.2.2, ``bootstrap._setup_logging`` and ``lambda_runtime_log_utils``): it
adds one handler to the root logger. With ``AWS_LAMBDA_LOG_FORMAT=JSON`` each record is one JSON line with
``timestamp`` (``%Y-%m-%dT%H:%M:%SZ``, UTC, whole seconds), ``level``, ``message`` (a dict message stays a
dict), ``logger``, ``requestId`` (``""`` outside an invocation), and with ``exc_info`` also ``errorType``,
``errorMessage``, ``stackTrace`` and ``location``; every ``extra=`` attribute is added as a top-level key
(values that are not JSON become ``str``; an extra named like one of those keys is dropped; ``None`` values are
dropped). ``AWS_LAMBDA_LOG_LEVEL`` sets the root logger's level; without it the root stays at ``WARNING``.
An unhandled handler exception is logged as one JSON line with ``timestamp``, ``level`` ``ERROR``,
``errorMessage``, ``errorType``, ``requestId`` and ``stackTrace``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

_API = "/2018-06-01/runtime"
_TESTS_DIR = Path(__file__).resolve().parent.parent
_ACCOUNT_ID = "123456789012"
# Lambda's limit on the init phase; added to the function timeout as invoke's default wait.
_INIT_LIMIT_S = 10.0
_LOG_TAIL_CHARS = 6000


class LocalLambdaError(RuntimeError):
    """The runtime process died, failed to initialise, or did not answer in time; the message carries its logs."""


@dataclass(frozen=True)
class Invocation:
    """One completed invocation.

    ``ok`` is True when the runtime posted a response, False when it posted an error. ``payload`` is the response
    decoded from JSON (raw ``bytes`` when the handler returned bytes), or the error document (``errorMessage``,
    ``errorType``, ``requestId``, ``stackTrace``). ``duration_s`` runs from the runtime receiving the event to its
    answer, as Lambda's billed Duration does. ``error_type`` is the ``Lambda-Runtime-Function-Error-Type`` header
    of an error post; awslambdaric 4.2.2 does not send it there (only on ``/init/error``), so it is None unless a
    future client does: read ``payload["errorType"]``.
    """

    request_id: str
    ok: bool
    payload: Any
    duration_s: float
    error_type: str | None = None


@dataclass
class _Pending:
    request_id: str
    body: bytes
    delivered_at: float | None = None
    result: Invocation | None = None


class _State:
    """What the Runtime API server and ``LocalLambda`` share, guarded by one condition."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queue: deque[_Pending] = deque()
        self.in_flight: dict[str, _Pending] = {}
        self.init_error: dict[str, Any] | None = None
        self.first_next_at: float | None = None
        self.exited = False
        self.closing = False


def _make_handler(state: _State, function_arn: str, timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class _RuntimeApiHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # the runtime polls; keep test output quiet
            return

        def _reply(self, status: int, body: bytes = b"{}", headers: Mapping[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the runtime process was stopped mid-request
                return

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            if self.path != f"{_API}/invocation/next":
                self._reply(404, b'{"errorMessage": "not found"}')
                return
            with state.cond:
                if state.first_next_at is None:
                    state.first_next_at = time.monotonic()
                    state.cond.notify_all()
                state.cond.wait_for(lambda: bool(state.queue) or state.closing)
                if state.closing:
                    self.close_connection = True
                    return
                pending = state.queue.popleft()
                pending.delivered_at = time.monotonic()
                state.in_flight[pending.request_id] = pending
            deadline_ms = int(time.time() * 1000 + timeout_s * 1000)
            self._reply(
                200,
                pending.body,
                {
                    "Lambda-Runtime-Aws-Request-Id": pending.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": function_arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0",
                },
            )

        def do_POST(self) -> None:
            body = self._body()
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            if self.path == f"{_API}/init/error":
                with state.cond:
                    state.init_error = _decode(body, "application/json")
                    state.cond.notify_all()
                self._reply(202, b'{"status": "OK"}')
                return
            prefix = f"{_API}/invocation/"
            request_id, _, kind = self.path.removeprefix(prefix).partition("/")
            if not self.path.startswith(prefix) or kind not in ("response", "error"):
                self._reply(404, b'{"errorMessage": "not found"}')
                return
            with state.cond:
                pending = state.in_flight.pop(request_id, None)
                if pending is None or pending.delivered_at is None:
                    self._reply(
                        400,
                        b'{"errorMessage": "no such invocation in flight", "errorType": "InvalidRequestID"}',
                    )
                    return
                ok = kind == "response"
                pending.result = Invocation(
                    request_id=request_id,
                    ok=ok,
                    payload=_decode(body, self.headers.get("Content-Type") if ok else "application/json"),
                    duration_s=time.monotonic() - pending.delivered_at,
                    error_type=None if ok else error_type,
                )
                state.cond.notify_all()
            self._reply(202, b'{"status": "OK"}')

    return _RuntimeApiHandler


def _decode(body: bytes, content_type: str | None) -> Any:
    """Decode a JSON body; keep bytes when the content type is not JSON or the body does not parse."""
    if content_type is not None and "json" not in content_type:
        return body
    try:
        return json.loads(body)
    except ValueError:
        return body


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every request thread; close() releases the long polls first
    block_on_close = True


class LocalLambda:
    """One Lambda execution environment running ``handler`` ("module.function") under awslambdaric.

    Use as a context manager; ``invoke`` sends events one at a time to the same warm process. The child inherits
    this process's environment (so ``monkeypatch.setenv`` reaches it), then gets what Lambda sets
    (``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, ``AWS_LAMBDA_LOG_GROUP_NAME``,
    ``AWS_REGION``, ``LAMBDA_TASK_ROOT``, ``_HANDLER``, ...), then ``env``. ``PYTHONPATH`` starts with ``tests/``
    (so ``support.*`` handler modules import) and the task root. ``cwd`` is the task root; by default a fresh
    temporary folder. ``log_level`` defaults to ``INFO`` for the JSON format (Lambda's default application log
    level) and to unset for ``TEXT`` (root logger at ``WARNING``, as on Lambda). ``timeout_s`` is the function
    timeout: it sets each invocation's deadline (``context.get_remaining_time_in_millis()``) and, plus Lambda's
    10 s init limit, how long ``invoke`` waits by default. Memory is not enforced.
    """

    def __init__(
        self,
        handler: str,
        *,
        env: Mapping[str, str] | None = None,
        function_name: str = "scalpbot-test",
        memory_mb: int = 1024,
        timeout_s: float = 60.0,
        cwd: Path | None = None,
        log_format: str = "JSON",
        log_level: str | None = None,
        region: str = "us-east-1",
    ) -> None:
        if log_format not in ("JSON", "TEXT"):
            raise ValueError(f"log_format must be JSON or TEXT, not {log_format!r}")
        self.handler = handler
        self.function_name = function_name
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.log_format = log_format
        self.log_level = log_level if log_level is not None or log_format == "TEXT" else "INFO"
        self.region = region
        self.function_arn = f"arn:aws:lambda:{region}:{_ACCOUNT_ID}:function:{function_name}"
        self._env = dict(env or {})
        self._cwd = cwd
        self._state = _State()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reaper: threading.Thread | None = None
        self._spawned_at = 0.0
        self._first_result_at: float | None = None
        self._logs_at_close = ""

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalLambda:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the Runtime API server and the runtime process; returns without waiting for init."""
        if self._process is not None:
            raise RuntimeError("LocalLambda already started")
        self._tmp = tempfile.TemporaryDirectory(prefix="local-lambda-")
        task_root = self._cwd if self._cwd is not None else Path(self._tmp.name) / "task"
        task_root.mkdir(parents=True, exist_ok=True)
        self._log_path = Path(self._tmp.name) / "runtime.log"
        self._server = _Server(
            ("127.0.0.1", 0), _make_handler(self._state, self.function_arn, self.timeout_s)
        )
        server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="lambda-runtime-api"
        )
        server_thread.start()
        self._server_thread = server_thread
        env = self._child_env(f"127.0.0.1:{self._server.server_port}", task_root)
        with open(self._log_path, "ab") as log:
            self._spawned_at = time.monotonic()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", self.handler],
                cwd=task_root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._reaper = threading.Thread(
            target=self._reap, args=(self._process,), name="lambda-runtime-reaper"
        )
        self._reaper.start()

    def _child_env(self, api_address: str, task_root: Path) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("_LAMBDA_TELEMETRY_LOG_FD", "AWS_LAMBDA_MAX_CONCURRENCY", "AWS_LAMBDA_LOG_LEVEL"):
            env.pop(name, None)  # framed log fd, multi-concurrency mode: not what this harness serves
        python_path = [
            str(_TESTS_DIR),
            str(task_root),
            *filter(None, env.get("PYTHONPATH", "").split(os.pathsep)),
        ]
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": api_address,
                "_HANDLER": self.handler,
                "LAMBDA_TASK_ROOT": str(task_root),
                "LAMBDA_RUNTIME_DIR": str(task_root),
                "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
                "AWS_LAMBDA_LOG_FORMAT": self.log_format,
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "TZ": ":UTC",
                "PYTHONPATH": os.pathsep.join(python_path),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.log_level is not None:
            env["AWS_LAMBDA_LOG_LEVEL"] = self.log_level
        env.update(self._env)
        return env

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        with self._state.cond:
            self._state.exited = True
            self._state.cond.notify_all()

    def close(self) -> None:
        """Stop the runtime process (terminate, then kill) and the server; join every thread. Idempotent."""
        process, reaper = self._process, self._reaper
        if process is not None and reaper is not None:
            if process.poll() is None:
                process.terminate()
            reaper.join(5.0)
            if reaper.is_alive():
                process.kill()
                reaper.join()
        with self._state.cond:
            self._state.closing = True
            self._state.cond.notify_all()
        if self._server is not None:
            if self._server_thread is not None:
                self._server.shutdown()
                self._server_thread.join()
            self._server.server_close()
            self._server = None
        if self._tmp is not None:
            self._logs_at_close = self.logs()
            self._tmp.cleanup()
            self._tmp = None

    # -- invoking ----------------------------------------------------------------------------------------------

    def invoke(self, event: Any, *, timeout: float | None = None) -> Invocation:
        """Queue ``event`` (JSON-encoded; ``bytes`` as they are) and wait for the runtime's response or error.

        Raises ``LocalLambdaError`` (with the init error, if any, and the tail of the logs) when the process has
        exited or exits before answering, or when no answer comes within ``timeout`` seconds (default: the
        function timeout plus 10 s); on a timeout the process is killed, as Lambda resets the environment.
        """
        if self._process is None:
            raise RuntimeError("LocalLambda not started: use it as a context manager")
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        pending = _Pending(request_id=str(uuid.uuid4()), body=body)
        wait_s = timeout if timeout is not None else self.timeout_s + _INIT_LIMIT_S
        state = self._state
        with state.cond:
            if state.exited or state.closing:
                raise self._error("the runtime process is not running")
            state.queue.append(pending)
            state.cond.notify_all()  # wake a /next long poll that is already waiting
            answered = state.cond.wait_for(lambda: pending.result is not None or state.exited, wait_s)
            result = pending.result
            if result is None:
                if pending in state.queue:
                    state.queue.remove(pending)
                state.in_flight.pop(pending.request_id, None)
        if result is not None:
            if self._first_result_at is None:
                self._first_result_at = time.monotonic()
            return result
        if not answered:
            self._process.kill()
            if self._reaper is not None:
                self._reaper.join()
            raise self._error(
                f"no answer to request {pending.request_id} within {wait_s:g} s; process killed"
            )
        raise self._error(f"the runtime process exited before answering request {pending.request_id}")

    def _error(self, what: str) -> LocalLambdaError:
        code = self._process.returncode if self._process is not None else None
        parts = [f"{what} (handler {self.handler!r}, exit code {code})"]
        init_error = self._state.init_error
        if init_error is not None:
            parts[0] = (
                f"the function failed to initialise: {init_error.get('errorType')}: {init_error.get('errorMessage')}; {parts[0]}"
            )
            parts.append(f"init error document: {json.dumps(init_error)}")
        logs = self.logs()
        parts.append(f"runtime logs (last {_LOG_TAIL_CHARS} chars):\n{logs[-_LOG_TAIL_CHARS:]}")
        return LocalLambdaError("\n".join(parts))

    # -- observing ---------------------------------------------------------------------------------------------

    @property
    def init_error(self) -> dict[str, Any] | None:
        """The document the runtime posted to ``/runtime/init/error`` (``errorMessage``, ``errorType``, ...)."""
        with self._state.cond:
            return self._state.init_error

    def wait_init_error(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """Wait until the runtime posts an init error or exits, or is ready for events (then None)."""
        state = self._state
        with state.cond:
            state.cond.wait_for(
                lambda: state.init_error is not None or state.exited or state.first_next_at is not None,
                timeout,
            )
            return state.init_error

    @property
    def returncode(self) -> int | None:
        """The runtime process's exit status, None while it runs."""
        return None if self._process is None else self._process.poll()

    @property
    def init_duration_s(self) -> float | None:
        """Process start to the runtime's first ``/next`` request (Lambda's Init Duration), None before it."""
        first = self._state.first_next_at
        return None if first is None else first - self._spawned_at

    @property
    def cold_start_s(self) -> float | None:
        """Process start to the first invocation's answer reaching ``invoke``, None before it."""
        return None if self._first_result_at is None else self._first_result_at - self._spawned_at

    def logs(self) -> str:
        """Everything the runtime process wrote to stdout and stderr so far (also after ``close``)."""
        if self._log_path is None or self._tmp is None:
            return self._logs_at_close
        return self._log_path.read_bytes().decode("utf-8", errors="replace")

    def log_records(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines as dicts (other lines skipped); only ``request_id``'s when given."""
        records = []
        for line in self.logs().split("\n"):  # not splitlines(): JSON lines may hold U+2028 and friends
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (request_id is None or record.get("requestId") == request_id):
                records.append(record)
        return records
