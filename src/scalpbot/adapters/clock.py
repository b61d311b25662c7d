"""Clocks: the wall clock, and a fixed clock that tests and replays move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that shows a set time until it is moved."""

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("FixedClock needs an aware UTC datetime")
        self._now = now.astimezone(UTC)

    def now(self) -> datetime:
        """Return the time the clock is set to."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self._now += delta

    def set(self, now: datetime) -> None:
        """Set the clock to ``now`` (aware)."""
        self._now = now.astimezone(UTC)
