"""The symbols of one bot, each running its whole execute cycle at the same bar close, never break its budget.

N symbols (3 to 6) of one bot trade random walks with shocks (drawn by hypothesis, one per symbol) bar after
bar, each through its own :class:`~scalpbot.jobs.trading.BarTrader` - the paper broker, a release current in the
store, its own snapshot, lease and paper account, the bot's one ledger and one risk budget - in threads and in
spawned processes, on the folder store and on S3 (the moto server). A barrier holds every bar close until all
symbols finished the previous one, so the cycles of one bar race each other for the budget and the ledger. Every
release wants to be long on every bar, and the ``[portfolio]`` caps are tight, so the caps bind on most bars.

Checked after each run, from what the store committed (every version of the budget, the ledger's events and
each symbol's final snapshot):

* the budget's versions form one chain 1..V (no write lost to another on the same base), written bar by bar;
* no committed book exceeds the gross cap, the per-symbol cap or the number of open positions;
* every position the ledger's fills show open during a bar was reserved, under its entry's client id and for
  at least its notional, in the book as it stood when that bar opened - so the positions actually held never
  outnumber ``max_positions`` nor exceed the gross cap either;
* every decision was either reserved and sent, or denied with its reasons in a ``denial`` event, or taken
  while the symbol already held a position that way whose time stop was not due (a re-entry at a time stop is
  an entry: reserved or denied); a ``max_positions`` denial saw that many other symbols holding one;
* when the bot's kill switch engages (a ``max_daily_loss`` is drawn in some runs) it is recorded once for the
  bot, and no book reserves anything new after it;
* at the end the books agree with the ledger: each symbol's open position holds the budget's reservation and
  nothing else is reserved but entries sent on the last bar; the book's equity is its start plus every exit's
  realized PnL in the ledger; every symbol's fills rebuild into trades without a gap.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from scalpbot.adapters.store import S3Store
from scalpbot.adapters.store.folder import FolderStore
from scalpbot.core.execution import client_order_id
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.orders import held_bars
from scalpbot.core.portfolio_risk import PortfolioBook, PortfolioLimits, Reservation, new_book
from scalpbot.errors import PreconditionFailed
from scalpbot.ports import Store
from scalpbot.state.codec import dump, load
from scalpbot.state.ledger import Ledger, LedgerEvent
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.state.risk_budget import RiskBudget, book_from_dict, book_to_dict

from support.budget_workers import StoreSpec
from support.moto_server import MotoServer
from support.symbol_cycles import EdgeRelease, SymbolRun, publish_release, trade_symbol

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT")
PRICES = dict(zip(SYMBOLS, (60_000.0, 3_000.0, 150.0, 0.6, 0.45, 0.15), strict=True))
START = pd.Timestamp("2025-03-03T00:00:00Z")
EQUITY = 10_000.0  # backtest.initial_equity: each symbol's paper account, and the budget's start
PORTFOLIO_CODES = {"max_gross_exposure", "max_symbol_notional", "max_positions"}
HALTED = "portfolio_halted"
"""Denies a symbol's entry when another symbol's exit engaged the bot's kill switch in the same bar."""


