"""The one error root and its small tree, grouped by what the operator must do.

::

    ScalpbotError                   every error raised on purpose by scalpbot
    ├── ConfigError                 fix the configuration (file, environment, options)
    ├── DataError                   the bars are malformed: fix or re-fetch the input
    │   └── CorruptArtifactError    a stored object failed its checksum or cannot be parsed
    │       └── LedgerGap           an event is missing from a bot's ledger: restore it
    ├── StoreError                  the store cannot be reached or refused an operation
    │   ├── ObjectNotFound          the key does not exist
    │   ├── PreconditionFailed      create-only or compare-and-swap lost: re-read and retry
    │   ├── LeaseHeld               another run of the bot is in progress: skip this one
    │   └── LeaseLost               our run lease was taken over: stop writing
    ├── LedgerError                 a ledger event is malformed
    │   └── LedgerConflict          a retried run recorded something else for the same event
    ├── ChannelError                a notification channel failed (retried, then recorded)
    ├── CycleFailed                 an execute cycle failed closed (already recorded and notified)
    ├── ModelError                  a model or release cannot be used
    └── ExchangeError               the exchange refused or failed
        ├── ExchangeTemporaryError  retry with backoff (network, rate limit, 5xx)
        │   └── OrderOutcomeUnknown an order may or may not have reached the venue: look it up, never re-send
        ├── OrderRejected           skip this order and record why
        └── InsufficientFunds       skip, and tell the operator

Third-party errors are translated only in adapters, always with ``raise ... from e``.
"""

from __future__ import annotations

from datetime import datetime


class ScalpbotError(Exception):
    """Root of every error scalpbot raises on purpose; its message is meant for the operator."""


class ConfigError(ScalpbotError):
    """The configuration is invalid; the message says which key and how to fix it."""


class DataError(ScalpbotError):
    """Market data is malformed, inconsistent or unreadable."""


class CorruptArtifactError(DataError):
    """A stored object cannot be parsed or does not match its checksum."""


class LedgerGap(CorruptArtifactError):
    """A bot's ledger lacks an event it must hold (a fill's sequence number is missing): restore it."""


class StoreError(ScalpbotError):
    """The store failed or refused an operation."""


class LedgerError(ScalpbotError):
    """A ledger event cannot be recorded: bad kind, time or payload; the message says how to fix it."""


class LedgerConflict(LedgerError):
    """An event with the same id exists with different content: a retried run recorded something else."""


class LeaseHeld(StoreError):
    """Another run holds the bot's run lease: skip this run; ``owner`` and ``expires_at`` say who and until when."""

    def __init__(self, key: str, owner: str, expires_at: datetime) -> None:
        self.owner = owner
        self.expires_at = expires_at
        super().__init__(
            f"run lease {key} is held by {owner!r} until {expires_at.isoformat()}: another run is in progress, "
            "so this one does nothing; the lease frees when that run ends or expires"
        )


class LeaseLost(StoreError):
    """Our lease expired and was taken over, or removed: stop before writing more state."""


class ObjectNotFound(StoreError):
    """The requested key does not exist in the store."""


class PreconditionFailed(StoreError):
    """A create-only or compare-and-swap write lost: the object exists or changed since it was read."""


class ModelError(ScalpbotError):
    """A model or release cannot be loaded or used."""


class ExchangeError(ScalpbotError):
    """The exchange refused or failed a request."""


class ChannelError(ScalpbotError):
    """A channel could not deliver a message; the text is safe to log (no credentials).

    ``temporary`` is false for a failure that a retry cannot fix (topic deleted, access denied, bad parameter),
    so that the fan-out records it at once instead of waiting.
    """

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self.temporary = temporary


class CycleFailed(ScalpbotError):
    """An execute cycle failed closed: nothing was placed; the ledger has the reason and it was notified."""


class ExchangeTemporaryError(ExchangeError):
    """A transient exchange failure (network, timeout, rate limit, 5xx): retry with backoff."""


class OrderOutcomeUnknown(ExchangeTemporaryError):
    """An order was sent and no answer says whether the venue took it (timeout, 5xx, lost reply).

    Resolve its fate by looking its client id up before anything is sent again.
    """


class OrderRejected(ExchangeError):
    """The exchange rejected an order: skip it and record why."""


class InsufficientFunds(ExchangeError):
    """The account cannot fund the order."""
