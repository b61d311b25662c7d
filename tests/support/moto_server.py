"""Run moto's S3 (and every other moto service) as a real HTTP server on 127.0.0.1 for tests.

Server mode, not ``mock_aws``: the code under test talks HTTP through botocore exactly as it would to AWS, and
other clients (pyarrow, s3fs) can reach it too. The OS picks the port, so parallel runs do not collide.

Requests are served one at a time. moto 5.2 checks ``If-Match``/``If-None-Match`` and then writes without a
lock (``moto/s3/responses.py``, ``put_object``), and concurrent writes to one key can fail with a 500 (``I/O
operation on closed file``); with ``sys.setswitchinterval(1e-6)`` a race test saw two winners. AWS S3 decides
conditional writes atomically, so serializing makes the fake behave like the real thing.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

_WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _OneRequestAtATime:
    """Wrap a WSGI app so that one request runs at a time, response body included."""

    def __init__(self, app: _WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class _SerializedMotoServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` whose app is wrapped in ``_OneRequestAtATime`` (same start, stop and port)."""

    def _server_entry(self) -> None:
        app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class MotoServer:
    """One moto server in a background thread; ``endpoint_url`` is what boto3's ``endpoint_url=`` wants."""

    def __init__(self) -> None:
        self._server = _SerializedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url = ""

    def start(self, timeout: float = 10.0) -> None:
        """Start the server on a free port and return once it answers HTTP; silence werkzeug's request log."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.reset()
                return
            except (urllib.error.URLError, ConnectionError) as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto server at {self.endpoint_url} did not answer in {timeout} s"
                    ) from e
                time.sleep(0.05)

    def reset(self) -> None:
        """Forget every bucket, object and other resource in every moto backend."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def stop(self) -> None:
        """Shut the server down and join its thread."""
        self._server.stop()


@contextmanager
def running_moto_server() -> Iterator[MotoServer]:
    """Yield a started moto server and stop it afterwards."""
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