@dataclass(frozen=True, slots=True)
class Walk:
    """One symbol's market and release: a seeded random walk with shocks (gaps at the open of trading bars,
    log returns) and a release long on every bar with ``p_long``, sized up to ``max_position`` of equity."""

    seed: int
    sigma: float
    shocks: tuple[tuple[int, float], ...]
    p_long: float
    vol: float
    max_position: float
    max_hold: int

    def bars(self, price: float, trading: int) -> pd.DataFrame:
        """Return ``FEATURE_WINDOW`` bars of history then ``trading`` bars, 1-minute, from ``START``."""
        n = FEATURE_WINDOW + trading
        rng = np.random.default_rng(self.seed)
        gaps = np.zeros(n)
        for k, size in self.shocks:
            gaps[FEATURE_WINDOW + k] += size
        moves = rng.normal(0.0, self.sigma, n)
        wicks = np.abs(rng.normal(0.0, self.sigma, (2, n)))
        close = price * np.exp(np.cumsum(gaps + moves))
        open_ = close * np.exp(-moves)
        high = np.maximum(open_, close) * np.exp(wicks[0])
        low = np.minimum(open_, close) * np.exp(-wicks[1])
        index = pd.date_range(START, periods=n, freq="1min", tz="UTC", name="timestamp")
        volume = rng.uniform(1.0, 100.0, n)
        return pd.DataFrame(
            {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
        )

    def release(self) -> EdgeRelease:
        p_short = (1.0 - self.p_long) / 4
        params = {
            "entry_threshold": 0.1,
            "min_confidence": 0.0,
            "sl_mult": 1.0,
            "tp_mult": 1.5,
            "risk_per_trade": 0.05,
            "max_position": self.max_position,
            "max_hold": self.max_hold,
            "full_size_edge": 0.0,
        }
        return EdgeRelease((p_short, 1.0 - self.p_long - p_short, self.p_long), self.vol, params)


@dataclass(frozen=True, slots=True)
class Case:
    """One example: the ``[portfolio]`` limits, the number of bars traded and one walk per symbol."""

    portfolio: dict[str, Any]
    trading: int
    walks: tuple[Walk, ...]

    @property
    def symbols(self) -> tuple[str, ...]:
        return SYMBOLS[: len(self.walks)]


def _walks(trading: int, symbols: tuple[int, int]) -> st.SearchStrategy[tuple[Walk, ...]]:
    walk = st.builds(
        Walk,
        seed=st.integers(0, 2**32 - 1),
        sigma=st.floats(0.0005, 0.004),
        shocks=st.lists(st.tuples(st.integers(0, trading - 1), st.floats(-0.04, 0.04)), max_size=3).map(
            tuple
        ),
        p_long=st.floats(0.6, 0.95),
        vol=st.floats(0.001, 0.004),
        max_position=st.floats(0.15, 0.45),
        max_hold=st.integers(0, 4),
    )
    return st.lists(walk, min_size=symbols[0], max_size=symbols[1]).map(tuple)


def cases(bars: tuple[int, int], symbols: tuple[int, int]) -> st.SearchStrategy[Case]:
    """Tight caps (a few symbols' entries fill them), ``bars`` and ``symbols`` within the bounds given."""
    portfolio = st.fixed_dictionaries(
        {
            "max_gross_exposure": st.floats(0.3, 1.0),
            "max_symbol_notional": st.floats(2_000.0, 4_000.0),
            "max_positions": st.integers(1, 3),
        },
        optional={
            "max_gross_notional": st.floats(3_000.0, 8_000.0),
            "max_daily_loss": st.floats(0.0005, 0.005),  # the bot's kill switch engages in some runs
        },
    )
    return st.integers(*bars).flatmap(
        lambda trading: st.builds(Case, portfolio, st.just(trading), _walks(trading, symbols))
    )


Runner = Callable[[StoreSpec, str, Case, dict[str, pd.DataFrame]], list[SymbolRun]]


def _closes(case: Case) -> list[pd.Timestamp]:
    """Every bar close from the first that has a full feature window to the last bar's."""
    first = START + pd.Timedelta(minutes=FEATURE_WINDOW)
    return list(pd.date_range(first, periods=case.trading + 1, freq="1min", tz="UTC"))


def _markets(case: Case) -> dict[str, pd.DataFrame]:
    return {
        s: w.bars(PRICES.get(s, 0.15), case.trading) for s, w in zip(case.symbols, case.walks, strict=True)
    }


def _threads(spec: StoreSpec, bot: str, case: Case, markets: dict[str, pd.DataFrame]) -> list[SymbolRun]:
    barrier = threading.Barrier(len(case.symbols))
    closes = _closes(case)
    runs: dict[str, SymbolRun] = {}
    errors: list[BaseException] = []

    def work(symbol: str) -> None:
        try:
            runs[symbol] = trade_symbol(
                spec, bot, case.symbols, case.portfolio, symbol, markets[symbol], closes, barrier
            )
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in case.symbols]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return [runs[s] for s in case.symbols]


