"""The stored risk budget: round trip, idempotent changes, a lost race retried, a crash after any write rerun."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import pandas as pd
import pytest

from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.core.portfolio_risk import Approved, Denied, PortfolioBook, PortfolioLimits, Reservation
from scalpbot.errors import CorruptArtifactError, PreconditionFailed
from scalpbot.ports import Store, StoredObject
from scalpbot.state.risk_budget import RiskBudget, book_from_dict, book_to_dict

from support.stores import Crash, RecordingStore

T0 = pd.Timestamp("2025-03-03T10:00:00Z")
BAR = pd.Timedelta(minutes=1)
LIMITS = PortfolioLimits(max_gross_notional=3_000.0, max_symbol_notional=2_000.0, max_positions=2)
KEY = "state/bot/portfolio_risk.json"
Exits = Sequence[tuple[str, float]]


def _budget(store: Store, **kwargs: object) -> RiskBudget:
    return RiskBudget(store, "bot", LIMITS, sleep=lambda _: None, **kwargs)  # type: ignore[arg-type]


def _enter(budget: RiskBudget, symbol: str, notional: float, k: int = 0) -> Approved | Denied:
    verdict, _ = budget.reserve(
        symbol, side=1, notional=notional, client_id=f"{symbol}-{k}", bar=T0 + k * BAR, equity=10_000.0
    )
    return verdict


def test_the_book_round_trips_exactly() -> None:
    store = MemoryStore()
    budget = _budget(store)
    _enter(budget, "BTC/USDT", 1_234.5678)
    budget.settle("ETH/USDT", exits=[("e:sl", -0.1)], held=None, at=T0 + BAR, equity=10_000.0)
    book = budget.load()
    assert book is not None
    assert book_from_dict(book_to_dict(book)) == book
    assert (book.version, book.equity, book.reservations["BTC/USDT"].notional) == (2, 9_999.9, 1_234.5678)


def test_a_reservation_is_written_once_and_a_retry_writes_nothing() -> None:
    store = RecordingStore(MemoryStore())
    budget = _budget(store)
    assert isinstance(_enter(budget, "BTC/USDT", 1_000.0), Approved)
    assert isinstance(_enter(budget, "BTC/USDT", 1_000.0), Approved)  # the retried cycle
    assert store.writes == [KEY]


def test_a_denied_reservation_writes_nothing_and_says_why() -> None:
    store = RecordingStore(MemoryStore())
    budget = _budget(store)
    _enter(budget, "BTC/USDT", 2_000.0)
    verdict = _enter(budget, "ETH/USDT", 1_500.0)
    assert isinstance(verdict, Denied) and verdict.code == "max_gross_exposure"
    assert store.writes == [KEY]


def test_nothing_is_written_for_a_flat_symbol_with_nothing_to_settle() -> None:
    store = RecordingStore(MemoryStore())
    commit = _budget(store).settle("BTC/USDT", exits=[], held=None, at=T0, equity=10_000.0)
    assert (commit.book, commit.written, store.writes) == (None, False, [])


def test_a_first_settle_starts_the_book_so_that_it_ends_at_the_brokers_equity() -> None:
    budget = _budget(MemoryStore())
    commit = budget.settle("BTC/USDT", exits=[("a:tp", 40.0)], held=None, at=T0, equity=10_040.0)
    assert commit.book is not None and commit.book.equity == 10_040.0


def test_a_refused_entry_gives_its_reservation_back_and_only_its_own() -> None:
    budget = _budget(MemoryStore())
    _enter(budget, "BTC/USDT", 1_000.0)
    assert not budget.cancel("BTC/USDT", "another entry").written
    assert budget.cancel("BTC/USDT", "BTC/USDT-0").written
    book = budget.load()
    assert book is not None and book.positions == 0


class _Interloper:
    """A store on which another symbol's cycle commits between each read and write of ours, ``times`` times."""

    def __init__(self, inner: MemoryStore, times: int) -> None:
        self.inner = inner
        self.times = times
        self.other = RiskBudget(inner, "bot", LIMITS)
        self.k = 0

    def get(self, key: str) -> StoredObject:
        found = self.inner.get(key)
        if self.times > 0:
            self.times -= 1
            self.k += 1
            self.other.settle("ETH/USDT", exits=[(f"e{self.k}", 1.0)], held=None, at=T0, equity=10_000.0)
        return found

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_lost_race_is_retried_on_the_newer_book_and_nothing_is_lost() -> None:
    inner = MemoryStore()
    _budget(inner).settle("ETH/USDT", exits=[("e0", 1.0)], held=None, at=T0, equity=10_001.0)
    store = _Interloper(inner, times=3)
    assert isinstance(_enter(_budget(store), "BTC/USDT", 1_000.0), Approved)  # type: ignore[arg-type]
    book = _budget(inner).load()
    assert book is not None
    assert (book.version, book.equity, set(book.reservations)) == (5, 10_004.0, {"BTC/USDT"})


