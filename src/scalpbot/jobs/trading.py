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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd

from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.portfolio_risk import PortfolioLimits
from scalpbot.core.risk import halt, initial_risk_state, resume
from scalpbot.core.timeframes import last_closed_open, timeframe_delta
from scalpbot.core.venue import market_type_of
from scalpbot.errors import ConfigError, CycleFailed, DataError, ExchangeError, ModelError, StoreError
from scalpbot.jobs.cycle import CycleReport, Executor, run_cycle
from scalpbot.jobs.retrieve import FundingRefresh, RetrieveReport, refresh_funding, retrieve
from scalpbot.jobs.services import Services, SourceChoice, replay_history, run_lease
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
            save_cycle_timing(self.services.store, self.executor.bot, timing)
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


def raise_if_failed(report: CycleReport) -> CycleReport:
    """Return ``report``; raise ``CycleFailed`` (already recorded and notified) when it failed closed."""
    if report.status == "failed":
        raise CycleFailed(report.message)
    return report


def trade_loop(
    trader: BarTrader,
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
                on_cycle(report)
            next_close = last_closed_open(now, trader.series.timeframe) + 2 * step
            if wait(max((next_close - pd.Timestamp(clock.now())).total_seconds() + delay_s, 1.0)):
                return cycles
    finally:
        trader.close()


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did: cycles run per status, the bot's equity at the end and its trade count."""

    bot: str
    first: pd.Timestamp
    last: pd.Timestamp
    cycles: dict[str, int]
    equity: float | None
    trades: int


def replay(
    services: Services,
    series: SeriesId,
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
    """
    if start >= end:
        raise ConfigError(f"the replay window [{start}, {end}) is empty: its start must be before its end")
    history = replay_history(services, series, start, end)
    inside = history.between(start, end - pd.Timedelta(1, "ns"))
    if inside.empty:
        raise DataError(f"no bars of {series} stored in [{start}, {end}); run `scalpbot fetch` first")
    executor = services.executor(
        series, bot=bot, bars=history, mode="replay", notifier=notifier, release_id=release_id
    )
    if not executor.ready():
        raise ModelError(f"no release of {series.symbol} is current; run `scalpbot train` first")
    trader = BarTrader(
        services, executor, series, source=None, lease=run_lease(services, bot), release_lease=False
    )
    step = timeframe_delta(series.timeframe)
    counts: dict[str, int] = {}
    report: CycleReport | None = None
    try:
        for bar in pd.DatetimeIndex(inside.index):
            report = trader(bar + step)
            counts[report.status] = counts.get(report.status, 0) + 1
            if on_cycle is not None:
                on_cycle(report)
            if report.status == "busy":
                raise ConfigError(f"replay of bot {bot} stopped: {report.message}")
    finally:
        trader.close()
    trades = Ledger(services.store, bot).trades(start, end)
    return ReplayReport(
        bot,
        pd.Timestamp(inside.index[0]),
        pd.Timestamp(inside.index[-1]),
        counts,
        None if report is None else report.equity,
        len(trades),
    )


def set_halt(services: Services, bot: str, *, halted: bool, reason: str) -> PortfolioSnapshot:
    """Engage (``halted``) or release the kill switch of ``bot`` by compare-and-swap; record it in the ledger.

    Releasing also releases the kill switch of the bot's portfolio risk budget (all its symbols)."""
    portfolio = PortfolioStore(services.store, bot)
    stored = portfolio.load()
    now = pd.Timestamp(services.clock.now())
    if stored is None:
        if not halted:
            raise ConfigError(f"bot {bot} has never traded; there is nothing to resume")
        equity = services.settings.backtest.initial_equity
        snapshot = PortfolioSnapshot(None, equity, halt(initial_risk_state(equity, now), reason, now))
        portfolio.save(snapshot, None)
    else:
        risk = halt(stored.snapshot.risk, reason, now) if halted else resume(stored.snapshot.risk)
        snapshot = replace(stored.snapshot, risk=risk)
        portfolio.save(snapshot, stored.etag)
    if not halted:  # the bot's kill switch in its risk budget is released too
        RiskBudget(services.store, bot, PortfolioLimits(**services.settings.portfolio.model_dump())).resume()
    Ledger(services.store, bot).append("halt" if halted else "resume", now, {"reason": reason})
    return snapshot
