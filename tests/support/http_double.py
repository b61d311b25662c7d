"""The HTTP server under the venue doubles: a threading server whose close leaves no request thread behind.

``http.server.ThreadingHTTPServer`` serves each connection in a daemon thread that ``server_close`` does not
wait for, and an HTTP/1.1 client (ccxt's ``requests`` session) keeps its connection open between requests:
such a thread, blocked reading the next request, outlives the test that started the server and may still
touch its state. :class:`JoiningHTTPServer` remembers the connections it serves; ``server_close`` ends each of
them (the handler reads end of stream and returns) and then joins every request thread.

A handler that waits (an injected slow reply) must be woken by its server's own stop signal before
``server_close``, as the doubles' ``stop`` does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["JoiningHTTPServer"]


class JoiningHTTPServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` on ``address`` whose ``server_close`` ends every open connection and joins
    every request thread."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[Any] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection, then serve it in its own thread."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection once its thread is done with it, and close it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening, end the open connections, and wait for every request thread to return."""
        with self._connections_lock:
            open_now = list(self._connections)
        for connection in open_now:
            with contextlib.suppress(OSError):  # the client closed it already
                connection.shutdown(socket.SHUT_RDWR)
        super().server_close()
