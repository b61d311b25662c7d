"""Many symbols in one bot (not a test): the bar close at 1, 10 and 50 symbols, and training 10 symbols with
1, 2 and 4 tuning workers.

1. **Bar close at scale.** A bot of N spot symbols quoted in USDT (``bot.symbols``), paper broker, a folder
   store, its bars from a local Binance look-alike (``tests/support/binance_server.py``) through ccxt exactly as
   ``scalpbot run`` wires it (``build_market_data("ccxt")``: ccxt's rate limiter on, Binance's ``rateLimit``
   and endpoint costs). Each bar close runs the bot's basket trader: for every symbol in order, retrieve the
   bar that just closed (one klines request), then the cycle (reconcile, risk, budget, features on the stored
   window, ONNX, policy, paper orders, ledger, snapshot). The first close backfills ``data.lookback_days`` of
   bars and is not timed; the next ``--closes`` are, one simulated minute apart, the bots of each N taking
   turns so that other work on the machine weighs on all alike. Reported per N: p50/p95 of the whole bar close
   and per symbol, the ratio per-symbol(N)/per-symbol(1) (flat is 1) in wall and CPU time, the time per
   symbol spent fetching (ccxt, its limiter, the HTTP round trip) and waiting for the limiter, the durable
   store writes per symbol and their time, and the spacing of the klines requests.
2. **Training 10 symbols** with ``scalpbot train --workers W`` for W in 1, 2, 4: the train job run for each
   symbol in turn (``train.study_storage`` on a throwaway PostgreSQL server, as ``tests/support/postgres.py``
   starts it; a fresh database and store per W), one label candidate by default (one fit and one study per
   symbol; ``--all-labels`` for ``train.label_search``'s). Reported: the wall time of the ten, the time spent
   tuning, the speed-up of each over one worker, the core count, and per W the studies' mean length, the
   share of trials the spawned workers ran and how late their first trial came.

Symbols: BTC/USDT is the bundled sample's real bars (2024-11-20..2024-12-31); every other symbol (ETH, BNB,
SOL, ...: names only) is the same real series shifted ``i`` hours later in time and rescaled in price (volume
inversely), so that each symbol's bars at one moment differ and each cycle decides on its own bars. The
Binance look-alike lists every symbol in ``exchangeInfo`` and serves its klines.

Release: one model is trained once on the sample (a few trials and epochs: the timing does not depend on it)
and published with an eager policy (enters on any signal), then the same release (ONNX + Keras artifacts,
one manifest) is written and promoted under each symbol: the release store keys releases per symbol, and a
release does not depend on the symbol's bars. So every cycle decides, and many place paper orders.

The bot and the server share the process (the server answers on a thread); thread pools are held to one
thread (numba, BLAS), the cores are not pinned (the tuning workers need both). On a shared machine treat the
figures as ranges.

Usage: python bench/portfolio.py [--symbols 1,10,50] [--closes 20] [--train-symbols 10] [--workers 1,2,4]
                                 [--trials 200] [--train-days 12] [--all-labels] [--skip-close] [--skip-train]
                                 [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba is imported; spawned workers inherit it
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1")

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.marketdata.files import FileMarketData, sample_path
from scalpbot.config import load_settings
from scalpbot.core.bars import validate_bars
from scalpbot.jobs.retrieve import retrieve
from scalpbot.jobs.services import SourceChoice
from scalpbot.jobs.trading import basket_trader
from scalpbot.jobs.train import train
from scalpbot.ml.shared_study import WORKER_ATTR
from scalpbot.ports import Store
from scalpbot.state.dataset import BarDataset
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore, new_release_id
from scalpbot.wiring import (
    Services,
    build_executor,
    build_market_data,
    build_notifier,
    build_services,
    stored_history,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tuning_workers import server_cpu_s

from support.binance_server import BinanceServer, Market, Series, sample_series
from support.postgres import running_postgres

BASES = (
    "BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "TRX", "LINK", "DOT",
    "LTC", "BCH", "AVAX", "XLM", "ATOM", "UNI", "ETC", "FIL", "APT", "ARB",
    "OP", "NEAR", "ICP", "HBAR", "VET", "ALGO", "AAVE", "SAND", "MANA", "AXS",
    "EGLD", "THETA", "XTZ", "EOS", "FLOW", "CHZ", "GRT", "MKR", "SNX", "CRV",
    "COMP", "KSM", "ZEC", "DASH", "NEO", "IOTA", "ENJ", "BAT", "ZIL", "SUI",
)  # fmt: skip
"""Names for the derived symbols (the bars are the sample's, shifted and rescaled: see the module docstring)."""
QUOTE = "USDT"
HOUR_MS = 3_600_000
FIRST_CLOSE = datetime(2024, 12, 20, 12, 0, 5, tzinfo=UTC)  # 5 s after the 11:59 bar closed
TRAIN_UNTIL = datetime(2024, 12, 30, tzinfo=UTC)
LOOSE_RISK = {"cooldown_after_losses": 0, "max_daily_loss": 1.0, "max_drawdown": 1.0}
EAGER = {"entry_threshold": 0.0, "min_confidence": 0.0, "max_hold": 12, "tp_mult": 0.5}


# --- symbols: the real sample, shifted and rescaled ---------------------------------------------------------


def unified(i: int) -> str:
    """Return the ``i``-th symbol, e.g. ``SOL/USDT``."""
    return f"{BASES[i]}/{QUOTE}"


def derived_series(n: int) -> tuple[dict[str, Series], dict[str, Market]]:
    """Return the klines of the first ``n`` symbols by venue id (``SOLUSDT``) and their exchangeInfo listings.

    Symbol 0 is the sample's BTC/USDT as it is; symbol ``i`` shows at time ``t`` the sample's bar of
    ``t - i`` hours, its prices times ``10**-(i % 4) * (1 + 0.013 i)`` and its volume divided by that.
    """
    if not 1 <= n <= len(BASES):
        raise SystemExit(f"--symbols takes 1 to {len(BASES)} symbols per bot; got {n}")
    btc = sample_series()["BTCUSDT"]
    series, markets = {}, {}
    for i in range(n):
        scale = 10.0 ** -(i % 4) * (1 + 0.013 * i)
        factors = np.array([scale, scale, scale, scale, 1 / scale])
        venue_id = f"{BASES[i]}{QUOTE}"
        series[venue_id] = Series(btc.open_ms + i * HOUR_MS, np.round(btc.ohlcv * factors, 8))
        markets[venue_id] = (BASES[i], QUOTE, "0.00000001", "0.00001000", "90000000.00000000")
    return series, markets


def series_frame(series: Series) -> pd.DataFrame:
    """Return one symbol's served bars as a validated canonical frame (UTC open times)."""
    frame = pd.DataFrame(series.ohlcv, columns=["open", "high", "low", "close", "volume"])
    frame.insert(0, "timestamp", pd.to_datetime(series.open_ms, unit="ms", utc=True))
    return validate_bars(frame, "1m", source="derived")


# --- one release, published under every symbol ----------------------------------------------------------------


def eager_release(root: Path) -> tuple[Services, str]:
    """Train once on the sample (few trials and epochs) and publish the model with an eager policy; return
    the services of that store and the release id."""
    services = build_services(
        load_settings(
            None,
            {
                "store": {"url": str(root)},
                "train": {"trials": 5, "max_epochs": 2, "min_trades": 5, "days": 14},
                "notify": {"console": False},
            },
        )
    )
    retrieve(services.dataset, FileMarketData(sample_path()), services.series(), resume=False)
    trained = train(services, services.series())
    releases = ReleaseStore(services.store)
    source = releases.load("BTC/USDT", trained.release_id, (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in source.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    manifest["params"] = {**manifest["params"], **EAGER}
    onnx = source.artifacts[ONNX_ARTIFACT]
    eager = new_release_id(datetime(2025, 1, 1, tzinfo=UTC), onnx + b"eager")
    releases.write("BTC/USDT", eager, manifest, dict(source.artifacts))
    return services, eager


def publish_everywhere(source: Services, release_id: str, into: Services, symbols: Sequence[str]) -> None:
    """Write the release ``release_id`` of BTC/USDT under each of ``symbols`` in ``into``'s store; promote it."""
    stored = ReleaseStore(source.store).load("BTC/USDT", release_id, (ONNX_ARTIFACT, KERAS_ARTIFACT))
    manifest = {k: v for k, v in stored.manifest.items() if k not in ("release_id", "symbol", "artifacts")}
    releases = ReleaseStore(into.store)
    for symbol in symbols:
        releases.write(symbol, release_id, manifest, dict(stored.artifacts))
        releases.promote(symbol, release_id, expected=None, reason="bench", now=into.clock.now())


# --- 1. the bar close ----------------------------------------------------------------------------------------


class TimedSource:
    """The bot's market data source, with the seconds spent fetching (ccxt, its rate limiter, HTTP)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    def fetch_bars(
        self, symbol: str, timeframe: str, since: datetime | None, until: datetime | None
    ) -> Iterator[pd.DataFrame]:
        tick = time.perf_counter()
        try:
            chunks = list(self.inner.fetch_bars(symbol, timeframe, since, until))
        finally:
            self.seconds += time.perf_counter() - tick
        return iter(chunks)


class CountedStore:
    """The bot's store, counting its writes (each one durable: the folder store syncs the file and its folder)
    and the seconds they took."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.writes = 0
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, key: str, data: bytes) -> str:
        return self._write(self.inner.put, key, data)

    def put_if_absent(self, key: str, data: bytes) -> str:
        return self._write(self.inner.put_if_absent, key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        return self._write(self.inner.put_if_match, key, data, etag)

    def _write(self, put: Any, *args: Any) -> str:
        tick = time.perf_counter()
        try:
            return str(put(*args))
        finally:
            self.writes += 1
            self.seconds += time.perf_counter() - tick


class TimedLimiter:
    """ccxt's rate limiter of one exchange, with the seconds it made the bot wait."""

    def __init__(self, exchange: Any) -> None:
        self.throttle = exchange.throttle
        self.seconds = 0.0
        exchange.throttle = self

    def __call__(self, cost: float | None = None) -> None:
        tick = time.perf_counter()
        try:
            self.throttle(cost)
        finally:
            self.seconds += time.perf_counter() - tick


class BasketBot:
    """A bot of ``n`` symbols trading on a local venue of its own, one bar close at a time (see :meth:`close`).

    It keeps what each timed close took: wall and CPU seconds, of which fetching and waiting for ccxt's rate
    limiter, and the gaps between its klines requests.
    """

    def __init__(self, root: Path, n: int, model: tuple[Services, str]) -> None:
        series, markets = derived_series(n)
        self.symbols = [unified(i) for i in range(n)]
        self.clock = FixedClock(FIRST_CLOSE)
        self.server = BinanceServer(self.clock, series, markets).start()
        settings = load_settings(
            None,
            {
                "store": {"url": str(root)},
                "exchange": {"api_url": self.server.url},
                "data": {"symbol": self.symbols[0], "lookback_days": 1},
                "bot": {"name": "basket", "symbols": self.symbols},
                "risk": LOOSE_RISK,
                "notify": {"console": False},
            },
        )
        built = build_services(settings, self.clock)
        self.store = CountedStore(built.store)
        self.services = replace(built, store=self.store, dataset=BarDataset(self.store, settings.data.format))
        publish_everywhere(*model, self.services, self.symbols)
        choice = build_market_data("ccxt", self.services)
        exchange = choice.source.exchange
        self.spacing_ms = exchange.rateLimit * _klines_cost(exchange)
        self.source, self.limiter = TimedSource(choice.source), TimedLimiter(exchange)
        notifier = build_notifier(settings, self.services.store, self.clock)
        executors = [
            build_executor(
                self.services,
                self.services.series(symbol),
                bot="basket",
                bars=stored_history(self.services, self.services.series(symbol)),
                notifier=notifier,
            )
            for symbol in self.symbols
        ]
        self.trader = basket_trader(
            self.services, executors, source=SourceChoice(self.source, resume=True), release_lease=False
        )
        self.statuses: dict[str, int] = {}
        self.wall_s: list[float] = []
        self.cpu_s: list[float] = []
        self.fetch_s: list[float] = []
        self.limiter_s: list[float] = []
        self.gaps_s: list[float] = []
        self.writes: list[int] = []
        self.write_s: list[float] = []
        self.ordering = 0

    def close(self, k: int) -> None:
        """Trade the bar close ``k`` minutes after the first; time it unless ``k`` is 0 (the backfill of
        ``data.lookback_days`` and the first ONNX sessions)."""
        self.clock.set(FIRST_CLOSE + timedelta(minutes=k))
        self.source.seconds = self.limiter.seconds = self.store.seconds = 0.0
        self.store.writes = 0
        before = len(self.server.requests_to("/api/v3/klines"))
        acks = self._acks()
        wall, cpu = time.perf_counter(), time.process_time()
        reports = self.trader(pd.Timestamp(self.clock.now()))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if k == 0:
            return
        for report in reports if isinstance(reports, tuple) else (reports,):
            self.statuses[report.status] = self.statuses.get(report.status, 0) + 1
        self.wall_s.append(wall)
        self.cpu_s.append(cpu)
        self.fetch_s.append(self.source.seconds)
        self.limiter_s.append(self.limiter.seconds)
        self.writes.append(self.store.writes)
        self.write_s.append(self.store.seconds)
        arrivals = [r.received_at for r in self.server.requests_to("/api/v3/klines")[before:]]
        self.gaps_s += list(np.diff(arrivals))
        self.ordering += self._acks() - acks

    def stop(self) -> None:
        """Give the leases back and stop the venue."""
        try:
            self.trader.close()
        finally:
            self.server.stop()

    def _acks(self) -> int:
        return sum(1 for key in self.services.store.list("state/basket/ledger/") if "-order_ack-" in key)


def _klines_cost(exchange: Any) -> float:
    """Return ccxt's rate-limit cost of one klines page (1000 bars) on ``exchange`` (Binance spot)."""
    config = exchange.api["public"]["get"]["klines"]
    return float(exchange.calculate_rate_limiter_cost(["public"], "GET", "klines", {"limit": 1000}, config))


def bar_close_part(counts: Sequence[int], closes: int, work: Path) -> None:
    """Print the bar-close table for each symbol count in ``counts``."""
    print("== 1. one bar close: retrieve + decide + paper orders for every symbol ==")
    tick = time.perf_counter()
    model = eager_release(work / "model")
    print(
        f"one release trained on the sample in {time.perf_counter() - tick:.0f} s, published with an eager "
        "policy under every symbol (the same ONNX for all)"
    )
    bots = [BasketBot(work / f"close-{n}", n, model) for n in counts]
    try:
        for k in range(closes + 1):  # the bots take turns, so that other work on the machine hits all alike
            for bot in bots:
                bot.close(k)
    finally:
        for bot in bots:
            bot.stop()
    one = bots[0]
    base_wall = float(np.median(one.wall_s)) / len(one.symbols)
    base_cpu = float(np.median(one.cpu_s)) / len(one.symbols)
    print(
        f"{closes} timed bar closes per bot after one untimed close (the backfill), the bots taking turns; ms; "
        "'fetch': the klines request through ccxt (its limiter included); 'writes': durable store writes "
        f"(file and folder synced) and their ms; CPU: this process (the venue's thread included); load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'symbols':>7} | {'close p50':>9} {'p95':>7} | {'/symbol p50':>11} {'p95':>6} {'ratio':>6} | "
        f"{'CPU/sym':>7} {'ratio':>6} | {'fetch/sym':>9} {'limiter/sym':>11} | {'writes/sym':>10} "
        f"{'ms':>5} | {'klines gap':>10} | {'cycles':>6} {'ordering':>8}"
    )
    print(header)
    print("-" * len(header))
    for bot in bots:
        n = len(bot.symbols)
        p50, p95 = np.percentile(bot.wall_s, [50, 95]) * 1e3
        per50, per95 = p50 / n, p95 / n
        cpu = float(np.median(bot.cpu_s)) * 1e3 / n
        fetch = float(np.median(bot.fetch_s)) * 1e3 / n
        waited = float(np.median(bot.limiter_s)) * 1e3 / n
        writes, write_ms = float(np.mean(bot.writes)) / n, float(np.median(bot.write_s)) * 1e3 / n
        gap = f"{np.median(bot.gaps_s) * 1e3:.1f}" if bot.gaps_s else "-"
        print(
            f"{n:>7} | {p50:>9.1f} {p95:>7.1f} | {per50:>11.1f} {per95:>6.1f} "
            f"{per50 / (base_wall * 1e3):>5.2f}x | {cpu:>7.1f} {cpu / (base_cpu * 1e3):>5.2f}x | "
            f"{fetch:>9.1f} {waited:>11.2f} | {writes:>10.1f} {write_ms:>5.1f} | {gap:>10} | "
            f"{sum(bot.statuses.values()):>6} {bot.ordering:>8}"
        )
    statuses = {k: v for bot in bots for k, v in bot.statuses.items()}
    print(f"cycle statuses: {statuses}; 'ordering': cycles that sent paper orders")
    widest = bots[-1]
    apart = float(np.median(widest.gaps_s)) * 1e3 if widest.gaps_s else float("nan")
    n = len(widest.symbols)
    print(
        "rate limit: ccxt (enableRateLimit, as the bot builds it) spaces klines requests by rateLimit x cost = "
        f"{widest.spacing_ms:.0f} ms; at {n} symbols it made the bot wait {np.median(widest.limiter_s) * 1e3:.1f} "
        f"ms of a {np.median(widest.wall_s) * 1e3:.0f} ms bar close: the requests are {apart:.0f} ms apart (one "
        f"symbol's cycle runs between two). Its floor, were they back to back: {n} x {widest.spacing_ms:.0f} = "
        f"{n * widest.spacing_ms:.0f} ms"
    )


# --- 2. training 10 symbols with 1, 2, 4 workers --------------------------------------------------------------


def train_part(
    n: int, worker_counts: Sequence[int], trials: int, days: int, all_labels: bool, work: Path
) -> None:
    """Print the wall time of training ``n`` symbols with each worker count, and the speed-up."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"\n== 2. training {n} symbols one after the other, tuning with 1..{max(worker_counts)} workers "
        f"(PostgreSQL study storage) =="
    )
    series, _ = derived_series(n)
    symbols = [unified(i) for i in range(n)]
    seed = work / "train-bars"
    seeded = _train_services(seed, None, trials, days, all_labels, symbols)
    for symbol, one in zip(symbols, series.values(), strict=True):
        seeded.dataset.append(seeded.series(symbol), series_frame(one))
    print(
        f"{cores} cores (os.cpu_count() {os.cpu_count()}); {days} days of 1m bars per symbol, "
        f"{trials} trials per study, 2 epochs, {'the default' if all_labels else 'one'} label candidate(s) "
        f"(one model fit and one study each); load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    with running_postgres(durable=True) as pg:
        print(f"storage: a local PostgreSQL server ({pg.bin_dir}), default durability (fsync on)")
        warm = work / "train-warm-up"  # imports, kernels compiled or loaded, the first fit: not timed
        shutil.copytree(seed, warm)
        storage = pg.create_database("warm")
        warmed = _train_services(warm, storage, trials, days, all_labels, symbols)
        train(warmed, warmed.series(symbols[0]), until=TRAIN_UNTIL)
        base = base_tuning = None
        for workers in worker_counts:
            root = work / f"train-{workers}"
            shutil.copytree(seed, root)
            storage = pg.create_database(f"w{workers}")
            services = _train_services(root, storage, trials, days, all_labels, symbols)
            tick, before, server_before = time.perf_counter(), os.times(), server_cpu_s(pg.pid)
            tuning = 0.0
            for symbol in symbols:
                report = train(services, services.series(symbol), until=TRAIN_UNTIL, workers=workers)
                tuning += report.timings.get("tuning", 0.0)
            wall, after = time.perf_counter() - tick, os.times()
            cpu = sum(after[:4]) - sum(before[:4]) + server_cpu_s(pg.pid) - server_before
            base = base or wall
            base_tuning = base_tuning or tuning
            split = study_split(storage)
            print(
                f"{workers} worker(s): {wall:6.1f} s for {n} symbols ({wall / n:5.1f} s each), speed-up "
                f"{base / wall:4.2f}x; tuning {tuning:6.1f} s (speed-up {base_tuning / tuning:4.2f}x), "
                f"the rest (bars, features, fits, export, gate) {wall - tuning:6.1f} s; "
                f"{cpu / wall:.2f} cores busy (this process, its workers and the server); "
                f"load {os.getloadavg()[0]:.1f}"
            )
            if workers == 1:
                late = ""
            elif split.extra_share == 0:
                late = ": every study was over before they had started"
            else:
                late = (
                    f", whose first trial starts {split.extra_lag:.1f} s after the study's first (median: a "
                    "fresh process per study)"
                )
            print(
                f"    {split.studies} studies of {split.seconds:4.1f} s on average (first trial start to last "
                f"trial end); {split.extra_share:.0%} of the trials run by the spawned workers{late}"
            )


@dataclass(frozen=True, slots=True)
class StudySplit:
    """How the studies of one storage went: how many, their mean length from first trial start to last trial
    end (s), the share of trials the spawned workers ran, and the median delay from a study's first trial to a
    spawned worker's first (s; NaN without spawned workers)."""

    studies: int
    seconds: float
    extra_share: float
    extra_lag: float


def study_split(storage: str) -> StudySplit:
    """Return the :class:`StudySplit` of every study in ``storage``; this process is the calling worker."""
    import optuna

    me, lengths, lags = f":{os.getpid()}:", [], []
    trials = extra = 0
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        done = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
        first = min(t.datetime_start for t in done if t.datetime_start)
        lengths.append(
            (max(t.datetime_complete for t in done if t.datetime_complete) - first).total_seconds()
        )
        starts: dict[str, datetime] = {}
        for t in done:
            who = str(t.user_attrs.get(WORKER_ATTR, ""))
            if t.datetime_start and (who not in starts or t.datetime_start < starts[who]):
                starts[who] = t.datetime_start
            trials += 1
            extra += me not in who
        lags += [(at - first).total_seconds() for who, at in starts.items() if me not in who]
    lag = float(np.median(lags)) if lags else float("nan")
    return StudySplit(len(lengths), float(np.mean(lengths)), extra / max(trials, 1), lag)


def _train_services(
    root: Path, storage: str | None, trials: int, days: int, all_labels: bool, symbols: Sequence[str]
) -> Services:
    overrides: dict[str, Any] = {
        "store": {"url": str(root)},
        "data": {"symbol": symbols[0]},
        "bot": {"symbols": list(symbols)},
        "train": {"trials": trials, "max_epochs": 2, "min_trades": 5, "days": days},
        "notify": {"console": False},
    }
    if storage is not None:
        overrides["train"]["study_storage"] = storage
    if not all_labels:
        overrides["train"]["label_search"] = []
    return build_services(load_settings(None, overrides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", default="1,10,50", help="symbol counts of the bar-close part")
    parser.add_argument("--closes", type=int, default=20, help="timed bar closes per symbol count")
    parser.add_argument("--train-symbols", type=int, default=10)
    parser.add_argument("--workers", default="1,2,4", help="tuning worker counts of the training part")
    parser.add_argument(
        "--trials",
        type=int,
        default=200,
        help="policy trials per study (a study much shorter than a worker's start-up gains nothing from workers)",
    )
    parser.add_argument(
        "--all-labels", action="store_true", help="train.label_search's candidates too [one label]"
    )
    parser.add_argument("--train-days", type=int, default=12, help="days of bars per training run")
    parser.add_argument("--skip-close", action="store_true", help="only the training part")
    parser.add_argument("--skip-train", action="store_true", help="only the bar-close part")
    parser.add_argument(
        "--quick", action="store_true", help="1,5 symbols, 5 closes; 3 symbols, 1,2 workers, 10 trials"
    )
    args = parser.parse_args()
    if args.quick:
        args.symbols, args.closes, args.train_symbols = "1,5", 5, 3
        args.workers, args.trials = "1,2", 10
    warnings.filterwarnings("ignore")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="scalpbot-portfolio-") as tmp:
        if not args.skip_close:
            bar_close_part([int(n) for n in args.symbols.split(",")], args.closes, Path(tmp))
        if not args.skip_train:
            workers = [int(n) for n in args.workers.split(",")]
            train_part(args.train_symbols, workers, args.trials, args.train_days, args.all_labels, Path(tmp))


if __name__ == "__main__":
    main()
