"""Many symbol cycles on one bot's risk budget at once never exceed its caps, lose or double a reservation.

N symbols (2 to 6) run random entries (random notionals) and exits (random PnL) against one bot's budget at
the same time - in threads and in spawned processes, on the folder store and on the S3 store (the moto
server). Every book any of them committed is checked (gross exposure, per-symbol notional and open positions
within the limits), the committed versions form one chain 1..V with no gap and no repeat (no write was lost
to another on the same base), and replaying the committed operations in version order with the pure
functions reproduces every committed book: the final book is exactly the initial one plus every approved
reservation less every release, with every exit's PnL booked once.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalpbot.adapters.store import S3Store
from scalpbot.adapters.store.folder import FolderStore
from scalpbot.core.portfolio_risk import (
    Approved,
    PortfolioBook,
    PortfolioLimits,
    Reservation,
    check_reservation,
    new_book,
    reserve,
    settle,
)
from scalpbot.errors import PreconditionFailed
from scalpbot.ports import Store
from scalpbot.state.codec import dump
from scalpbot.state.risk_budget import RiskBudget, book_from_dict, book_to_dict

from support.budget_workers import EQUITY, T0, Commit, Op, StoreSpec, bar, run_symbol
from support.moto_server import MotoServer

pytestmark = pytest.mark.slow

LIMITS: dict[str, Any] = {
    "max_gross_exposure": 0.05,  # 500 at 10,000; at least 320 after the worst losses drawn: the 250 binds
    "max_gross_notional": 250.0,
    "max_symbol_notional": 100.0,
    "max_positions": 3,
}
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT")
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("enter"), st.floats(10.0, 120.0, allow_nan=False)),
        st.tuples(st.just("exit"), st.floats(-50.0, 50.0, allow_nan=False)),
    ),
    min_size=1,
    max_size=12,
)
SCHEDULES = st.integers(2, 6).flatmap(lambda n: st.lists(OPS, min_size=n, max_size=n))

Runner = Callable[[StoreSpec, str, list[list[Op]]], list[Commit]]


def _start(store: Store, bot: str) -> PortfolioBook:
    """Write the bot's empty book (version 0) before the workers start, and return it."""
    book = new_book(EQUITY, T0)
    store.put_if_absent(f"state/{bot}/portfolio_risk.json", dump(book_to_dict(book)))
    return book


def _apply(book: PortfolioBook, op: dict[str, Any], limits: PortfolioLimits) -> PortfolioBook:
    """Replay one committed operation with the pure functions."""
    symbol = op["symbol"]
    if op["kind"] == "enter":
        assert op["approved"], "a denied reservation was written"
        assert isinstance(check_reservation(book, symbol, op["notional"], limits), Approved)
        reservation = Reservation(1, op["notional"], op["client_id"], bar(op["bar"]))
        return reserve(book, symbol, reservation, limits)
    return settle(book, symbol, [(op["key"], op["pnl"])], bar(op["bar"]), limits, held=None)


def _check_history(
    initial: PortfolioBook, final: PortfolioBook, commits: list[Commit], schedule: list[list[Op]]
) -> None:
    limits = PortfolioLimits(**LIMITS)
    ordered = sorted(commits, key=lambda c: c["version"])
    assert [c["version"] for c in ordered] == list(range(1, len(ordered) + 1)), "a write was lost or doubled"
    assert final.version == len(ordered)
    book = initial
    for commit in ordered:
        committed = book_from_dict(commit["book"])
        assert committed.gross <= limits.gross_cap(committed.equity) + 1e-6
        assert committed.gross <= LIMITS["max_gross_notional"] + 1e-6
        assert committed.positions <= LIMITS["max_positions"]
        assert all(
            r.notional <= LIMITS["max_symbol_notional"] + 1e-6 for r in committed.reservations.values()
        )
        book = dataclasses.replace(_apply(book, commit["op"], limits), version=commit["version"])
        assert book == committed, (
            f"version {commit['version']} is not its operation on version {book.version - 1}"
        )
    assert book == final
    # Nothing lost, nothing doubled: every exit booked once, every symbol holds what its last operations left.
    pnl = sum(amount for ops in schedule for kind, amount in ops if kind == "exit")
    assert final.equity == pytest.approx(EQUITY + pnl, abs=1e-6)
    reserved = {
        c["op"]["symbol"]: c["op"]["client_id"]
        for c in ordered
        if c["op"]["kind"] == "enter" and c["op"]["bar"] > _last_exit(schedule, c["op"]["symbol"])
    }
    assert {s: r.client_id for s, r in final.reservations.items()} == reserved


def _last_exit(schedule: list[list[Op]], symbol: str) -> int:
    ops = schedule[SYMBOLS.index(symbol)]
    return max((k for k, (kind, _) in enumerate(ops, start=1) if kind == "exit"), default=0)


def _threads(spec: StoreSpec, bot: str, schedule: list[list[Op]]) -> list[Commit]:
    results: dict[int, list[Commit]] = {}
    errors: list[BaseException] = []
    start_at = time.time() + 0.05

    def work(i: int) -> None:
        try:
            results[i] = run_symbol(spec, bot, LIMITS, SYMBOLS[i], schedule[i], start_at)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(schedule))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return [c for i in sorted(results) for c in results[i]]


