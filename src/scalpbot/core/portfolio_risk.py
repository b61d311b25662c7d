"""The portfolio risk budget of one bot (pure): the limits every symbol's entries share, and the book they fill.

Units: notionals and equity in quote currency; ``max_gross_exposure`` a multiple of equity (2.0: the open
notional of all symbols together may reach twice the equity); ``max_daily_loss``/``max_drawdown`` fractions
(0.05 = 5 %). Times are bar **open** times (UTC); a day is a UTC day.

* **One reservation per symbol**: before an entry's order is sent, its symbol reserves the entry's notional
  (``signal.size * equity``) under the entry's client id. A reversal replaces its symbol's reservation: the old
  position closes at the open where the new one opens. Gross exposure is the sum of the reserved notionals, the
  number of open positions the number of reservations.
* **Settling** (:func:`settle`): the realized PnL of each exit is booked once (by the exit fill's key), and a
  symbol found flat after the bar its reservation was made for gives the reservation back. A position found open
  without a reservation (opened before the budget existed) is recorded as it is.
* **The book's equity** is the equity when the book began plus every realized PnL booked since: one figure for
  every symbol's cycle, whatever part of the market each has seen. The gross cap as a multiple of equity uses it.
* **Kill switch on the whole bot**: once the realized PnL of the UTC day reaches ``max_daily_loss`` of the day's
  starting equity, or the equity falls ``max_drawdown`` below its peak, the book is halted: every reservation is
  denied (each symbol then flattens) until :func:`resume_book`. Exits are always settled.
* **Checks return reasons**: :func:`check_reservation` returns :class:`Approved` or :class:`Denied` with every
  limit the entry would break (a stable code and a one-line message each) and never raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import pandas as pd

from scalpbot.errors import ConfigError, DataError

__all__ = [
    "Approved",
    "Denied",
    "PortfolioBook",
    "PortfolioDenial",
    "PortfolioDenialCode",
    "PortfolioLimits",
    "Reservation",
    "cancel",
    "check_reservation",
    "new_book",
    "release",
    "reserve",
    "resume_book",
    "settle",
]

PortfolioDenialCode = Literal[
    "portfolio_halted",
    "max_gross_exposure",
    "max_symbol_notional",
    "max_positions",
    "invalid_input",
]

SETTLED_KEPT = 16
"""Exit keys remembered per symbol, so that an exit settled again (a retried cycle) is not booked twice."""

_LIMIT_TOLERANCE = 1e-9
"""Relative slack on cap comparisons, so that a reservation of exactly the cap is allowed despite float rounding."""


@dataclass(frozen=True, slots=True)
class PortfolioDenial:
    """One limit an entry would break: a stable ``code`` for the ledger and a message for the operator."""

    code: PortfolioDenialCode
    message: str

    def to_dict(self) -> dict[str, str]:
        """Return ``{"code": ..., "message": ...}`` for a ledger payload."""
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Approved:
    """The reservation fits: ``gross`` (quote currency) and ``positions`` as they would be after it."""

    gross: float
    positions: int


@dataclass(frozen=True, slots=True)
class Denied:
    """The reservation does not fit: every limit it would break, the first the most severe."""

    reasons: tuple[PortfolioDenial, ...]

    @property
    def code(self) -> PortfolioDenialCode:
        """Return the first reason's code."""
        return self.reasons[0].code

    @property
    def message(self) -> str:
        """Return the reasons' messages on one line."""
        return "; ".join(reason.message for reason in self.reasons)

    def to_dict(self) -> dict[str, object]:
        """Return the ledger payload: the first code, the joined message and each reason."""
        return {"code": self.code, "message": self.message, "reasons": [r.to_dict() for r in self.reasons]}


