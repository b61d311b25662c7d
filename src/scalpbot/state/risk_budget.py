"""The bot's portfolio risk budget at ``state/{bot}/portfolio_risk.json``, changed only by compare-and-swap.

Every symbol's cycle of one bot shares this one object (see :mod:`scalpbot.core.portfolio_risk`). A change
reads the book with its ETag, applies a pure function and writes the result create-only (the first time) or by
compare-and-swap; a writer that lost the race re-reads and applies its change to the newer book, up to
``attempts`` times with a short random back-off. So concurrent cycles - threads, processes, Lambda invocations
on the folder or the S3 store - never commit on the same base: no reservation is lost, none counted twice, and
the limits hold for every book ever written, not only for each cycle's own view.

**Idempotent.** A reservation is keyed by its entry's client id (bot, symbol, decision bar), an exit by its
fill's key: a retried cycle that reserves or settles again finds its change made and writes nothing. A change
that changes nothing is not written. ``version`` counts the writes; the document holds no wall-clock time, so
a killed and rerun cycle leaves the very bytes an uninterrupted one does.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import pandas as pd

from scalpbot.core.portfolio_risk import (
    Approved,
    Denied,
    PortfolioBook,
    PortfolioLimits,
    Reservation,
    cancel,
    check_reservation,
    new_book,
    reserve,
    resume_book,
    settle,
)
from scalpbot.errors import DataError, ObjectNotFound, PreconditionFailed
from scalpbot.ports import Store
from scalpbot.state.codec import check_bot, dump, format_time, load_versioned, parse_time

__all__ = ["BudgetCommit", "RiskBudget", "book_from_dict", "book_to_dict"]

_SCHEMA = 1
_ATTEMPTS = 64
_BACKOFF_S = 0.002
_BACKOFF_MAX_S = 0.05


@dataclass(frozen=True, slots=True)
class BudgetCommit:
    """The book as stored after a change (``None``: none stored yet) and whether this call wrote it."""

    book: PortfolioBook | None
    written: bool


def book_to_dict(book: PortfolioBook) -> dict[str, Any]:
    """Return ``book`` as JSON-native data (times ISO-8601 UTC, the day ``YYYY-MM-DD``)."""
    for name in ("equity", "day_start_equity", "peak_equity", "day_pnl"):
        if not math.isfinite(getattr(book, name)):
            raise DataError(f"cannot save the risk budget: {name} is {getattr(book, name)}")
    return {
        "v": _SCHEMA,
        "version": book.version,
        "equity": book.equity,
        "day": book.day.isoformat(),
        "day_start_equity": book.day_start_equity,
        "day_pnl": book.day_pnl,
        "peak_equity": book.peak_equity,
        "reservations": {
            symbol: {
                "side": r.side,
                "notional": r.notional,
                "client_id": r.client_id,
                "bar": format_time(r.bar, "reservation bar"),
            }
            for symbol, r in book.reservations.items()
        },
        "settled": {symbol: list(keys) for symbol, keys in book.settled.items() if keys},
        "halted": book.halted,
        "halt_reason": book.halt_reason,
        "halted_at": None if book.halted_at is None else format_time(book.halted_at, "halted_at"),
    }


def book_from_dict(data: Mapping[str, Any]) -> PortfolioBook:
    """Return the book of :func:`book_to_dict`; raise ``KeyError``/``TypeError``/``ValueError`` when malformed."""
    reservations = {
        str(symbol): Reservation(
            int(r["side"]), float(r["notional"]), str(r["client_id"]), parse_time(r["bar"])
        )
        for symbol, r in data["reservations"].items()
    }
    return PortfolioBook(
        equity=float(data["equity"]),
        day=date.fromisoformat(data["day"]),
        day_start_equity=float(data["day_start_equity"]),
        peak_equity=float(data["peak_equity"]),
        day_pnl=float(data["day_pnl"]),
        reservations=reservations,
        settled={str(s): tuple(str(k) for k in keys) for s, keys in data["settled"].items()},
        halted=bool(data["halted"]),
        halt_reason=None if data["halt_reason"] is None else str(data["halt_reason"]),
        halted_at=None if data["halted_at"] is None else parse_time(data["halted_at"]),
        version=int(data["version"]),
    )


Change = Callable[[PortfolioBook | None], PortfolioBook | None]
"""A pure change: the stored book (``None`` before the first write) to the next one (``None``: nothing to do)."""


class RiskBudget:
    """Read and change the risk budget of bot ``bot`` in ``store`` under ``limits``.

    ``attempts``: compare-and-swap tries before giving up (``PreconditionFailed``); ``sleep`` waits between
    them (tests may pass a no-op).
    """

    def __init__(
        self,
        store: Store,
        bot: str,
        limits: PortfolioLimits,
        *,
        attempts: int = _ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self.limits = limits
        self.key = f"state/{check_bot(bot)}/portfolio_risk.json"
        self._attempts = attempts
        self._sleep = sleep

    def load(self) -> PortfolioBook | None:
        """Return the stored book, or ``None`` before the first write; ``CorruptArtifactError`` when unreadable."""
        found = self._read()
        return None if found is None else found[0]

    def reserve(
        self,
        symbol: str,
        *,
        side: int,
        notional: float,
        client_id: str,
        bar: pd.Timestamp,
        equity: float,
    ) -> tuple[Approved | Denied, BudgetCommit]:
        """Reserve ``notional`` (quote currency) for ``symbol``'s entry ``client_id`` decided on bar ``bar``.

        Return the verdict and the book as committed. Denied: nothing is written. The same ``client_id``
        reserved again is approved without a write. ``equity`` (quote currency) starts the book when none exists.
        """
        verdicts: list[Approved | Denied] = []

        def change(book: PortfolioBook | None) -> PortfolioBook | None:
            base = new_book(equity, bar) if book is None else book
            held = base.reservations.get(symbol)
            if held is not None and held.client_id == client_id:
                verdicts.append(Approved(base.gross, base.positions))
                return None
            verdict = check_reservation(base, symbol, notional, self.limits)
            verdicts.append(verdict)
            if isinstance(verdict, Denied):
                return None
            return reserve(base, symbol, Reservation(side, float(notional), client_id, bar), self.limits)

        commit = self._update(change)
        return verdicts[-1], commit

    def settle(
        self,
        symbol: str,
        *,
        exits: Sequence[tuple[str, float]],
        held: Reservation | None,
        at: pd.Timestamp,
        equity: float,
    ) -> BudgetCommit:
        """Book ``symbol``'s exits and match its reservation to the position (see ``core.portfolio_risk.settle``).

        Without a stored book nothing is written unless there is something to record; the book then starts from
        ``equity`` (the broker's, quote currency) less the PnL of these exits, so that it ends at ``equity``.
        """

        def change(book: PortfolioBook | None) -> PortfolioBook | None:
            if book is None:
                if not exits and held is None:
                    return None
                book = new_book(equity - math.fsum(pnl for _, pnl in exits), at)
            return settle(book, symbol, exits, at, self.limits, held=held)

        return self._update(change)

    def cancel(self, symbol: str, client_id: str) -> BudgetCommit:
        """Give back ``symbol``'s reservation for the entry ``client_id`` (its order was refused or never sent)."""
        return self._update(lambda book: None if book is None else cancel(book, symbol, client_id))

    def resume(self) -> BudgetCommit:
        """Release the bot's kill switch, accepting the losses so far; nothing is written when it is not engaged."""
        return self._update(lambda book: resume_book(book) if book is not None and book.halted else None)

    def _read(self) -> tuple[PortfolioBook, str] | None:
        try:
            stored = self._store.get(self.key)
        except ObjectNotFound:
            return None
        return load_versioned(stored.data, self.key, _SCHEMA, book_from_dict), stored.etag

    def _update(self, change: Change) -> BudgetCommit:
        """Apply ``change`` by compare-and-swap, re-reading and re-applying after each lost race."""
        delay = _BACKOFF_S
        for attempt in range(1, self._attempts + 1):
            found = self._read()
            current, etag = (None, None) if found is None else found
            updated = change(current)
            if updated is None or updated == current:
                return BudgetCommit(current, False)
            updated = replace(updated, version=(0 if current is None else current.version) + 1)
            data = dump(book_to_dict(updated))
            try:
                if etag is None:
                    self._store.put_if_absent(self.key, data)
                else:
                    self._store.put_if_match(self.key, data, etag)
            except PreconditionFailed as e:
                if attempt == self._attempts:
                    raise PreconditionFailed(
                        f"{self.key} changed under each of {attempt} attempts to update it (other symbols' cycles "
                        f"kept writing); nothing was changed, try again ({e})"
                    ) from e
                self._sleep(random.uniform(0, delay))
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            return BudgetCommit(updated, True)
        raise PreconditionFailed(  # only with attempts < 1
            f"{self.key}: no attempt to change the risk budget was made (attempts={self._attempts})"
        )
