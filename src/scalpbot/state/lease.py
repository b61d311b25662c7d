"""The run lease at ``state/{bot}/lease.json``: at most one run of a bot's execute job at a time.

* **Acquire**: create-only write of ``{owner, acquired_at, expires_at}``. If a lease exists and has expired
  (``expires_at <= now`` by the injected clock) or cannot be parsed, take it over by compare-and-swap on the ETag
  just read: of two takers exactly one wins, the other re-reads and gets :class:`LeaseHeld`.
* **Release**: re-read; if the lease is still ours, first mark it expired by compare-and-swap (so it is free at
  once even if the next step never happens), then delete it if it is unchanged since that write. The store has
  no conditional delete, so a taker that slips in between that check and the delete loses its lease object.
  That is safe: the lease only stops overlapping runs, and an overlap cannot double an order (client ids are
  deterministic), a ledger event (create-only) or a snapshot update (compare-and-swap). The worst ordinary
  outcome of a failed release is that the next run waits until the lease expires.

Choose ``ttl`` longer than a run plus the clock skew between the machines that run the job.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Self

import pandas as pd

from scalpbot.errors import (
    ConfigError,
    CorruptArtifactError,
    LeaseHeld,
    LeaseLost,
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
)
from scalpbot.ports import Clock, Store
from scalpbot.state.codec import dump, format_time, load, parse_time
from scalpbot.state.scope import state_key

__all__ = ["LeaseHeld", "LeaseInfo", "LeaseLost", "RunLease"]

_SCHEMA = 1
_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds a lease and from when until when (UTC)."""

    owner: str
    acquired_at: pd.Timestamp
    expires_at: pd.Timestamp


def _parse(data: bytes, key: str) -> LeaseInfo | None:
    """Return the lease in ``data``, or ``None`` when it cannot be parsed (treated as expired)."""
    try:
        document = load(data, key)
        return LeaseInfo(
            owner=str(document["owner"]),
            acquired_at=parse_time(document["acquired_at"]),
            expires_at=parse_time(document["expires_at"]),
        )
    except (CorruptArtifactError, KeyError, TypeError, ValueError):
        return None


class RunLease:
    """The lease of bot ``bot``, held for ``ttl`` from each acquire or renew; a context manager.

    ``owner`` names this holder in errors (default: host, process id and a random suffix, unique per lease).
    ``symbol``: the lease of that symbol's cycles, in a bot of several symbols (see :mod:`scalpbot.state.scope`).
    """

    def __init__(
        self,
        store: Store,
        bot: str,
        clock: Clock,
        ttl: timedelta,
        *,
        owner: str | None = None,
        symbol: str | None = None,
    ) -> None:
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise ConfigError(
                f"lease ttl must be a positive timedelta, e.g. timedelta(minutes=5); got {ttl!r}"
            )
        if owner is not None and (not isinstance(owner, str) or not owner.strip()):
            raise ConfigError(f"lease owner must be a non-empty string; got {owner!r}")
        self._store = store
        self._clock = clock
        self.ttl = ttl
        self.key = state_key(bot, "lease.json", symbol)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._etag: str | None = None
        self._info: LeaseInfo | None = None

    @property
    def held(self) -> bool:
        """Return whether this object acquired the lease and has not released it (expiry is not checked)."""
        return self._etag is not None

    @property
    def info(self) -> LeaseInfo | None:
        """Return the lease as last written by this holder, or ``None`` when not held."""
        return self._info

    def _document(self, acquired_at: pd.Timestamp, expires_at: pd.Timestamp) -> bytes:
        return dump(
            {
                "v": _SCHEMA,
                "owner": self.owner,
                "acquired_at": format_time(acquired_at),
                "expires_at": format_time(expires_at),
            }
        )

    def _now(self) -> pd.Timestamp:
        now = pd.Timestamp(self._clock.now())
        if now.tzinfo is None:
            raise ConfigError("the clock returned a naive time; clocks must return aware UTC datetimes")
        return now.tz_convert("UTC").floor("us")

    def _hold(self, etag: str, acquired_at: pd.Timestamp, expires_at: pd.Timestamp) -> LeaseInfo:
        self._etag = etag
        self._info = LeaseInfo(self.owner, acquired_at, expires_at)
        return self._info

    def acquire(self) -> LeaseInfo:
        """Take the lease for ``ttl`` from now and return it; raise :class:`LeaseHeld` while another run holds it.

        Acquiring a lease this holder already has extends it.
        """
        holder: LeaseInfo | None = None
        for _ in range(_ATTEMPTS):
            now = self._now()
            document = self._document(now, now + self.ttl)
            try:
                return self._hold(self._store.put_if_absent(self.key, document), now, now + self.ttl)
            except PreconditionFailed:
                pass
            try:
                current = self._store.get(self.key)
            except ObjectNotFound:
                continue  # released in between: try to create it again
            holder = _parse(current.data, self.key)
            if holder is not None and holder.owner != self.owner and holder.expires_at > now:
                raise LeaseHeld(self.key, holder.owner, holder.expires_at)
            try:  # expired, unreadable or ours: take it over unless someone else wrote first
                return self._hold(
                    self._store.put_if_match(self.key, document, current.etag), now, now + self.ttl
                )
            except PreconditionFailed:
                continue
        if holder is not None:
            raise LeaseHeld(self.key, holder.owner, holder.expires_at)
        raise StoreError(
            f"run lease {self.key} changed on every one of {_ATTEMPTS} attempts; try again later"
        )

    def renew(self) -> LeaseInfo:
        """Extend our lease to ``ttl`` from now; raise :class:`LeaseLost` when it is no longer ours."""
        if self._etag is None or self._info is None:
            raise LeaseLost(f"run lease {self.key} is not held by {self.owner!r}; acquire it first")
        now = self._now()
        try:
            etag = self._store.put_if_match(
                self.key, self._document(self._info.acquired_at, now + self.ttl), self._etag
            )
        except PreconditionFailed:
            self._etag = self._info = None
            raise LeaseLost(
                f"run lease {self.key} was taken over or removed after it expired; stop before writing more state"
            ) from None
        return self._hold(etag, self._info.acquired_at, now + self.ttl)

    def release(self) -> bool:
        """Give the lease back if it is still ours and return whether it was; never touches another's lease."""
        if self._etag is None or self._info is None:
            return False
        acquired_at = self._info.acquired_at
        self._etag = self._info = None
        try:
            current = self._store.get(self.key)
        except ObjectNotFound:
            return False
        holder = _parse(current.data, self.key)
        if holder is None or holder.owner != self.owner:
            return False
        try:
            released = self._store.put_if_match(
                self.key, self._document(acquired_at, self._now()), current.etag
            )
        except PreconditionFailed:
            return False  # taken over since the read: theirs now
        if self._store.head(self.key) == released:
            self._store.delete(
                self.key
            )  # the small race of the module docstring lies between these two calls
        return True

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self.release()
        except StoreError as e:
            if exc is None:
                raise
            exc.add_note(f"releasing the run lease {self.key} failed too ({e}); it frees when it expires")
