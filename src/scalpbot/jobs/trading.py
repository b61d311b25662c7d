"""Assemble the execute job for a bot and drive it: one live cycle, a replay through history, halt and resume."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

import pandas as pd

from scalpbot.adapters.broker.paper import PaperBroker
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.risk import MarketRules, RiskLimits, halt, initial_risk_state, resume
from scalpbot.core.timeframes import last_closed_open, timeframe_delta
from scalpbot.data.dataset import SeriesId
from scalpbot.errors import ConfigError, DataError
from scalpbot.jobs.execute import BarWindow, CycleReport, Executor, run_cycle
from scalpbot.jobs.retrieve import RetrieveReport, retrieve
from scalpbot.ports import Broker, Notifier
from scalpbot.release_signals import ReleaseCache
from scalpbot.releases import ReleaseStore
from scalpbot.services import Services, SourceChoice, build_notifier, exchange_api_urls
from scalpbot.state.lease import RunLease
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioSnapshot, PortfolioStore


def stored_bars(services: Services, series: SeriesId) -> BarWindow:
    """Return a bar window that reads the dataset (live trading)."""
    step = timeframe_delta(series.timeframe)

    def window(start: pd.Timestamp | None, last: pd.Timestamp) -> pd.DataFrame:
        return services.dataset.read(series, start, last + step)

    return window


def memory_bars(bars: pd.DataFrame) -> BarWindow:
    """Return a bar window over bars held in memory (replay)."""

    def window(start: pd.Timestamp | None, last: pd.Timestamp) -> pd.DataFrame:
        index = pd.DatetimeIndex(bars.index)
        lo = 0 if start is None else int(index.searchsorted(start, side="left"))
        hi = int(index.searchsorted(last, side="right"))
        return bars.iloc[lo:hi]

    return window


def risk_limits(services: Services, timeframe: str) -> RiskLimits:
    """Return the configured risk limits for bars of ``timeframe``."""
    return RiskLimits(**services.settings.risk.model_dump(), timeframe=timeframe)


def build_executor(
    services: Services,
    series: SeriesId,
    *,
    bot: str,
    bars: BarWindow,
    notifier: Notifier | None = None,
    broker: Broker | None = None,
    release_id: str | None = None,
    fallback_latest: bool = False,
) -> Executor:
    """Return the executor of ``bot`` on ``series`` with the configured broker (paper by default)."""
    costs = services.settings.backtest
    kind = services.settings.execute.broker
    market_rules = MarketRules()
    if broker is None and kind == "ccxt":
        broker = live_broker(services, series, bot=bot)
    if broker is None:
        broker = PaperBroker(
            services.store,
            bot=bot,
            symbol=series.symbol,
            timeframe=series.timeframe,
            bars=bars,
            fee=costs.fee,
            slippage=costs.slippage,
            initial_equity=costs.initial_equity,
        )
    paper = isinstance(broker, PaperBroker)
    cache = ReleaseCache(
        ReleaseStore(services.store), series.symbol, release_id, fallback_latest=fallback_latest and paper
    )
    return Executor(
        bot=bot,
        symbol=series.symbol,
        timeframe=series.timeframe,
        store=services.store,
        broker=broker,
        notifier=notifier or build_notifier(services.settings, services.store, services.clock),
        model=cache.current,
        bars=bars,
        limits=risk_limits(services, series.timeframe),
        market_rules=market_rules,
        initial_equity=costs.initial_equity,
    )


def retrieve_closed(
    services: Services, source: SourceChoice, series: SeriesId, at: pd.Timestamp
) -> RetrieveReport:
    """Store the bars of ``series`` that closed by ``at`` (UTC), resuming after the newest stored bar.

    An empty series starts ``data.lookback_days`` before ``at``; spikes are judged with the data settings.
    """
    data = services.settings.data
    return retrieve(
        services.dataset,
        source.source,
        series,
        until=(last_closed_open(at, series.timeframe) + timeframe_delta(series.timeframe)).to_pydatetime(),
        default_since=(at - pd.Timedelta(days=data.lookback_days)).to_pydatetime(),
        resume=source.resume,
        spike_sigmas=data.spike_sigmas,
        spike_min_move=data.spike_min_move,
    )


def trade_bar(
    services: Services, executor: Executor, source: SourceChoice, series: SeriesId, at: pd.Timestamp
) -> CycleReport:
    """Trade the bar that closed last at ``at`` (UTC): retrieve the bars up to its close, then run its cycle.

    When the source has not published that bar yet, the newest stored bar is processed instead (a bar already
    processed is skipped by the cycle), so a late bar is never traded on a stale window.
    """
    retrieve_closed(services, source, series, at)
    stored = services.dataset.last_open_time(series)
    if stored is None:
        raise DataError(f"no bars of {series} stored; run `scalpbot fetch` first")
    return run_cycle(executor, min(last_closed_open(at, series.timeframe), stored))


def live_broker(services: Services, series: SeriesId, *, bot: str) -> Broker:
    """Return the ccxt broker of ``bot`` with the exchange keys from the environment or AWS (see secrets)."""
    from scalpbot.adapters.broker.ccxt_broker import CcxtBroker
    from scalpbot.adapters.secrets import exchange_credentials

    exchange = services.settings.exchange
    config: dict[str, object] = {"timeout": exchange.timeout_ms, **exchange_credentials(exchange)}
    if exchange.sandbox:
        config["sandbox"] = True
    return CcxtBroker(
        exchange.id,
        bot=bot,
        symbol=series.symbol,
        timeframe=series.timeframe,
        config=config,
        api_urls=exchange_api_urls(services.settings),
        fee_rate=services.settings.backtest.fee,
        max_attempts=exchange.max_retries,
    )


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
    """Drive the execute job bar by bar over stored bars ``[start, end)`` with the paper broker.

    The clock is the replay's: each cycle sees only bars up to the one that just closed. Cycles already
    processed by this bot are skipped, so an interrupted replay continues where it stopped.
    """
    step = timeframe_delta(series.timeframe)
    history = services.dataset.read(series, start - FEATURE_WINDOW * step, end)
    inside = history.loc[history.index >= start]
    if inside.empty:
        raise DataError(f"no bars of {series} stored in [{start}, {end}); run `scalpbot fetch` first")
    executor = build_executor(
        services, series, bot=bot, bars=memory_bars(history), notifier=notifier, release_id=release_id
    )
    counts: dict[str, int] = {}
    lease = RunLease(
        services.store, bot, services.clock, timedelta(seconds=services.settings.execute.lease_seconds)
    )
    report: CycleReport | None = None
    with lease:
        for bar in pd.DatetimeIndex(inside.index):
            report = run_cycle(executor, bar)
            counts[report.status] = counts.get(report.status, 0) + 1
            if on_cycle is not None:
                on_cycle(report)
            if counts[report.status] % 500 == 0:
                lease.renew()
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
    """Engage (``halted``) or release the kill switch of ``bot`` by compare-and-swap; record it in the ledger."""
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
    Ledger(services.store, bot).append("halt" if halted else "resume", now, {"reason": reason})
    return snapshot