def test_endless_contention_gives_up_after_the_attempts_and_changes_nothing() -> None:
    inner = MemoryStore()
    _budget(inner).settle("ETH/USDT", exits=[("e0", 1.0)], held=None, at=T0, equity=10_001.0)
    store = _Interloper(inner, times=100)
    with pytest.raises(PreconditionFailed, match="changed under each of 5 attempts"):
        _enter(_budget(store, attempts=5), "BTC/USDT", 1_000.0)  # type: ignore[arg-type]
    book = _budget(inner).load()
    assert book is not None and "BTC/USDT" not in book.reservations


def test_an_unreadable_book_is_refused() -> None:
    store = MemoryStore()
    store.put(KEY, b'{"v": 1, "equity": 1}')
    with pytest.raises(CorruptArtifactError, match="malformed"):
        _budget(store).load()


def _cycles(store: Store) -> list[Callable[[], object]]:
    """Symbol cycles in bar order, each as the execute cycle does it: settle, then reserve an entry (or not)."""
    budget = _budget(store)

    def cycle(
        symbol: str, k: int, notional: float | None, *, exits: Exits = (), refused: bool = False
    ) -> None:
        held = Reservation(-1, 700.0, "xrp-old", T0) if symbol == "XRP/USDT" else None
        budget.settle(symbol, exits=list(exits), held=held, at=T0 + k * BAR, equity=10_000.0)
        if notional is not None and isinstance(_enter(budget, symbol, notional, k), Approved) and refused:
            budget.cancel(symbol, f"{symbol}-{k}")
        store.put(
            f"state/bot/done/{symbol.replace('/', '_')}-{k}", b""
        )  # the cycle's last write (the snapshot)

    return [
        lambda: cycle("BTC/USDT", 1, 1_500.0),
        lambda: cycle("ETH/USDT", 1, 1_000.0),
        lambda: cycle("SOL/USDT", 1, 400.0),  # denied: two positions are open
        lambda: cycle("BTC/USDT", 2, None, exits=[("b:tp", 30.0)]),
        lambda: cycle("SOL/USDT", 2, 400.0, refused=True),
        lambda: cycle("XRP/USDT", 3, None),  # a position found open without a reservation
    ]


AFTER_THE_REFUSAL = 9
"""Writes before a kill right after the refused entry gave its reservation back (before its cycle ended)."""


def _content(store: Store) -> PortfolioBook:
    book = _budget(store).load()
    assert book is not None
    return dataclasses.replace(book, version=0)


def _run_until_killed(cycles: list[Callable[[], object]]) -> int:
    """Run the cycles until the store's simulated kill; return how many completed."""
    for done, run in enumerate(cycles):
        try:
            run()
        except Crash:
            return done
    raise AssertionError("the run was never killed")


def test_killed_after_any_write_and_run_again_the_budget_ends_as_an_uninterrupted_run() -> None:
    clean = RecordingStore(MemoryStore())
    for run in _cycles(clean):
        run()
    expected = clean.inner.get(KEY).data
    assert len(clean.writes) == 12  # 6 to the budget, 6 cycles ended
    for crash_after in range(len(clean.writes)):
        store = MemoryStore()
        done = _run_until_killed(_cycles(RecordingStore(store, fail_after_writes=crash_after)))
        for run in _cycles(store)[done:]:  # the killed cycle runs again, then the others
            run()
        if crash_after != AFTER_THE_REFUSAL:
            assert store.get(KEY).data == expected, f"crashed after write {crash_after}"
        else:  # the rerun reserves and gives back again: the same book, two more writes counted
            assert _content(store) == _content(clean.inner)
            assert store.get(KEY).data != expected


def test_a_non_finite_equity_is_never_written() -> None:
    budget = _budget(MemoryStore())
    with pytest.raises(Exception, match="finite"):
        budget.settle("BTC/USDT", exits=[("a", math.inf)], held=None, at=T0, equity=10_000.0)