@pytest.fixture(scope="module")
def spawned() -> Iterator[ProcessPoolExecutor]:
    """Six worker processes started with ``spawn`` (fresh interpreters, as separate Lambda invocations are)."""
    with ProcessPoolExecutor(6, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(time.sleep, [0.2] * 6))  # started and importable before the clock runs
        yield pool


def _processes(pool: ProcessPoolExecutor) -> Runner:
    def run(spec: StoreSpec, bot: str, schedule: list[list[Op]]) -> list[Commit]:
        start_at = time.time() + 0.3
        futures: list[Future[list[Commit]]] = [
            pool.submit(run_symbol, spec, bot, LIMITS, SYMBOLS[i], ops, start_at)
            for i, ops in enumerate(schedule)
        ]
        return [c for future in futures for c in future.result(timeout=120)]

    return run


def _run(store: Store, spec: StoreSpec, runner: Runner, schedule: list[list[Op]]) -> None:
    bot = f"b{uuid.uuid4().hex[:10]}"
    initial = _start(store, bot)
    commits = runner(spec, bot, schedule)
    final = RiskBudget(store, bot, PortfolioLimits(**LIMITS)).load()
    assert final is not None
    _check_history(initial, final, commits, schedule)


def _folder(tmp_path: Path) -> tuple[Store, StoreSpec]:
    return FolderStore(tmp_path / "store"), StoreSpec("folder", root=str(tmp_path / "store"))


def _s3(s3_store: S3Store, endpoint_url: str) -> tuple[Store, StoreSpec]:
    spec = StoreSpec("s3", endpoint_url=endpoint_url, bucket=s3_store.bucket, prefix="contract")
    return s3_store, spec


ONE_STORE = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
"""Every example writes a new bot into the test's one store, so a function-scoped store is fine."""


@settings(max_examples=25, deadline=None, suppress_health_check=ONE_STORE)
@given(schedule=SCHEDULES)
def test_symbol_threads_on_the_folder_store_never_exceed_the_budget(
    tmp_path: Path, schedule: list[list[Op]]
) -> None:
    store, spec = _folder(tmp_path)
    _run(store, spec, _threads, schedule)


@settings(max_examples=10, deadline=None, suppress_health_check=ONE_STORE)
@given(schedule=SCHEDULES)
def test_symbol_threads_on_the_s3_store_never_exceed_the_budget(
    s3_store: S3Store, moto_server: MotoServer, schedule: list[list[Op]]
) -> None:
    store, spec = _s3(s3_store, moto_server.endpoint_url)
    _run(store, spec, _threads, schedule)


@settings(max_examples=4, deadline=None, suppress_health_check=ONE_STORE)
@given(schedule=SCHEDULES)
def test_symbol_processes_on_the_folder_store_never_exceed_the_budget(
    tmp_path: Path, spawned: ProcessPoolExecutor, schedule: list[list[Op]]
) -> None:
    store, spec = _folder(tmp_path)
    _run(store, spec, _processes(spawned), schedule)


@settings(max_examples=3, deadline=None, suppress_health_check=ONE_STORE)
@given(schedule=SCHEDULES)
def test_symbol_processes_on_the_s3_store_never_exceed_the_budget(
    s3_store: S3Store, moto_server: MotoServer, spawned: ProcessPoolExecutor, schedule: list[list[Op]]
) -> None:
    store, spec = _s3(s3_store, moto_server.endpoint_url)
    _run(store, spec, _processes(spawned), schedule)


def test_the_workers_really_contend() -> None:
    """The history check can fail: a book that lost a write to a concurrent one is caught."""
    limits = PortfolioLimits(**LIMITS)
    initial = new_book(EQUITY, T0)
    first = reserve(initial, "BTC/USDT", Reservation(1, 90.0, "BTC/USDT-1", bar(1)), limits)
    lost = reserve(initial, "ETH/USDT", Reservation(1, 90.0, "ETH/USDT-1", bar(1)), limits)  # same base
    commits = [
        {
            "version": 1,
            "op": _op("BTC/USDT", 90.0),
            "book": book_to_dict(dataclasses.replace(first, version=1)),
        },
        {
            "version": 2,
            "op": _op("ETH/USDT", 90.0),
            "book": book_to_dict(dataclasses.replace(lost, version=2)),
        },
    ]
    schedule = [[("enter", 90.0)], [("enter", 90.0)]]
    with pytest.raises(AssertionError, match="version 2"):
        _check_history(initial, dataclasses.replace(lost, version=2), commits, schedule)


def _op(symbol: str, notional: float) -> dict[str, Any]:
    return {
        "kind": "enter",
        "symbol": symbol,
        "notional": notional,
        "client_id": f"{symbol}-1",
        "bar": 1,
        "approved": True,
    }


def test_the_symbol_threads_really_race_for_the_book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compare-and-swap writes are lost and retried in these runs: the guarantee is exercised, not assumed."""
    lost: list[str] = []
    put_if_match = FolderStore.put_if_match

    def counting(self: FolderStore, key: str, data: bytes, etag: str) -> str:
        try:
            return put_if_match(self, key, data, etag)
        except PreconditionFailed:
            lost.append(key)
            raise

    monkeypatch.setattr(FolderStore, "put_if_match", counting)
    schedule: list[list[Op]] = [
        [("enter", 60.0 + i), ("exit", 1.0), ("enter", 70.0 + i), ("exit", -1.0)] * 3 for i in range(6)
    ]
    store, spec = _folder(tmp_path)
    _run(store, spec, _threads, schedule)
    assert lost, "no write was ever lost to another symbol's: the threads did not overlap"