def _processes(pool: ProcessPoolExecutor) -> Runner:
    def run(spec: StoreSpec, bot: str, case: Case, markets: dict[str, pd.DataFrame]) -> list[SymbolRun]:
        closes = _closes(case)
        with multiprocessing.get_context("spawn").Manager() as manager:
            barrier = manager.Barrier(len(case.symbols))
            futures: list[Future[SymbolRun]] = [
                pool.submit(
                    trade_symbol, spec, bot, case.symbols, case.portfolio, s, markets[s], closes, barrier
                )
                for s in case.symbols
            ]
            return [future.result(timeout=300) for future in futures]

    return run


def _warm() -> None:
    """Import the execute path and load its compiled kernels in a worker before the runs start."""
    import scalpbot.jobs.trading
    import scalpbot.wiring  # noqa: F401

    import support.symbol_cycles  # noqa: F401


@pytest.fixture(scope="module")
def spawned() -> Iterator[ProcessPoolExecutor]:
    """Six worker processes started with ``spawn`` (fresh interpreters, as separate Lambda invocations are)."""
    with ProcessPoolExecutor(6, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_warm_after, [0.2] * 6))
        yield pool


def _warm_after(seconds: float) -> None:
    _warm()
    time.sleep(seconds)  # each worker takes one, so that all six start


# ---------------------------------------------------------------------------------------------- the checks


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


def _positions(fills: list[LedgerEvent]) -> list[Held]:
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


def _history(runs: list[SymbolRun], case: Case) -> list[tuple[int, PortfolioBook]]:
    """Return every committed book with the bar it was written in, in version order; check the chain."""
    commits = sorted(
        ((bar, book_from_dict(load(data, "budget"))) for run in runs for bar, data in run.committed),
        key=lambda c: c[1].version,
    )
    versions = [book.version for _, book in commits]
    assert versions == list(range(1, len(versions) + 1)), f"versions lost or doubled: {versions}"
    bars = [bar for bar, _ in commits]
    assert bars == sorted(bars), "a later bar's cycle wrote before an earlier bar's was done"
    limits = PortfolioLimits(**case.portfolio)
    for _, book in commits:
        cap = limits.gross_cap(book.equity)
        assert book.gross <= cap * (1 + 1e-9), (
            f"version {book.version}: gross {book.gross:.2f} > cap {cap:.2f}"
        )
        assert book.positions <= (limits.max_positions or 0), f"version {book.version}: {book.positions} open"
        for symbol, held in book.reservations.items():
            assert held.notional <= limits.max_symbol_notional * (1 + 1e-9), f"{symbol} over its cap"
    return commits


def _book_at(commits: list[tuple[int, PortfolioBook]], before: int) -> PortfolioBook | None:
    """Return the book as it stood once every cycle of the bars before position ``before`` was done."""
    done = [book for bar, book in commits if bar < before]
    return done[-1] if done else None


