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
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.portfolio_risk import PortfolioLimits, Reservation, new_book
from scalpbot.errors import PreconditionFailed
from scalpbot.ports import Store
from scalpbot.state.codec import dump
from scalpbot.state.ledger import Ledger
from scalpbot.state.risk_budget import RiskBudget, book_to_dict

from support.budget_workers import StoreSpec
from support.cycle_history import (
    PORTFOLIO_CODES,
    check_decisions,
    check_final,
    check_kill_switch,
    check_positions,
    committed_books,
    held_positions,
)
from support.moto_server import MotoServer
from support.symbol_cycles import EdgeRelease, SymbolRun, publish_release, trade_symbol

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT")
PRICES = dict(zip(SYMBOLS, (60_000.0, 3_000.0, 150.0, 0.6, 0.45, 0.15), strict=True))
START = pd.Timestamp("2025-03-03T00:00:00Z")
EQUITY = 10_000.0  # backtest.initial_equity: each symbol's paper account, and the budget's start


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
    commits = committed_books(runs, case.portfolio)
    final = RiskBudget(store, bot, PortfolioLimits(**case.portfolio)).load()
    assert final == (commits[-1][1] if commits else None)
    events = Ledger(store, bot).events()
    check_kill_switch(commits, events, "halted" in statuses)
    held = held_positions([e for e in events if e.kind == "fill"])
    closes = _closes(case)
    check_positions(commits, held, closes, markets)
    max_holds = {s: w.max_hold for s, w in zip(case.symbols, case.walks, strict=True)}
    max_positions = case.portfolio["max_positions"]
    check_decisions(bot, events, commits, held, closes, max_positions=max_positions, max_holds=max_holds)
    last = closes[-1] - pd.Timedelta(minutes=1)
    check_final(store, bot, case.symbols, events, commits, last=last, equity=EQUITY)
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
        committed_books(runs, case.portfolio)
