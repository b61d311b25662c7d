"""The retrieve job: pull closed bars from a market data source into the dataset, and keep a perpetual swap's
funding rates stored beside them.

Every chunk is validated before anything is written; a file source delivers the whole file as one
chunk, so a bad row anywhere leaves the dataset untouched. Exchange chunks are buffered and appended
in batches of whole pages, so a long fetch that is interrupted keeps what it had validated and the
next run continues after the last stored bar.

Funding (:func:`refresh_funding`) is fetched incrementally: only once the newest stored rate is a whole funding
interval (8 hours) old, from just after it up to now, so a minute job asks the venue about three times a day
plus the minutes until a new settlement is published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from scalpbot.core.bars import Gap, Spike, validate_bars
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.ports import FundingHistory, MarketData, Store
from scalpbot.state.dataset import AppendReport, BarDataset, SeriesId
from scalpbot.state.funding import append_funding, load_funding

ProgressCallback = Callable[[int, pd.Timestamp], None]
_FLUSH_BARS = 50_000
FUNDING_INTERVAL = pd.Timedelta(hours=8)
"""How often OKX and Binance USD-M settle funding on their main perpetuals (00:00, 08:00, 16:00 UTC)."""


@dataclass(frozen=True, slots=True)
class RetrieveReport:
    """Outcome of one retrieve run over ``[since, until)``."""

    series: SeriesId
    source: str
    since: pd.Timestamp | None
    until: pd.Timestamp | None
    received: int
    added: int
    already_stored: int
    conflicts: int
    partitions_written: int
    gaps: tuple[Gap, ...]
    spikes: tuple[Spike, ...]
    last: pd.Timestamp | None
    funding: FundingRefresh | None = None
    """A perpetual swap's funding refresh of this run (``None``: no swap, or no funding source)."""

    def payload(self) -> dict[str, Any]:
        """Return the run's counts as one JSON-ready object (gaps and spikes counted; times ISO-8601 UTC)."""
        funding = {} if self.funding is None else {"funding": self.funding.payload()}
        return {
            "series": str(self.series),
            "source": self.source,
            "received": self.received,
            "added": self.added,
            "already_stored": self.already_stored,
            "conflicts": self.conflicts,
            "partitions_written": self.partitions_written,
            "gaps": len(self.gaps),
            "spikes": len(self.spikes),
            "last": _iso(self.last),
            **funding,
        }


@dataclass(frozen=True, slots=True)
class FundingRefresh:
    """Outcome of one funding refresh: whether the venue was asked (``fetched``), how many rates were new, the
    newest stored funding time, and the failure that left the stored series as it was (``error``, else ``None``).
    """

    fetched: bool
    added: int
    last: pd.Timestamp | None
    error: str | None = None

    def payload(self) -> dict[str, Any]:
        """Return the refresh as JSON-ready data (times ISO-8601 UTC)."""
        return {"fetched": self.fetched, "added": self.added, "last": _iso(self.last), "error": self.error}


def refresh_funding(
    store: Store,
    history: FundingHistory,
    series: SeriesId,
    at: pd.Timestamp,
    *,
    default_since: pd.Timestamp,
) -> FundingRefresh:
    """Store the funding rates of the swap ``series`` settled since the newest stored one, up to ``at`` (UTC).

    Nothing is asked while the newest stored rate is younger than :data:`FUNDING_INTERVAL` (no settlement can be
    missing yet); an empty history starts at ``default_since``. Raise ``ExchangeError`` when the venue fails and
    ``DataError`` for a rate that contradicts a stored one (nothing is stored then).
    """
    stored = load_funding(store, series.exchange, series.symbol)
    last = pd.Timestamp(stored.index[-1]) if len(stored) else None
    if last is not None and at - last < FUNDING_INTERVAL:
        return FundingRefresh(False, 0, last)
    start = default_since if last is None else last + pd.Timedelta(milliseconds=1)
    rates = history(series.symbol, start, at)
    added = append_funding(store, series.exchange, series.symbol, rates)
    times = [t for t in (last, pd.Timestamp(rates.index.max()) if len(rates) else None) if t is not None]
    return FundingRefresh(True, added, max(times) if times else None)


def retrieve(
    dataset: BarDataset,
    source: MarketData,
    series: SeriesId,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    default_since: datetime | None = None,
    resume: bool = True,
    spike_sigmas: float = 15.0,
    spike_min_move: float = 0.01,
    on_progress: ProgressCallback | None = None,
) -> RetrieveReport:
    """Fetch bars with open time in ``[since, until)`` and append the ones not yet stored.

    Without ``since`` and with ``resume`` the run continues one bar after the newest stored bar, or
    starts at ``default_since`` (``None``: the source's first bar) for an empty series. Without
    ``resume`` (file sources) every bar of the source is offered and the ones already stored are kept.
    """
    start = _resolve_since(dataset, series, since, default_since) if resume or since else None
    end = None if until is None else pd.Timestamp(until)
    reports: list[AppendReport] = []
    pending: list[pd.DataFrame] = []
    pending_bars = 0
    for raw in source.fetch_bars(series.symbol, series.timeframe, _py(start), _py(end)):
        bars = validate_bars(raw, series.timeframe, source=source.name)
        bars = _window(bars, start, end)
        if bars.empty:
            continue
        pending.append(bars)
        pending_bars += len(bars)
        if on_progress is not None:
            on_progress(len(bars), bars.index[-1])
        if pending_bars >= _FLUSH_BARS:
            reports.append(_flush(dataset, series, pending, source.name, spike_sigmas, spike_min_move))
            pending, pending_bars = [], 0
    if pending:
        reports.append(_flush(dataset, series, pending, source.name, spike_sigmas, spike_min_move))
    return RetrieveReport(
        series=series,
        source=source.name,
        since=start,
        until=end,
        received=sum(r.received for r in reports),
        added=sum(r.added for r in reports),
        already_stored=sum(r.already_stored for r in reports),
        conflicts=sum(r.conflicts for r in reports),
        partitions_written=len({k for r in reports for k in r.partitions_written}),
        gaps=tuple(g for r in reports for g in r.gaps),
        spikes=tuple(s for r in reports for s in r.spikes),
        last=dataset.last_open_time(series),
    )


def _resolve_since(
    dataset: BarDataset, series: SeriesId, since: datetime | None, default_since: datetime | None
) -> pd.Timestamp | None:
    if since is not None:
        return pd.Timestamp(since)
    last = dataset.last_open_time(series)
    if last is not None:
        return last + timeframe_delta(series.timeframe)
    return None if default_since is None else pd.Timestamp(default_since)


def _window(bars: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    if start is not None:
        bars = bars.loc[bars.index >= start]
    if end is not None:
        bars = bars.loc[bars.index < end]
    return bars


def _flush(
    dataset: BarDataset,
    series: SeriesId,
    pending: list[pd.DataFrame],
    source: str,
    spike_sigmas: float,
    spike_min_move: float,
) -> AppendReport:
    bars = pending[0] if len(pending) == 1 else pd.concat(pending)
    if len(pending) > 1:
        # Chunks are each valid; check the seams (order and duplicates across pages) once more.
        bars = validate_bars(bars, series.timeframe, source=source)
    return dataset.append(series, bars, spike_sigmas=spike_sigmas, spike_min_move=spike_min_move)


def _py(value: pd.Timestamp | None) -> datetime | None:
    return None if value is None else value.to_pydatetime()


def _iso(value: pd.Timestamp | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")