def _positive(name: str, value: float, hint: str, *, high: float = math.inf) -> float:
    valid = not isinstance(value, bool) and isinstance(value, int | float) and not math.isnan(value)
    if not (valid and 0 < value <= high):
        raise ConfigError(f"portfolio.{name} must be {hint}; got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class PortfolioLimits:
    """Validated limits shared by every symbol of one bot (units in the module docstring).

    The gross cap is the smaller of ``max_gross_exposure * equity`` and ``max_gross_notional``; each symbol's
    reservation is at most ``max_symbol_notional``; at most ``max_positions`` symbols hold one. ``None`` and
    ``inf`` mean no limit: the defaults bind nothing, so a bot without a ``[portfolio]`` section trades as before.
    """

    max_gross_exposure: float = math.inf
    max_gross_notional: float = math.inf
    max_symbol_notional: float = math.inf
    max_positions: int | None = None
    max_daily_loss: float | None = None
    max_drawdown: float | None = None

    def __post_init__(self) -> None:
        for name, hint in (
            ("max_gross_exposure", "gross notional / equity, > 0, e.g. 2.0 (inf = none)"),
            ("max_gross_notional", "the gross notional cap in quote currency, > 0 (inf = none)"),
            ("max_symbol_notional", "one symbol's notional cap in quote currency, > 0 (inf = none)"),
        ):
            object.__setattr__(self, name, _positive(name, getattr(self, name), hint))
        for name, hint in (
            ("max_daily_loss", "a fraction of the UTC day's starting equity in (0, 1], e.g. 0.05"),
            ("max_drawdown", "a fraction of the peak equity in (0, 1], e.g. 0.15"),
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _positive(name, value, hint, high=1.0))
        count = self.max_positions
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ConfigError(
                f"portfolio.max_positions must be a whole number >= 0 (0 = no entries); got {count!r}"
            )

    def gross_cap(self, equity: float) -> float:
        """Return the gross notional cap (quote currency) at the book's ``equity``; 0 when equity is gone."""
        if equity <= 0:
            return 0.0
        return min(self.max_gross_exposure * equity, self.max_gross_notional)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one symbol holds: ``side`` (+1/-1), ``notional`` (quote currency) under the entry's ``client_id``,
    reserved for the entry decided on bar ``bar`` (open time, UTC)."""

    side: int
    notional: float
    client_id: str
    bar: pd.Timestamp


@dataclass(frozen=True, slots=True)
class PortfolioBook:
    """The shared bookkeeping of one bot (see the module docstring).

    ``equity``: the book's equity (quote currency); ``day``: the UTC day of the last update, ``day_start_equity``
    its starting equity and ``day_pnl`` the realized PnL booked in it; ``peak_equity``: the highest equity since
    the start or the last resume; ``reservations``: by symbol; ``settled``: the recent exit keys settled, by
    symbol; ``halted``/``halt_reason``/``halted_at``: the kill switch; ``version``: how many times the stored book
    was written (the state layer counts; the pure functions leave it).
    """

    equity: float
    day: date
    day_start_equity: float
    peak_equity: float
    day_pnl: float = 0.0
    reservations: Mapping[str, Reservation] = field(default_factory=dict)
    settled: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    halted: bool = False
    halt_reason: str | None = None
    halted_at: pd.Timestamp | None = None
    version: int = 0

    @property
    def gross(self) -> float:
        """Return the gross reserved notional (quote currency)."""
        return math.fsum(r.notional for r in self.reservations.values())

    @property
    def positions(self) -> int:
        """Return how many symbols hold a reservation."""
        return len(self.reservations)


def _utc(time: pd.Timestamp, what: str) -> pd.Timestamp:
    stamp = pd.Timestamp(time)
    if stamp.tzinfo is None:
        raise DataError(f"{what} must be an aware UTC time; got the naive {stamp}: use tz_localize('UTC')")
    return stamp.tz_convert("UTC")


def _finite(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{what} must be a finite number in quote currency; got {value!r}")
    return float(value)


def new_book(equity: float, at: pd.Timestamp) -> PortfolioBook:
    """Return the empty book of a bot whose equity is ``equity`` on the UTC day of bar ``at``."""
    equity = _finite(equity, "the book's starting equity")
    return PortfolioBook(equity, _utc(at, "the book's start").date(), equity, equity)


def _roll_day(book: PortfolioBook, at: pd.Timestamp) -> PortfolioBook:
    """Return ``book`` in the UTC day of ``at`` (a later day starts from the current equity; never back)."""
    day = _utc(at, "bar time").date()
    if day <= book.day:
        return book
    return dataclasses.replace(book, day=day, day_start_equity=book.equity, day_pnl=0.0)


def check_reservation(
    book: PortfolioBook, symbol: str, notional: float, limits: PortfolioLimits
) -> Approved | Denied:
    """Return whether ``symbol`` may reserve ``notional`` (quote currency) now, with every reason if not.

    The symbol's current reservation, if any, is replaced (a reversal), so it does not count twice. Checks: the
    kill switch, then inputs, then the symbol's cap, the gross cap and the position count (all reported).
    """
    if book.halted:
        return Denied(
            (
                PortfolioDenial(
                    "portfolio_halted",
                    f"the bot's kill switch is engaged since {book.halted_at}: {book.halt_reason}; resume to trade",
                ),
            )
        )
    valid = isinstance(notional, int | float) and not isinstance(notional, bool) and math.isfinite(notional)
    if not symbol or not valid or notional <= 0:
        return Denied(
            (
                PortfolioDenial(
                    "invalid_input", f"a reservation needs a symbol and a notional > 0; got {notional!r}"
                ),
            )
        )
    held = book.reservations.get(symbol)
    others = math.fsum(r.notional for s, r in book.reservations.items() if s != symbol)
    gross = others + notional
    positions = book.positions + (0 if held is not None else 1)
    reasons: list[PortfolioDenial] = []
    if notional > limits.max_symbol_notional * (1 + _LIMIT_TOLERANCE):
        reasons.append(
            PortfolioDenial(
                "max_symbol_notional",
                f"{symbol} notional {notional:.2f} exceeds the per-symbol cap {limits.max_symbol_notional:.2f}",
            )
        )
    cap = limits.gross_cap(book.equity)
    if gross > cap * (1 + _LIMIT_TOLERANCE):
        reasons.append(
            PortfolioDenial(
                "max_gross_exposure",
                f"gross exposure would be {gross:.2f} ({others:.2f} held by other symbols + {notional:.2f}), cap "
                f"{cap:.2f} (min of {limits.max_gross_exposure:g} x equity {book.equity:.2f} and "
                f"{limits.max_gross_notional:g})",
            )
        )
    if limits.max_positions is not None and positions > limits.max_positions:
        reasons.append(
            PortfolioDenial(
                "max_positions",
                f"an entry in {symbol} would make {positions} open positions across the bot, limit "
                f"{limits.max_positions}",
            )
        )
    return Denied(tuple(reasons)) if reasons else Approved(gross, positions)


def reserve(
    book: PortfolioBook, symbol: str, reservation: Reservation, limits: PortfolioLimits
) -> PortfolioBook:
    """Return ``book`` with ``symbol`` holding ``reservation`` (replacing its previous one).

    Idempotent: the same client id already held returns ``book`` unchanged. Raise ``DataError`` when
    :func:`check_reservation` denies it: only an approved reservation is ever written.
    """
    held = book.reservations.get(symbol)
    if held is not None and held.client_id == reservation.client_id:
        return book
    book = _roll_day(book, reservation.bar)
    verdict = check_reservation(book, symbol, reservation.notional, limits)
    if isinstance(verdict, Denied):
        raise DataError(f"reservation of {symbol} refused: {verdict.message}")
    if reservation.side not in (-1, 1):
        raise DataError(f"a reservation's side must be -1 or +1; got {reservation.side!r}")
    reservation = dataclasses.replace(reservation, bar=_utc(reservation.bar, "reservation bar"))
    return dataclasses.replace(book, reservations={**book.reservations, symbol: reservation})


def _book_pnl(
    book: PortfolioBook, symbol: str, key: str, pnl: float, at: pd.Timestamp, limits: PortfolioLimits
) -> PortfolioBook:
    """Return ``book`` with the exit ``key`` of ``symbol`` booked once; engage the kill switch on a breach."""
    done = book.settled.get(symbol, ())
    if key in done:
        return book
    pnl = _finite(pnl, f"the realized pnl of {symbol} exit {key}")
    book = _roll_day(book, at)
    equity = book.equity + pnl
    book = dataclasses.replace(
        book,
        equity=equity,
        day_pnl=book.day_pnl + pnl,
        peak_equity=max(book.peak_equity, equity),
        settled={**book.settled, symbol: (*done, key)[-SETTLED_KEPT:]},
    )
    if book.halted:
        return book
    reason = _breach(book, limits)
    if reason is None:
        return book
    return dataclasses.replace(book, halted=True, halt_reason=reason, halted_at=_utc(at, "bar time"))


def _breach(book: PortfolioBook, limits: PortfolioLimits) -> str | None:
    """Return why the bot's kill switch must engage (``code: details``), or ``None``."""
    daily, drawdown = limits.max_daily_loss, limits.max_drawdown
    if daily is not None and book.day_start_equity > 0:
        loss = -book.day_pnl / book.day_start_equity
        if loss >= daily - _LIMIT_TOLERANCE:
            return (
                f"max_daily_loss: the bot realized {book.day_pnl:.2f} on {book.day.isoformat()} (UTC), "
                f"{loss:.2%} of the day's start {book.day_start_equity:.2f}, limit {daily:.2%}"
            )
    if drawdown is not None and book.peak_equity > 0:
        fall = 1.0 - book.equity / book.peak_equity
        if fall >= drawdown - _LIMIT_TOLERANCE:
            return (
                f"max_drawdown: the bot's equity {book.equity:.2f} is {fall:.2%} below its peak "
                f"{book.peak_equity:.2f}, limit {drawdown:.2%}"
            )
    return None


def settle(
    book: PortfolioBook,
    symbol: str,
    exits: Sequence[tuple[str, float]],
    at: pd.Timestamp,
    limits: PortfolioLimits,
    *,
    held: Reservation | None,
) -> PortfolioBook:
    """Return ``book`` after ``symbol``'s cycle for bar ``at`` reconciled with its broker.

    ``exits``: ``(key, realized pnl)`` of each exit fill reported, oldest first (a key already settled is
    skipped); ``held``: the position open now as a reservation, ``None`` when the symbol is flat. A flat symbol
    gives back a reservation made for an earlier bar (its entry filled and exited, or never filled); one made
    for ``at`` itself is kept (its order goes out at the next open). An open position without a reservation
    is recorded as it is, whatever the limits: it exists.
    """
    for key, pnl in exits:
        book = _book_pnl(book, symbol, key, pnl, at, limits)
    current = book.reservations.get(symbol)
    if held is None and current is not None and current.bar < _utc(at, "bar time"):
        book = _without(book, symbol)
    elif held is not None and current is None:
        book = dataclasses.replace(book, reservations={**book.reservations, symbol: held})
    return book


def release(
    book: PortfolioBook,
    symbol: str,
    realized_pnl: float,
    at: pd.Timestamp,
    limits: PortfolioLimits,
    *,
    key: str,
) -> PortfolioBook:
    """Return ``book`` with ``symbol``'s position closed: its reservation given back, ``realized_pnl`` booked
    once under the exit ``key``."""
    return _without(_book_pnl(book, symbol, key, realized_pnl, at, limits), symbol)


def cancel(book: PortfolioBook, symbol: str, client_id: str) -> PortfolioBook:
    """Return ``book`` without ``symbol``'s reservation when it is the one of ``client_id`` (its order was
    refused); a reservation of another entry is kept."""
    held = book.reservations.get(symbol)
    if held is None or held.client_id != client_id:
        return book
    return _without(book, symbol)


def _without(book: PortfolioBook, symbol: str) -> PortfolioBook:
    if symbol not in book.reservations:
        return book
    return dataclasses.replace(book, reservations={s: r for s, r in book.reservations.items() if s != symbol})


def resume_book(book: PortfolioBook) -> PortfolioBook:
    """Return ``book`` with the kill switch released and the losses so far accepted (the day's start and the
    peak restart from the current equity, as :func:`scalpbot.core.risk.resume` does)."""
    return dataclasses.replace(
        book,
        halted=False,
        halt_reason=None,
        halted_at=None,
        day_start_equity=book.equity,
        day_pnl=0.0,
        peak_equity=book.equity,
    )
