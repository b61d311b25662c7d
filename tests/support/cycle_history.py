"""What a run of a basket bot's symbol cycles committed, checked: the budget's versions, the positions the
ledger's fills show, every decision's outcome, the kill switch and the final books (see
``tests/jobs/test_symbol_cycles_concurrency.py``, which states what each check shows).

Times are bar open times (UTC, 1-minute bars); ``closes`` are the bar closes the run traded, in order, and a
commit's bar is the position in ``closes`` of the close its cycle traded. Notionals are in quote currency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from scalpbot.core.execution import client_order_id
from scalpbot.core.orders import held_bars
from scalpbot.core.portfolio_risk import PortfolioBook, PortfolioLimits
from scalpbot.ports import Store
from scalpbot.state.codec import load
from scalpbot.state.ledger import Ledger, LedgerEvent
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.risk_budget import book_from_dict

from support.symbol_cycles import SymbolRun

__all__ = [
    "HALTED",
    "PORTFOLIO_CODES",
    "Held",
    "book_at",
    "check_decisions",
    "check_final",
    "check_kill_switch",
    "check_positions",
    "committed_books",
    "held_positions",
]

PORTFOLIO_CODES = {"max_gross_exposure", "max_symbol_notional", "max_positions"}
HALTED = "portfolio_halted"
"""Denies a symbol's entry when another symbol's exit engaged the bot's kill switch in the same bar."""


@dataclass(frozen=True, slots=True)
class Held:
    """A position the ledger's fills show: its symbol, entry client id, notional at the fill, and the first and
    last bars (open times) during which it was held (``last`` None: still open)."""

    symbol: str
    client_id: str
    notional: float
    first: pd.Timestamp
    last: pd.Timestamp | None


AT_THE_OPEN = {"time", "signal", "kill"}
"""Exits filled at a bar's open: the position is not held during that bar (stops fill inside it)."""


def held_positions(fills: list[LedgerEvent]) -> list[Held]:
    entries = {e.payload["client_id"]: e for e in fills if e.payload["reason"] == "entry"}
    exits = {e.payload["entry_client_id"]: e for e in fills if e.payload["reason"] != "entry"}
    step = pd.Timedelta(minutes=1)

    def last(client_id: str) -> pd.Timestamp | None:
        fill = exits.get(client_id)
        if fill is None:
            return None
        return fill.time - step if fill.payload["reason"] in AT_THE_OPEN else fill.time

    return [
        Held(e.payload["symbol"], cid, float(e.payload["qty"]) * float(e.payload["price"]), e.time, last(cid))
        for cid, e in entries.items()
    ]


def committed_books(
    runs: Sequence[SymbolRun], portfolio: Mapping[str, Any]
) -> list[tuple[int, PortfolioBook]]:
    """Return every book the workers committed with the bar it was written in, in version order; check that the
    versions form one chain written bar by bar, and that no book breaks the ``[portfolio]`` limits."""
    commits = sorted(
        ((bar, book_from_dict(load(data, "budget"))) for run in runs for bar, data in run.committed),
        key=lambda c: c[1].version,
    )
    versions = [book.version for _, book in commits]
    assert versions == list(range(1, len(versions) + 1)), f"versions lost or doubled: {versions}"
    bars = [bar for bar, _ in commits]
    assert bars == sorted(bars), "a later bar's cycle wrote before an earlier bar's was done"
    limits = PortfolioLimits(**portfolio)
    previous_gross = 0.0
    for _, book in commits:
        # The cap follows the book's realized equity: a symbol closing at a loss lowers it under the positions
        # the others already hold, and those stay (they were reserved under the cap of their time). What
        # must never happen is a commit that raises the gross above the cap of its own equity.
        cap = limits.gross_cap(book.equity)
        assert book.gross <= cap * (1 + 1e-9) or book.gross <= previous_gross * (1 + 1e-12), (
            f"version {book.version}: gross {book.gross:.2f} > cap {cap:.2f} (was {previous_gross:.2f})"
        )
        previous_gross = book.gross
        assert book.positions <= (limits.max_positions or 0), f"version {book.version}: {book.positions} open"
        for symbol, held in book.reservations.items():
            assert held.notional <= limits.max_symbol_notional * (1 + 1e-9), f"{symbol} over its cap"
    return commits


def book_at(commits: list[tuple[int, PortfolioBook]], before: int) -> PortfolioBook | None:
    """Return the book as it stood once every cycle of the bars before position ``before`` was done."""
    done = [book for bar, book in commits if bar < before]
    return done[-1] if done else None


def check_positions(
    commits: list[tuple[int, PortfolioBook]],
    held: list[Held],
    closes: list[pd.Timestamp],
    markets: dict[str, pd.DataFrame],
) -> None:
    """Every position held during a bar was reserved in the book as it stood when that bar opened.

    An entry from flat fills at most its reserved notional (``size`` x the equity it was decided on). One that
    re-enters at the open where the symbol's previous position closed (a time stop) spends the equity after
    that exit, which has moved with the previous position from the decision's close to that open: the bound
    grows by that move, never by more.
    """
    step = pd.Timedelta(minutes=1)
    exits_at_open = {(p.symbol, p.last + step) for p in held if p.last is not None}
    for k, close in enumerate(closes):
        bar = close - step  # the bar traded at close k, whose open saw the entries decided at k - 1
        book = book_at(commits, k)
        for position in held:
            if position.first > bar or (position.last is not None and position.last < bar):
                continue
            assert book is not None, f"{position.symbol} held a position at {bar} before any reservation"
            reserved = book.reservations.get(position.symbol)
            assert reserved is not None, f"{position.symbol} held a position at {bar} without a reservation"
            assert reserved.client_id == position.client_id, (
                f"{position.symbol} held entry {position.client_id} at {bar}, the budget reserved "
                f"{reserved.client_id} (decided {reserved.bar})"
            )
            bars = markets[position.symbol]
            opens, closes_ = bars["open"], bars["close"]
            move = float(opens.loc[position.first]) / float(closes_.loc[position.first - step])
            slack = max(move, 1.0) if (position.symbol, position.first) in exits_at_open else 1.0
            assert position.notional <= reserved.notional * slack * (1 + 1e-9), (
                f"{position.symbol} entry {position.client_id} filled {position.notional:.2f}, reserved "
                f"{reserved.notional:.2f}"
            )


