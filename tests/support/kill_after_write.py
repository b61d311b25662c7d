"""Run the scalpbot command line and SIGKILL the process right after its N-th store write to a matching key.

``python -m support.kill_after_write PATTERN N -- scalpbot-args...`` (run with ``tests`` on ``PYTHONPATH``):
the store the command opens is wrapped so that, once the N-th successful write (put, create-only put,
compare-and-swap put or delete) to a key matching the regular expression ``PATTERN`` has returned, the
process kills itself with SIGKILL - no ``finally``, no ``atexit``, no flush: a machine losing power or a
Lambda container being frozen right after that write. Exit status 3 means the write never happened.
"""

from __future__ import annotations

import os
import re
import signal
import sys

import scalpbot.wiring
from scalpbot.ports import Store, StoredObject

NEVER_REACHED = 3


class KillAfterWrite:
    """A ``Store`` that delegates to ``inner`` and kills the process after the N-th matching write."""

    def __init__(self, inner: Store, pattern: str, nth: int) -> None:
        self._inner = inner
        self._pattern = re.compile(pattern)
        self._left = nth

    def _wrote(self, key: str) -> None:
        if self._pattern.search(key):
            self._left -= 1
            if self._left == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    def get(self, key: str) -> StoredObject:
        return self._inner.get(key)

    def head(self, key: str) -> str | None:
        return self._inner.head(key)

    def put(self, key: str, data: bytes) -> str:
        etag = self._inner.put(key, data)
        self._wrote(key)
        return etag

    def put_if_absent(self, key: str, data: bytes) -> str:
        etag = self._inner.put_if_absent(key, data)
        self._wrote(key)
        return etag

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        new = self._inner.put_if_match(key, data, etag)
        self._wrote(key)
        return new

    def list(self, prefix: str = "") -> list[str]:
        return self._inner.list(prefix)

    def delete(self, key: str) -> None:
        self._inner.delete(key)
        self._wrote(key)

    def describe(self) -> str:
        return self._inner.describe()


def main(argv: list[str]) -> int:
    pattern, nth, separator, *args = argv
    assert separator == "--", "usage: kill_after_write PATTERN N -- scalpbot-args..."
    opened = scalpbot.wiring.open_store

    def open_killing(url: str, endpoint_url: str | None = None, region: str | None = None) -> Store:
        return KillAfterWrite(opened(url, endpoint_url, region), pattern, int(nth))

    scalpbot.wiring.open_store = open_killing  # type: ignore[assignment]
    from scalpbot.cli.app import app

    try:
        app(args, prog_name="scalpbot", standalone_mode=False)
    except SystemExit as e:
        return int(e.code or 0)
    return NEVER_REACHED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
