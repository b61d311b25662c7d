"""The one execute use case, and the drivers that call it: a live bar, the trade loop, a replay, halt/resume.

Every entry point - the Lambda handler, ``scalpbot trade`` (once or in a loop), ``replay``, ``run`` (wall
clock or ``--replay``) and the kernel warm-up - trades a bar through :class:`BarTrader`, which owns, in order:

1. the **idle check**: without a release to trade the bot idles and writes nothing;
2. the **run lease**: taken (or renewed when this process holds it) before any write; held by another run,
   the cycle is ``busy`` and does nothing;
3. **retrieve** (live only): the bars that closed by ``at`` are fetched and stored first;
4. the **cycle** (:func:`scalpbot.jobs.cycle.run_cycle`) for the newest stored bar at or before the bar
   that closed last at ``at`` (a bar the exchange has not published yet is fetched again next time);
5. a **failure** (exchange unreachable, release refused, data missing) fails the cycle closed: nothing is
   placed, and the fault is recorded in the ledger and notified **once** - a fault that persists over
   several cycles (an outage) is not repeated, and its end is announced;
6. the **decision to raise**: :func:`raise_if_failed` for entry points that must report a failure upward
   (Lambda counts it, the scheduler notes it); loops go on to the next bar.

A bot of several symbols (``bot.symbols``) trades each bar through :class:`BasketTrader`: one
:class:`BarTrader` per symbol (its own lease, snapshot and paper account), called in the configured symbol
order, all sharing the bot's portfolio risk budget. A symbol whose cycle raises gets an ``error`` event and a
``failed`` report; the symbols after it still trade that bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.portfolio_risk import PortfolioLimits
from scalpbot.core.risk import halt, initial_risk_state, resume
from scalpbot.core.timeframes import last_closed_open, timeframe_delta
from scalpbot.core.venue import market_type_of
from scalpbot.errors import (
    ConfigError,
    CycleFailed,
    DataError,
    ExchangeError,
    ModelError,
    ScalpbotError,
    StoreError,
)
from scalpbot.jobs.cycle import CycleReport, Executor, run_cycle
from scalpbot.jobs.retrieve import FundingRefresh, RetrieveReport, refresh_funding, retrieve
from scalpbot.jobs.services import Services, SourceChoice, replay_history, run_lease, state_symbol
from scalpbot.ports import Clock, Notifier
from scalpbot.state.cycle_timing import CycleTiming, save_cycle_timing
from scalpbot.state.dataset import SeriesId
from scalpbot.state.lease import LeaseHeld, RunLease
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioSnapshot, PortfolioStore
from scalpbot.state.risk_budget import RiskBudget

_log = logging.getLogger("scalpbot.trading")

__all__ = [
    "BarTrader",
    "BasketTrader",
    "ReplayReport",
    "raise_if_failed",
    "replay",
    "retrieve_closed",
    "set_halt",
    "trade_loop",
]


def retrieve_closed(
    services: Services, source: SourceChoice, series: SeriesId, at: pd.Timestamp
) -> RetrieveReport:
    """Store the bars of ``series`` that closed by ``at`` (UTC), resuming after the newest stored bar; on a
    perpetual swap whose source has a funding history, then the funding rates settled since the newest stored
    one (:func:`scalpbot.jobs.retrieve.refresh_funding`).

    An empty series starts ``data.lookback_days`` before ``at``; spikes are judged with the data settings. A
    funding refresh that fails does not fail the run: the bars are stored and the report's ``funding.error``
    says why (the next run asks again).
    """
    data = services.settings.data
    report = retrieve(
        services.dataset,
        source.source,
        series,
        until=(last_closed_open(at, series.timeframe) + timeframe_delta(series.timeframe)).to_pydatetime(),
        default_since=(at - pd.Timedelta(days=data.lookback_days)).to_pydatetime(),
        resume=source.resume,
        spike_sigmas=data.spike_sigmas,
        spike_min_move=data.spike_min_move,
    )
    if source.funding is None or market_type_of(series.symbol) != "swap":
        return report
    since = at - pd.Timedelta(days=data.lookback_days)
    try:
        funding = refresh_funding(services.store, source.funding, series, at, default_since=since)
    except (ExchangeError, DataError) as e:
        funding = FundingRefresh(True, 0, None, f"funding rates of {series.symbol} cannot be retrieved: {e}")
    return replace(report, funding=funding)


class BarTrader:
    """The execute use case of one bot; see the module docstring.

    ``source``: where new bars come from (``None``: the executor's history already holds them - a replay).
    ``release_lease``: give the lease back after each bar (Lambda, ``trade --once``); otherwise the lease is
    kept and renewed bar after bar, and :meth:`close` gives it back.
    """

    def __init__(
        self,
        services: Services,
        executor: Executor,
        series: SeriesId,
        *,
        source: SourceChoice | None,
        lease: RunLease,
        release_lease: bool,
    ) -> None:
        self.services = services
        self.executor = executor
        self.series = series
        self.source = source
        self.lease = lease
        self._release_lease = release_lease
        self._fault: str | None = None
        self._fault_cycles = 0
        self._funding_failing = False

    def __call__(self, at: pd.Timestamp) -> CycleReport:
        """Trade the bar that closed last at ``at`` (UTC): see the module docstring."""
        last_closed = last_closed_open(at, self.series.timeframe)
        if not self.executor.ready():
            return CycleReport(
                last_closed,
                "idle",
                message=f"no release of {self.series.symbol} is current yet; the train job promotes one when "
                "it passes the gate (or run `scalpbot models promote ID`)",
            )
        try:
            self._hold_lease()
        except LeaseHeld as e:
            return CycleReport(last_closed, "busy", message=str(e))
        started = pd.Timestamp(self.services.clock.now())
        try:
            report = self._trade(at, last_closed)
            self._keep_track(report)
            if self.source is not None:  # live: keep how late after the bar's close the cycle finished
                self._record_timing(report, started)
        finally:
            if self._release_lease:
                self.lease.release()
        return report

    def close(self) -> None:
        """Give the run lease back if this trader holds it."""
        self.lease.release()

    def _record_timing(self, report: CycleReport, started: pd.Timestamp) -> None:
        """Write the cycle's wall-clock timing for the operator; a failed write is logged, never fatal."""
        step = timeframe_delta(self.series.timeframe)
        timing = CycleTiming(
            report.bar, report.status, started, pd.Timestamp(self.services.clock.now()), report.bar + step
        )
        try:
            save_cycle_timing(self.services.store, self.executor.bot, timing, self.executor.scope)
        except StoreError as e:
            _log.warning("the cycle's timing was not recorded: %s", e)

    def _hold_lease(self) -> None:
        """Take the lease, or renew it once half its time to live has passed (one write per half-life)."""
        info = self.lease.info
        if info is None:
            self.lease.acquire()
            return
        now = pd.Timestamp(self.services.clock.now())
        if info.expires_at - now < self.lease.ttl / 2:
            self.lease.renew()

    def _trade(self, at: pd.Timestamp, last_closed: pd.Timestamp) -> CycleReport:
        if self.source is not None:
            try:
                retrieved = retrieve_closed(self.services, self.source, self.series, at)
            except (ExchangeError, DataError) as e:
                return CycleReport(
                    last_closed, "failed", message=f"bars cannot be retrieved: {e}", fault="retrieve"
                )
            self._note_funding(retrieved.funding, last_closed)
        # One read serves both: the newest stored bar at or before the last close, and its feature window.
        window = self.executor.bars.tail(last_closed, FEATURE_WINDOW)
        if window.empty:
            message = f"no bars of {self.series} are stored up to {last_closed.isoformat()}; run `scalpbot fetch` first"
            return CycleReport(last_closed, "failed", message=message, fault="data")
        try:
            return run_cycle(self.executor, pd.Timestamp(window.index[-1]), window)
        except (ModelError, DataError) as e:
            return CycleReport(last_closed, "failed", message=str(e), fault="release")

    def _note_funding(self, funding: FundingRefresh | None, bar: pd.Timestamp) -> None:
        """Record a failed funding refresh as an ``error`` event (where ``funding``) and notify it when it first
        shows, not again while it lasts; the cycle trades on with the rates already stored."""
        if funding is None or not funding.fetched:
            return
        if funding.error is None:
            self._funding_failing = False
            return
        if not self._funding_failing:
            self.executor.ledger.append("error", bar, {"where": "funding", "message": funding.error})
            self.executor.notifier.notify(
                f"{self.executor.bot}: funding rates not retrieved", funding.error, level="error"
            )
        self._funding_failing = True

    def _keep_track(self, report: CycleReport) -> None:
        """Record and notify a fault when it first shows, not again while it lasts; announce its end."""
        if report.status == "failed":
            key = f"{report.fault}:{report.message.split(':', 1)[0]}"
            if key != self._fault:
                self.executor.ledger.append(
                    "error", report.bar, {"where": report.fault, "message": report.message}
                )
                self.executor.notifier.notify(
                    f"{self.executor.bot}: execute failed closed", report.message, level="error"
                )
            self._fault = key
            self._fault_cycles += 1
        elif self._fault is not None and report.status in ("ok", "halted", "skipped"):
            cycles, self._fault, self._fault_cycles = self._fault_cycles, None, 0
            self.executor.notifier.notify(
                f"{self.executor.bot}: execute recovered",
                f"trading again at {report.bar.isoformat()} after {cycles} failed cycle(s)",
                level="info",
            )


class BasketTrader:
    """The execute use case of a bot of several symbols: each symbol's :class:`BarTrader` on every bar close.

    ``traders``: one per symbol, in the order their cycles run within a bar (``bot.symbols``' order: the
    portfolio budget sees the entries of a bar in that order). A trader that raises (a store or ledger fault
    of that symbol) fails that symbol's cycle only: an ``error`` event naming the symbol, a notification, and
    the next symbols still trade.
    """

    def __init__(self, traders: Sequence[BarTrader]) -> None:
        if not traders:
            raise ConfigError("a basket needs at least one symbol; set bot.symbols")
        timeframes = {trader.series.timeframe for trader in traders}
        if len(timeframes) > 1:
            raise ConfigError(
                f"the symbols of one bot trade one timeframe; got {', '.join(sorted(timeframes))}"
            )
        self.traders = tuple(traders)
        self.series = traders[0].series

    def __call__(self, at: pd.Timestamp) -> tuple[CycleReport, ...]:
        """Trade the bar that closed last at ``at`` (UTC) for every symbol, in order; one report per symbol.

        Live, each symbol's cycle records its own timing and the bar close as a whole is recorded for the bot
        (:mod:`scalpbot.state.cycle_timing`)."""
        started = pd.Timestamp(self.traders[0].services.clock.now())
        reports = []
        for trader in self.traders:
            try:
                report = trader(at)
            except ScalpbotError as e:
                report = CycleReport(
                    last_closed_open(at, trader.series.timeframe),
                    "failed",
                    message=f"the cycle of {trader.series.symbol} raised {type(e).__name__}: {e}",
                    fault="symbol",
                )
                try:
                    trader._keep_track(report)
                except ScalpbotError as again:  # the store itself is failing: the log keeps it
                    _log.error("%s: %s (not recorded: %s)", trader.series.symbol, report.message, again)
            reports.append(replace(report, symbol=trader.series.symbol))
        if any(trader.source is not None for trader in self.traders):
            self._record_timing(at, started, reports)
        return tuple(reports)

    def _record_timing(self, at: pd.Timestamp, started: pd.Timestamp, reports: Sequence[CycleReport]) -> None:
        """Write the bar close's wall-clock timing over every symbol; a failed write is logged, never fatal."""
        first = self.traders[0]
        bar = last_closed_open(at, self.series.timeframe)
        statuses = [report.status for report in reports]
        status = "failed" if "failed" in statuses else "ok" if "ok" in statuses else statuses[0]
        timing = CycleTiming(
            bar,
            status,
            started,
            pd.Timestamp(first.services.clock.now()),
            bar + timeframe_delta(self.series.timeframe),
            {report.symbol: report.status for report in reports},
        )
        try:
            save_cycle_timing(first.services.store, first.executor.bot, timing)
        except StoreError as e:
            _log.warning("the bar close's timing was not recorded: %s", e)

    def close(self) -> None:
        """Give back every symbol's run lease this basket holds."""
        for trader in self.traders:
            trader.close()


def raise_if_failed(report: CycleReport | Sequence[CycleReport]) -> CycleReport | Sequence[CycleReport]:
    """Return ``report``; raise ``CycleFailed`` (already recorded and notified) when it (any symbol's) failed
    closed."""
    failed = [r for r in ((report,) if isinstance(report, CycleReport) else report) if r.status == "failed"]
    if failed:
        raise CycleFailed("; ".join(f"{r.symbol}: {r.message}" if r.symbol else r.message for r in failed))
    return report


def basket_trader(
    services: Services,
    executors: Sequence[Executor],
    *,
    source: SourceChoice | None,
    release_lease: bool,
) -> BarTrader | BasketTrader:
    """Return the trader of ``executors`` (one per symbol): a :class:`BarTrader` for one symbol (exactly as a
    single-symbol bot always traded), else a :class:`BasketTrader` of one per symbol, each with its own lease.

    A bot of several symbols whose single-symbol snapshot (``state/{bot}/portfolio.json``, from before it
    listed its symbols) holds an open position is refused: its symbols keep their own state, so that position
    would be traded by nobody."""
    scoped = [executor for executor in executors if executor.scope is not None]
    if scoped:
        stored = PortfolioStore(scoped[0].store, scoped[0].bot).load()
        if stored is not None and stored.snapshot.position is not None:
            raise ConfigError(
                f"bot {scoped[0].bot} holds a position from when it traded one symbol "
                f"(state/{scoped[0].bot}/portfolio.json); close it with that configuration first "
                "(`scalpbot halt` flattens it), or trade the basket under another bot name"
            )
    traders = [
        BarTrader(
            services,
            executor,
            services.series(executor.symbol, executor.timeframe),
            source=source,
            lease=run_lease(services, executor.bot, symbol=executor.symbol),
            release_lease=release_lease,
        )
        for executor in executors
    ]
    return traders[0] if len(traders) == 1 else BasketTrader(traders)


def trade_loop(
    trader: BarTrader | BasketTrader,
    clock: Clock,
    wait: Callable[[float], bool],
    *,
    on_cycle: Callable[[CycleReport], None] | None = None,
    delay_s: float = 2.0,
) -> int:
    """Trade each bar as it closes until ``wait`` returns ``True`` (a stop request); return the cycles run.

    ``wait(seconds)`` sleeps until ``delay_s`` after the next bar close, or returns ``True`` early to stop.
    A failed cycle (an exchange outage, say) does not end the loop: the next bar is tried again.
    """
    step = timeframe_delta(trader.series.timeframe)
    cycles = 0
    try:
        while True:
            now = pd.Timestamp(clock.now())
            report = trader(now)
            cycles += 1
            if on_cycle is not None:
                for each in (report,) if isinstance(report, CycleReport) else report:
                    on_cycle(each)
            next_close = last_closed_open(now, trader.series.timeframe) + 2 * step
            if wait(max((next_close - pd.Timestamp(clock.now())).total_seconds() + delay_s, 1.0)):
                return cycles
    finally:
        trader.close()


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did: cycles run per status, the bot's equity at the end and its trade count.

    A basket: ``cycles`` counts every symbol's, ``equity`` sums the symbols' paper accounts (each starts
    with ``backtest.initial_equity``), ``symbols`` names them in their order."""

    bot: str
    first: pd.Timestamp
    last: pd.Timestamp
    cycles: dict[str, int]
    equity: float | None
    trades: int
    symbols: tuple[str, ...] = ()


def replay(
    services: Services,
    series: SeriesId | Sequence[SeriesId],
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    bot: str,
    release_id: str | None = None,
    notifier: Notifier | None = None,
    on_cycle: Callable[[CycleReport], None] | None = None,
) -> ReplayReport:
    """Drive the execute use case bar by bar over stored bars ``[start, end)``, always with the paper broker.

    The clock is the replay's: each cycle sees only bars up to the one that just closed. Cycles already
    processed by this bot are skipped, so an interrupted replay continues where it stopped.

    ``series``: one, or a bot's basket (in the order their cycles run within a bar); each bar stored for any
    of them is a bar close for all (a symbol without that bar finds it already processed: ``skipped``).
    ``release_id`` applies to one series only; a basket trades each symbol's current release.
    """
    if start >= end:
        raise ConfigError(f"the replay window [{start}, {end}) is empty: its start must be before its end")
    basket = [series] if isinstance(series, SeriesId) else list(series)
    if len(basket) > 1 and release_id is not None:
        raise ConfigError("a release id names one symbol's release; replay a basket with each one's current")
    executors, bars = [], pd.DatetimeIndex([], tz="UTC")
    for each in basket:
        history = replay_history(services, each, start, end)
        inside = history.between(start, end - pd.Timedelta(1, "ns"))
        if inside.empty:
            raise DataError(f"no bars of {each} stored in [{start}, {end}); run `scalpbot fetch` first")
        executor = services.executor(
            each, bot=bot, bars=history, mode="replay", notifier=notifier, release_id=release_id
        )
        if not executor.ready():
            raise ModelError(f"no release of {each.symbol} is current; run `scalpbot train` first")
        executors.append(executor)
        bars = bars.union(pd.DatetimeIndex(inside.index))
    trader = basket_trader(services, executors, source=None, release_lease=False)
    step = timeframe_delta(basket[0].timeframe)
    counts: dict[str, int] = {}
    equity: dict[str, float | None] = {}
    try:
        for bar in bars:
            reports = trader(bar + step)
            for report in (reports,) if isinstance(reports, CycleReport) else reports:
                counts[report.status] = counts.get(report.status, 0) + 1
                equity[report.symbol] = report.equity
                if on_cycle is not None:
                    on_cycle(report)
                if report.status == "busy":
                    raise ConfigError(f"replay of bot {bot} stopped: {report.message}")
    finally:
        trader.close()
    trades = Ledger(services.store, bot).trades(start, end)
    known = [value for value in equity.values() if value is not None]
    return ReplayReport(
        bot,
        pd.Timestamp(bars[0]),
        pd.Timestamp(bars[-1]),
        counts,
        sum(known) if known and len(known) == len(equity) else None,
        len(trades),
        tuple(each.symbol for each in basket) if len(basket) > 1 else (),
    )


def set_halt(services: Services, bot: str, *, halted: bool, reason: str) -> PortfolioSnapshot:
    """Engage (``halted``) or release the kill switch of ``bot`` by compare-and-swap; record it in the ledger.

    Releasing also releases the kill switch of the bot's portfolio risk budget (all its symbols). A bot of
    several symbols halts (resumes) every symbol's snapshot; the snapshot returned is the last symbol's."""
    now = pd.Timestamp(services.clock.now())
    snapshots = [
        PortfolioStore(services.store, bot, state_symbol(services.settings, symbol))
        for symbol in services.settings.symbols
    ]
    found = [(portfolio, portfolio.load()) for portfolio in snapshots]
    if not halted and all(stored is None for _, stored in found):
        raise ConfigError(f"bot {bot} has never traded; there is nothing to resume")
    snapshot: PortfolioSnapshot | None = None
    for portfolio, stored in found:
        if stored is None:
            if not halted:
                continue
            equity = services.settings.backtest.initial_equity
            snapshot = PortfolioSnapshot(None, equity, halt(initial_risk_state(equity, now), reason, now))
            portfolio.save(snapshot, None)
        else:
            risk = halt(stored.snapshot.risk, reason, now) if halted else resume(stored.snapshot.risk)
            snapshot = replace(stored.snapshot, risk=risk)
            portfolio.save(snapshot, stored.etag)
    assert snapshot is not None  # at least one symbol, and one stored when resuming
    if not halted:  # the bot's kill switch in its risk budget is released too
        RiskBudget(services.store, bot, PortfolioLimits(**services.settings.portfolio.model_dump())).resume()
    Ledger(services.store, bot).append("halt" if halted else "resume", now, {"reason": reason})
    return snapshot
