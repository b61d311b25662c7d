"""Send each notification to every channel; retry the failing ones, record what still fails, never raise.

A channel is anything with a ``name`` and a ``send`` that raises :class:`ChannelError` when the message did not
go out (:class:`~scalpbot.adapters.notify.sns.SnsNotifier`, :class:`~scalpbot.adapters.notify.apprise_channel.
AppriseNotifier`); a plain ``Notifier`` such as the console joins through :class:`NotifierChannel`.

Every channel gets the message first; the ones that failed are retried together in rounds, waiting
``base_delay * 2**(round - 1)`` seconds before each round, so one dead channel delays nobody's first delivery
and several dead ones share the waits. A channel still failing after ``attempts`` sends is logged and recorded
in the ledger as a ``notify_error`` event (channel name, subject, level, attempts, short cause), and the job goes
on: a notification is never worth failing a trading job for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from scalpbot.errors import ChannelError, ConfigError, CycleFailed
from scalpbot.ports import Clock, Notifier
from scalpbot.state.ledger import Ledger, event_id_for

__all__ = [
    "LEVELS",
    "NOTIFY_ERROR",
    "Channel",
    "ChannelError",
    "Notifications",
    "NotifierChannel",
    "job_error",
    "notify_job_error",
    "short_cause",
]

_log = logging.getLogger(__name__)

LEVELS = ("info", "warning", "error")
"""The levels a notification can have (``Notifier.notify``)."""

NOTIFY_ERROR = "notify_error"
"""The ledger kind of a notification that no retry could deliver."""

_CAUSE_CHARS = 300


class Channel(Protocol):
    """One destination for notifications, named for logs and the ledger (e.g. ``sns:alerts``)."""

    name: str

    def send(self, subject: str, message: str, *, level: str = "info") -> None:
        """Deliver one message or raise :class:`ChannelError` (credentials never in its text)."""
        ...


class NotifierChannel:
    """Make a ``Notifier`` that never reports failure (e.g. the console) a channel named ``name``."""

    def __init__(self, notifier: Notifier, name: str) -> None:
        self.notifier = notifier
        self.name = name

    def send(self, subject: str, message: str, *, level: str = "info") -> None:
        """Pass the message on; the notifier handles its own failures."""
        self.notifier.notify(subject, message, level=level)


def short_cause(error: BaseException, limit: int = _CAUSE_CHARS) -> str:
    """Return ``Type: first line of the message``, whitespace collapsed, at most ``limit`` characters."""
    text = " ".join(str(error).split())
    cause = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return cause if len(cause) <= limit else cause[: limit - 1] + "…"


def job_error(job: str, symbol: str | None, exc: BaseException) -> tuple[str, str]:
    """Return the ``(subject, message)`` announcing that ``job`` failed for ``symbol`` with ``exc``.

    The cause is the exception's type and message, shortened; scalpbot's own errors carry operator-ready,
    credential-free messages. Send it with ``level="error"``.
    """
    where = f" for {symbol}" if symbol else ""
    subject = f"scalpbot {job} failed{where}: {type(exc).__name__}"
    message = f"job: {job}\nsymbol: {symbol or '-'}\ncause: {short_cause(exc)}"
    return subject, message


def notify_job_error(notifier: Notifier, job: str, symbol: str | None, exc: BaseException) -> None:
    """Send :func:`job_error` for ``exc`` at level error, unless its cause was notified already.

    A :class:`~scalpbot.errors.CycleFailed` is raised after the execute cycle notified why it failed closed.
    """
    if not isinstance(exc, CycleFailed):
        notifier.notify(*job_error(job, symbol, exc), level="error")


class Notifications:
    """The ``Notifier`` the jobs use: fan out to ``channels`` with retries, record failures, never raise.

    ``attempts`` sends per channel at most (1 = no retry); ``base_delay`` seconds before the first retry round,
    doubling each round; ``sleep`` is injectable for tests. ``ledger`` (optional) receives a ``notify_error``
    event per channel given up on, at ``clock.now()``.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        ledger: Ledger | None = None,
        clock: Clock,
        attempts: int = 3,
        base_delay: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ConfigError(f"notification attempts must be at least 1 (1 = no retry); got {attempts}")
        if not base_delay >= 0:
            raise ConfigError(f"notification retry delay must be >= 0 seconds; got {base_delay}")
        names = [channel.name for channel in channels]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"notification channel names must be unique; repeated: {', '.join(duplicates)}")
        self.channels = tuple(channels)
        self._ledger = ledger
        self._clock = clock
        self._attempts = attempts
        self._base_delay = base_delay
        self._sleep = sleep

    @property
    def names(self) -> list[str]:
        """Return the channel names, in sending order."""
        return [channel.name for channel in self.channels]

    def notify(self, subject: str, message: str, *, level: str = "info") -> None:
        """Send to every channel; retry the failing ones, then log and record each that still fails."""
        if level not in LEVELS:
            _log.warning("notification level %r is not one of %s; sending it as 'info'", level, LEVELS)
            level = "info"
        pending = [
            (channel, error)
            for channel in self.channels
            if (error := self._send(channel, subject, message, level)) is not None
        ]
        sent = 1
        while pending and sent < self._attempts:
            for channel, error in pending:
                if not error.temporary:
                    self._give_up(channel, error, sent, subject, level)
            retry = [channel for channel, error in pending if error.temporary]
            if not retry:
                return
            self._sleep(self._base_delay * 2.0 ** (sent - 1))
            sent += 1
            pending = [
                (channel, error)
                for channel in retry
                if (error := self._send(channel, subject, message, level)) is not None
            ]
        for channel, error in pending:
            self._give_up(channel, error, sent, subject, level)

    def _send(self, channel: Channel, subject: str, message: str, level: str) -> ChannelError | None:
        """Return ``None`` when ``channel`` delivered, else why not."""
        try:
            channel.send(subject, message, level=level)
        except ChannelError as e:
            _log.warning("notification channel %s failed: %s", channel.name, e)
            return e
        except Exception as e:  # a bug in a channel must not stop the others; its text may hold anything
            _log.warning("notification channel %s failed unexpectedly: %s", channel.name, type(e).__name__)
            return ChannelError(f"unexpected {type(e).__name__} in the channel (a bug: report it)")
        return None

    def _give_up(self, channel: Channel, error: ChannelError, sent: int, subject: str, level: str) -> None:
        """Log that ``channel`` did not deliver after ``sent`` attempts and record it in the ledger."""
        cause = str(error)[:_CAUSE_CHARS]
        _log.error("%s did not deliver %r after %d attempt(s): %s", channel.name, subject, sent, cause)
        if self._ledger is None:
            return
        payload = {
            "channel": channel.name,
            "subject": subject[:200],
            "level": level,
            "attempts": sent,
            "cause": cause,
        }
        try:
            now = self._clock.now()
            digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
            self._ledger.append(NOTIFY_ERROR, now, payload, event_id=event_id_for(NOTIFY_ERROR, now, digest))
        except Exception as e:  # the ledger's store may be what is down; the log line above stays
            _log.error("notify_error for %s not recorded in the ledger: %s", channel.name, short_cause(e))
