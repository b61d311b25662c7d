"""The console channel: one line per message on stderr, coloured by level."""

from __future__ import annotations

import contextlib
import sys
from collections import deque
from datetime import UTC, datetime
from typing import TextIO

_COLOURS = {"info": "", "warning": "\033[33m", "error": "\033[31m"}


class ConsoleNotifier:
    """Write notifications to a text stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.sent: deque[tuple[str, str, str]] = deque(maxlen=100)  # the latest, for tests and diagnostics

    def notify(self, subject: str, message: str, *, level: str = "info") -> None:
        """Print ``[time] LEVEL subject: message``; never raises."""
        stream = self._stream or sys.stderr
        self.sent.append((level, subject, message))
        colour = _COLOURS.get(level, "") if stream.isatty() else ""
        reset = "\033[0m" if colour else ""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with contextlib.suppress(OSError):  # a closed terminal must not fail the job
            print(f"{colour}[{stamp}] {level.upper()} {subject}: {message}{reset}", file=stream)
