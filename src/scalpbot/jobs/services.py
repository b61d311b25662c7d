"""What the jobs are given: the shared collaborators of one process and the small helpers over them.

:class:`Services` is built by :func:`scalpbot.wiring.build_services`, the one place that chooses adapters; it
carries that module's executor factory so that a job can ask for an executor (a replay always gets the paper
broker) without importing the wiring or an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

import pandas as pd

from scalpbot.config import Settings
from scalpbot.core.features import FEATURE_WINDOW
from scalpbot.core.venue import Venue, market_type_of
from scalpbot.jobs.cycle import Executor
from scalpbot.ports import BarHistory, Broker, Clock, FundingHistory, MarketData, Notifier, Store
from scalpbot.state.dataset import BarDataset, SeriesId
from scalpbot.state.funding import load_funding
from scalpbot.state.history import MemoryHistory
from scalpbot.state.lease import RunLease
from scalpbot.state.venues import resolve_venue

ExecuteMode = Literal["live", "replay"]


class ExecutorFactory(Protocol):
    """Build the executor of a bot (see :func:`scalpbot.wiring.build_executor`)."""

    def __call__(
        self,
        services: Services,
        series: SeriesId,
        *,
        bot: str,
        bars: BarHistory,
        mode: ExecuteMode = "live",
        notifier: Notifier | None = None,
        broker: Broker | None = None,
        release_id: str | None = None,
        fallback_latest: bool = False,
    ) -> Executor: ...


@dataclass(frozen=True, slots=True)
class Services:
    """The collaborators shared by the jobs of one process."""

    settings: Settings
    store: Store
    dataset: BarDataset
    clock: Clock
    executors: ExecutorFactory

    def series(self, symbol: str | None = None, timeframe: str | None = None) -> SeriesId:
        """Return the configured series, or another symbol/timeframe on the configured exchange."""
        data = self.settings.data
        return SeriesId(self.settings.exchange.id, symbol or data.symbol, timeframe or data.timeframe)

    def executor(
        self,
        series: SeriesId,
        *,
        bot: str,
        bars: BarHistory,
        mode: ExecuteMode,
        notifier: Notifier | None = None,
        release_id: str | None = None,
    ) -> Executor:
        """Return the executor of ``bot`` on ``series`` from the wiring's factory (``replay``: paper always)."""
        return self.executors(
            self, series, bot=bot, bars=bars, mode=mode, notifier=notifier, release_id=release_id
        )


@dataclass(frozen=True, slots=True)
class SourceChoice:
    """A market data source and whether a run resumes after the newest stored bar; ``funding``: where a
    perpetual swap's funding rates come from (the exchange's history; ``None``: a source without funding)."""

    source: MarketData
    resume: bool
    funding: FundingHistory | None = None


def venue_profile(store: Store, settings: Settings, series: SeriesId) -> Venue:
    """Return the venue profile of ``series``: stored beside its bars (else the offline default), then ``[venue]``."""
    return resolve_venue(store, series.exchange, series.symbol, settings.venue.model_dump())


def stored_funding(
    store: Store, series: SeriesId, start: pd.Timestamp | None = None, last: pd.Timestamp | None = None
) -> pd.Series | None:
    """Return a perpetual swap's stored funding rates with funding time in ``[start, last]`` (UTC, fractions of
    position value per settlement), ``None`` for any other market (spot and dated futures pay none).

    What simulates a swap (tuning, the gate's scores, the RL environment, paper trading) charges these rates;
    a time with no stored rate charges nothing (``scalpbot fetch`` and the retrieve job keep them stored).
    """
    if market_type_of(series.symbol) != "swap":
        return None
    return load_funding(store, series.exchange, series.symbol, start, last)


def replay_history(
    services: Services, series: SeriesId, start: pd.Timestamp, end: pd.Timestamp
) -> MemoryHistory:
    """Return the stored bars in ``[start, end)`` with the feature window's bars before ``start``, in memory."""
    return MemoryHistory(services.dataset.read_with_warmup(series, start, end, FEATURE_WINDOW))


def state_symbol(settings: Settings, symbol: str) -> str | None:
    """Return the scope of ``symbol``'s own state: ``symbol`` in a bot of several symbols (``bot.symbols``),
    ``None`` in a bot of one, which keeps the bot's single-symbol keys (see :mod:`scalpbot.state.scope`)."""
    return symbol if len(settings.symbols) > 1 else None


def run_lease(
    services: Services, bot: str, *, owner: str | None = None, symbol: str | None = None
) -> RunLease:
    """Return the run lease of ``bot`` (of its ``symbol`` in a bot of several) with the configured time to live."""
    ttl = timedelta(seconds=services.settings.execute.lease_seconds)
    scope = None if symbol is None else state_symbol(services.settings, symbol)
    return RunLease(services.store, bot, services.clock, ttl, owner=owner, symbol=scope)


__all__ = [
    "ExecuteMode",
    "ExecutorFactory",
    "Services",
    "SourceChoice",
    "replay_history",
    "run_lease",
    "state_symbol",
    "stored_funding",
    "venue_profile",
]