def check_decisions(
    bot: str,
    events: list[LedgerEvent],
    commits: list[tuple[int, PortfolioBook]],
    held: list[Held],
    closes: list[pd.Timestamp],
    *,
    max_positions: int,
    max_holds: Mapping[str, int],
) -> None:
    """Every decision was reserved and sent, denied with its reasons, or taken on a position held that way."""
    reserved = {r.client_id for _, book in commits for r in book.reservations.values()}
    denials = {(e.payload["symbol"], e.time): e.payload for e in events if e.kind == "denial"}
    sent = {
        e.payload["client_id"] for e in events if e.kind == "order_ack" and e.payload["intent"] == "entry"
    }
    for decision in (e for e in events if e.kind == "decision"):
        symbol, bar = decision.payload["symbol"], decision.time
        entry = client_order_id(bot, symbol, bar, "entry")
        denial = denials.get((symbol, bar))
        max_hold = max_holds[symbol]
        holding = [
            p for p in held if p.symbol == symbol and p.first <= bar and (p.last is None or p.last >= bar)
        ]
        if entry in reserved:
            assert denial is None and entry in sent, f"{symbol} at {bar}: reserved but not sent"
        elif denial is not None:
            assert denial["code"] and denial["message"], denial
            if denial.get("scope") == "portfolio":
                codes = {r["code"] for r in denial["reasons"]}
                assert codes and codes <= {*PORTFOLIO_CODES, HALTED} and denial["code"] in codes, denial
                if HALTED in codes:
                    assert any(book.halted for _, book in commits), denial
                if "max_positions" in codes:
                    k = closes.index(bar + pd.Timedelta(minutes=1))
                    seen = [book for at, book in commits if at == k] + [book_at(commits, k)]
                    assert any(
                        b is not None and len(set(b.reservations) - {symbol}) >= max_positions for b in seen
                    ), f"{symbol} at {bar} denied for max_positions, but no book it could see was full"
        else:
            assert holding, f"{symbol} at {bar}: decided long, neither reserved nor denied nor holding"
            due = max_hold > 0 and held_bars(holding[0].first, bar, 60) >= max_hold
            assert not due, f"{symbol} at {bar}: re-entered at its time stop without a reservation"
    for symbol, bar in denials:
        assert (symbol, bar) in {(e.payload["symbol"], e.time) for e in events if e.kind == "decision"}


def check_kill_switch(
    commits: list[tuple[int, PortfolioBook]], events: list[LedgerEvent], halted: bool
) -> None:
    """Once the bot's kill switch engaged no book reserves anything new, and it is recorded once for the bot."""
    engaged = [book for _, book in commits if book.halted]
    halts = [e for e in events if e.kind == "halt"]
    assert halted == bool(engaged), "a cycle reported halted without the budget's kill switch, or the reverse"
    if not engaged:
        assert not halts
        return
    first = engaged[0]
    assert all(book.halted for _, book in commits if book.version >= first.version), "resumed by itself"
    for _, book in commits:
        if book.version > first.version:
            new = {r.client_id for r in book.reservations.values()}
            assert new <= {r.client_id for r in first.reservations.values()}, "reserved after the kill switch"
    assert [(e.time, e.payload) for e in halts] == [
        (first.halted_at, {"reason": f"portfolio {first.halt_reason}"})
    ]


def check_final(
    store: Store,
    bot: str,
    symbols: Sequence[str],
    events: list[LedgerEvent],
    commits: list[tuple[int, PortfolioBook]],
    *,
    last: pd.Timestamp,
    equity: float,
) -> None:
    """The final books agree with the ledger and each symbol's snapshot after the cycles of bar ``last`` (no
    book: nothing was ever reserved); ``equity``: the budget's start, quote currency."""
    final = commits[-1][1] if commits else None
    reserved = {r.client_id for _, book in commits for r in book.reservations.values()}
    expected = {}
    for symbol in symbols:
        stored = PortfolioStore(store, bot, symbol).load()
        assert stored is not None and stored.snapshot.last_bar_time == last
        position = stored.snapshot.position
        if position is not None:
            expected[symbol] = position.entry_client_id
    pending = {
        e.payload["symbol"]: e.payload["client_id"]
        for e in events
        if e.kind == "order_ack" and e.payload["intent"] == "entry" and e.time == last
    }
    # An entry sent on the last bar (from flat, or re-entering at a time stop) holds the symbol's reservation.
    expected.update({s: cid for s, cid in pending.items() if cid in reserved})
    reservations = {} if final is None else dict(final.reservations)
    assert {s: r.client_id for s, r in reservations.items()} == expected, (
        "the budget's reservations are not the symbols' positions and entries sent"
    )
    pnl = [float(e.payload["pnl"]) for e in events if e.kind == "fill" and e.payload["reason"] != "entry"]
    assert (equity if final is None else final.equity) == pytest.approx(equity + sum(pnl), abs=1e-6)
    ledger = Ledger(store, bot)
    for symbol in symbols:
        ledger.trades(symbol=symbol)  # raises on a gap or a conflict in the symbol's fills