def _check_positions(
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
        book = _book_at(commits, k)
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


def _check_decisions(
    bot: str,
    events: list[LedgerEvent],
    commits: list[tuple[int, PortfolioBook]],
    held: list[Held],
    case: Case,
    closes: list[pd.Timestamp],
) -> None:
    """Every decision was reserved and sent, denied with its reasons, or taken on a position held that way."""
    reserved = {r.client_id for _, book in commits for r in book.reservations.values()}
    denials = {(e.payload["symbol"], e.time): e.payload for e in events if e.kind == "denial"}
    sent = {
        e.payload["client_id"] for e in events if e.kind == "order_ack" and e.payload["intent"] == "entry"
    }
    limit = case.portfolio["max_positions"]
    for decision in (e for e in events if e.kind == "decision"):
        symbol, bar = decision.payload["symbol"], decision.time
        entry = client_order_id(bot, symbol, bar, "entry")
        denial = denials.get((symbol, bar))
        max_hold = case.walks[case.symbols.index(symbol)].max_hold
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
                    seen = [book for at, book in commits if at == k] + [_book_at(commits, k)]
                    assert any(
                        b is not None and len(set(b.reservations) - {symbol}) >= limit for b in seen
                    ), f"{symbol} at {bar} denied for max_positions, but no book it could see was full"
        else:
            assert holding, f"{symbol} at {bar}: decided long, neither reserved nor denied nor holding"
            due = max_hold > 0 and held_bars(holding[0].first, bar, 60) >= max_hold
            assert not due, f"{symbol} at {bar}: re-entered at its time stop without a reservation"
    for symbol, bar in denials:
        assert (symbol, bar) in {(e.payload["symbol"], e.time) for e in events if e.kind == "decision"}


def _check_kill_switch(
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


def _check_final(
    store: Store,
    bot: str,
    case: Case,
    events: list[LedgerEvent],
    commits: list[tuple[int, PortfolioBook]],
) -> None:
    """The final books agree with the ledger and each symbol's snapshot (no book: nothing was ever reserved)."""
    last = _closes(case)[-1] - pd.Timedelta(minutes=1)
    final = commits[-1][1] if commits else None
    reserved = {r.client_id for _, book in commits for r in book.reservations.values()}
    expected = {}
    for symbol in case.symbols:
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
    assert (EQUITY if final is None else final.equity) == pytest.approx(EQUITY + sum(pnl), abs=1e-6)
    ledger = Ledger(store, bot)
    for symbol in case.symbols:
        ledger.trades(symbol=symbol)  # raises on a gap or a conflict in the symbol's fills


def _run(store: Store, spec: StoreSpec, runner: Runner, case: Case) -> dict[str, int]:
    """Publish each symbol's release, trade the case, check everything; return how often each portfolio limit
    was a reason to deny an entry."""
    for symbol, walk in zip(case.symbols, case.walks, strict=True):
        publish_release(store, symbol, walk.release(), START)
    bot = f"b{uuid.uuid4().hex[:10]}"
    markets = _markets(case)
    runs = runner(spec, bot, case, markets)
    statuses = {status for run in runs for _, status, _, _ in run.cycles}
    assert statuses <= {"ok", "halted"}, [
        c for run in runs for c in run.cycles if c[1] not in ("ok", "halted")
    ]
    commits = _history(runs, case)
    final = RiskBudget(store, bot, PortfolioLimits(**case.portfolio)).load()
    assert final == (commits[-1][1] if commits else None)
    events = Ledger(store, bot).events()
    _check_kill_switch(commits, events, "halted" in statuses)
    held = _positions([e for e in events if e.kind == "fill"])
    closes = _closes(case)
    _check_positions(commits, held, closes, markets)
    _check_decisions(bot, events, commits, held, case, closes)
    _check_final(store, bot, case, events, commits)
    codes: dict[str, int] = {}
    for e in events:
        if e.kind == "denial" and e.payload.get("scope") == "portfolio":
            for reason in e.payload["reasons"]:
                codes[reason["code"]] = codes.get(reason["code"], 0) + 1
    return codes


def _folder(tmp_path: Path) -> tuple[Store, StoreSpec]:
    root = tmp_path / uuid.uuid4().hex[:8]  # a store per example: the releases are the example's own
    return FolderStore(root), StoreSpec("folder", root=str(root))


def _s3(s3_store: S3Store, endpoint_url: str) -> tuple[Store, StoreSpec]:
    prefix = f"cycles-{uuid.uuid4().hex[:8]}"
    spec = StoreSpec("s3", endpoint_url=endpoint_url, bucket=s3_store.bucket, prefix=prefix)
    return spec.open(), spec


NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
"""A failing example is reported as drawn: shrinking replays whole trading sessions and takes many minutes."""
ONE_STORE = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
"""Every example writes a new store folder (prefix) under the test's one, so a function-scoped store is fine."""


@settings(max_examples=6, deadline=None, suppress_health_check=ONE_STORE, phases=NO_SHRINK)
@given(case=cases(bars=(6, 12), symbols=(3, 6)))
def test_symbol_cycles_in_threads_on_the_folder_store_never_break_the_budget(
    tmp_path: Path, case: Case
) -> None:
    store, spec = _folder(tmp_path)
    _run(store, spec, _threads, case)


@settings(max_examples=3, deadline=None, suppress_health_check=ONE_STORE, phases=NO_SHRINK)
@given(case=cases(bars=(5, 8), symbols=(3, 4)))
def test_symbol_cycles_in_threads_on_the_s3_store_never_break_the_budget(
    s3_store: S3Store, moto_server: MotoServer, case: Case
) -> None:
    store, spec = _s3(s3_store, moto_server.endpoint_url)
    _run(store, spec, _threads, case)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=ONE_STORE, phases=NO_SHRINK)
@given(case=cases(bars=(5, 10), symbols=(3, 6)))
def test_symbol_cycles_in_processes_on_the_folder_store_never_break_the_budget(
    tmp_path: Path, spawned: ProcessPoolExecutor, case: Case
) -> None:
    store, spec = _folder(tmp_path)
    _run(store, spec, _processes(spawned), case)


@pytest.mark.slow
@settings(max_examples=2, deadline=None, suppress_health_check=ONE_STORE, phases=NO_SHRINK)
@given(case=cases(bars=(5, 8), symbols=(3, 5)))
def test_symbol_cycles_in_processes_on_the_s3_store_never_break_the_budget(
    s3_store: S3Store, moto_server: MotoServer, spawned: ProcessPoolExecutor, case: Case
) -> None:
    store, spec = _s3(s3_store, moto_server.endpoint_url)
    _run(store, spec, _processes(spawned), case)


def test_the_symbol_cycles_really_race_for_the_budget_and_every_cap_binds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Budget writes are lost to another symbol's and retried, and every cap denies entries, in one run."""
    lost: list[str] = []
    put_if_match = FolderStore.put_if_match

    def counting(self: FolderStore, key: str, data: bytes, etag: str) -> str:
        try:
            return put_if_match(self, key, data, etag)
        except PreconditionFailed:
            lost.append(key)
            raise

    monkeypatch.setattr(FolderStore, "put_if_match", counting)
    walks = tuple(
        Walk(seed, 0.002, ((3, 0.01),), 0.8, 0.002, 0.3 if seed % 3 else 0.4, seed % 3) for seed in range(6)
    )
    portfolio = {"max_gross_exposure": 0.7, "max_symbol_notional": 3_500.0, "max_positions": 2}
    store, spec = _folder(tmp_path)
    codes = _run(store, spec, _threads, Case(portfolio, 10, walks))
    assert set(codes) >= PORTFOLIO_CODES, codes
    assert [k for k in lost if k.endswith("portfolio_risk.json")], (
        "no symbol ever lost a budget write to another"
    )


def test_the_history_check_catches_a_book_over_the_caps() -> None:
    """The check can fail: a committed book holding more positions than allowed is reported."""
    portfolio = {"max_gross_exposure": 1.0, "max_symbol_notional": 3_000.0, "max_positions": 1}
    case = Case(portfolio, 1, ())
    at = START + pd.Timedelta(minutes=FEATURE_WINDOW)
    book = new_book(EQUITY, at)
    first = dataclasses.replace(book, reservations={"BTC/USDT": Reservation(1, 2_000.0, "a", at)}, version=1)
    second = dataclasses.replace(
        first,
        reservations={**first.reservations, "ETH/USDT": Reservation(1, 2_000.0, "b", at)},
        version=2,
    )
    runs = [
        SymbolRun(s, (), ((0, dump(book_to_dict(b))),))
        for s, b in (("BTC/USDT", first), ("ETH/USDT", second))
    ]
    with pytest.raises(AssertionError, match="version 2: 2 open"):
        _history(runs, case)
