"""The bar dataset: validated, append-only daily partitions in a ``Store``.

Layout: ``data/{exchange}/{BASE_QUOTE}/{timeframe}/{YYYY-MM-DD}.parquet`` (``.csv`` when configured),
one object per UTC day holding the bars whose **open** time falls on that day.

Appending is idempotent and incremental: only the days touched by the new bars are read and written,
each with a conditional write (create-only for a new day, compare-and-swap for an existing one), in
ascending day order. A bar already stored is never changed; a differing copy is counted as a conflict.
Each partition is replaced atomically, so a run killed at any moment leaves a readable dataset whose
days are each either before or after the run.

**Order flow.** The optional columns ``trades`` and ``taker_buy_volume`` (:mod:`scalpbot.core.bars`) are
stored with the bars of a source that reports them and left out otherwise; nothing is zero-filled. A series
may mix both kinds of bars (a source reporting order flow appended to days stored without it, or the other
way round): a day holding both keeps the columns with NaN for the bars that came without them, and a read
returns the columns, NaN where a bar has none, as soon as one bar it returns has them. Features
that need order flow are NaN over windows touching such bars (:mod:`scalpbot.core.order_flow`). A bar
already stored keeps its values: order flow arriving later for it is not added.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalpbot.core.bars import (
    BAR_COLUMNS,
    ORDER_FLOW_COLUMNS,
    Gap,
    Spike,
    canonical_columns,
    empty_bars,
    find_gaps,
    find_spikes,
)
from scalpbot.errors import ConfigError, ObjectNotFound, PreconditionFailed, StoreError
from scalpbot.ports import Store
from scalpbot.state.bar_codec import EXTENSIONS, Format, decode_bars, encode_bars

_DAY_NS = 86_400 * 1_000_000_000
_PARTITION = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")
_CAS_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class SeriesId:
    """One bar series: exchange id, unified symbol (``BTC/USDT``) and timeframe (``1m``)."""

    exchange: str
    symbol: str
    timeframe: str

    @property
    def prefix(self) -> str:
        """Return the store prefix of this series' partitions, ending with ``/``."""
        pair = self.symbol.replace("/", "_").replace(":", "_")
        return f"data/{self.exchange}/{pair}/{self.timeframe}/"

    def __str__(self) -> str:
        return f"{self.exchange} {self.symbol} {self.timeframe}"


@dataclass(frozen=True, slots=True)
class AppendReport:
    """What one append did: bars counted by outcome, partitions written, holes and spikes seen."""

    received: int
    added: int
    already_stored: int
    conflicts: int
    partitions_written: tuple[str, ...]
    gaps: tuple[Gap, ...]
    spikes: tuple[Spike, ...]
    first_conflict: pd.Timestamp | None = None


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    """Bar count, time span, gaps and spikes of a stored series."""

    series: SeriesId
    bars: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    partitions: int
    gaps: tuple[Gap, ...] = field(default=())
    spikes: tuple[Spike, ...] = field(default=())
    order_flow_bars: int = 0
    """Bars that carry order flow (both ``trades`` and ``taker_buy_volume``)."""

    @property
    def missing_bars(self) -> int:
        """Return the number of bars absent between the first and last stored bar."""
        return sum(g.missing for g in self.gaps)

    @property
    def largest_gap(self) -> Gap | None:
        """Return the gap with the most missing bars, if any."""
        return max(self.gaps, key=lambda g: g.missing, default=None)


class BarDataset:
    """Read and append bar series kept as daily partitions in a ``Store``."""

    def __init__(self, store: Store, fmt: Format = "parquet") -> None:
        self._store = store
        self._format: Format = fmt

    @property
    def store(self) -> Store:
        """Return the underlying store."""
        return self._store

    def partitions(self, series: SeriesId) -> dict[str, str]:
        """Return ``{YYYY-MM-DD: key}`` for every stored day of ``series``, in day order."""
        found: dict[str, str] = {}
        formats: set[str] = set()
        for key in self._store.list(series.prefix):
            match = _PARTITION.match(key[len(series.prefix) :])
            if match is None:
                continue
            day, ext = match.groups()
            if day in found:
                raise StoreError(
                    f"{series}: day {day} is stored twice ({found[day]} and {key}); delete one of them"
                )
            found[day] = key
            formats.add(ext)
        if formats and formats != {self._format}:
            stored = ", ".join(sorted(formats))
            raise ConfigError(
                f"{series} is stored as {stored} but data.format is '{self._format}'; "
                f"set data.format = '{sorted(formats)[0]}' or export the series and re-import it"
            )
        return dict(sorted(found.items()))

    def read(
        self, series: SeriesId, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Return the stored bars with open time in ``[start, end)``; empty when none are stored."""
        keys = self.partitions(series)
        first_day = None if start is None else start.strftime("%Y-%m-%d")
        last_day = None if end is None else (end - pd.Timedelta(1, "ns")).strftime("%Y-%m-%d")
        chosen = [
            key
            for day, key in keys.items()
            if (first_day is None or day >= first_day) and (last_day is None or day <= last_day)
        ]
        frames = [self._load(key) for key in chosen]
        if not frames:
            return empty_bars()
        bars = _concat(frames)
        inside = np.ones(len(bars), dtype=bool)
        if start is not None:
            inside &= bars.index >= start
        if end is not None:
            inside &= bars.index < end
        return bars if inside.all() else canonical_columns(bars.loc[inside])

    def read_tail(self, series: SeriesId, last: pd.Timestamp, count: int) -> pd.DataFrame:
        """Return the last ``count`` stored bars with open time ``<= last`` (fewer when less is stored).

        Counted in bars, not time: across a hole in the data the window reaches further back, as a
        computation over the stored series does. Reads the day partitions newest first, as few as needed.
        """
        if count <= 0:
            return empty_bars()
        keys = self.partitions(series)
        last_day = last.strftime("%Y-%m-%d")
        frames: list[pd.DataFrame] = []
        held = 0
        for day, key in reversed(keys.items()):
            if day > last_day:
                continue
            bars = self._load(key)
            if day == last_day:
                bars = bars.loc[bars.index <= last]
            frames.append(bars)
            held += len(bars)
            if held >= count:
                break
        if not frames:
            return empty_bars()
        bars = _concat(frames[::-1])
        return canonical_columns(bars.iloc[-count:])

    def read_with_warmup(
        self, series: SeriesId, start: pd.Timestamp, end: pd.Timestamp | None, warmup: int
    ) -> pd.DataFrame:
        """Return the bars in ``[start, end)`` preceded by the ``warmup`` stored bars before ``start``."""
        before = self.read_tail(series, start - pd.Timedelta(1, "ns"), warmup)
        inside = self.read(series, start, end)
        if before.empty:
            return inside
        return _concat([before, inside]) if len(inside) else before

    def last_open_time(self, series: SeriesId) -> pd.Timestamp | None:
        """Return the open time of the newest stored bar, or ``None`` for an empty series."""
        keys = self.partitions(series)
        if not keys:
            return None
        bars = self._load(next(reversed(keys.values())))
        return bars.index[-1] if len(bars) else None

    def append(
        self,
        series: SeriesId,
        bars: pd.DataFrame,
        *,
        spike_sigmas: float = 15.0,
        spike_min_move: float = 0.01,
    ) -> AppendReport:
        """Add the bars not yet stored; return what was written.

        ``bars`` must already be validated (``scalpbot.core.bars.validate_bars``): sorted, unique, UTC.
        """
        keys = self.partitions(series)
        if bars.empty:
            return AppendReport(0, 0, 0, 0, (), (), ())
        ns = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
        day_numbers = ns // _DAY_NS
        starts = np.flatnonzero(np.diff(day_numbers, prepend=day_numbers[0] - 1))
        bounds = [*starts.tolist(), len(bars)]
        added_frames: list[pd.DataFrame] = []
        touched: list[pd.DataFrame] = []
        written: list[str] = []
        already = conflicts = 0
        first_conflict: pd.Timestamp | None = None
        for lo, hi in itertools.pairwise(bounds):
            day_bars = bars.iloc[lo:hi]
            day = day_bars.index[0].strftime("%Y-%m-%d")
            key = keys.get(day, f"{series.prefix}{day}{EXTENSIONS[self._format]}")
            outcome = self._merge_day(key, day_bars, exists=day in keys)
            already += outcome.already
            conflicts += outcome.conflicts
            if first_conflict is None:
                first_conflict = outcome.first_conflict
            if len(outcome.added):
                added_frames.append(outcome.added)
                touched.append(outcome.stored)
                written.append(key)
        added = pd.concat(added_frames) if added_frames else empty_bars()
        # Gaps are reported over the days written, as stored now, and from the bar stored before them.
        span = pd.concat(touched) if touched else empty_bars()
        previous = None if span.empty else self._last_bar_before(keys, span.index[0])
        with_previous = span if previous is None else pd.concat([previous, span])
        return AppendReport(
            received=len(bars),
            added=len(added),
            already_stored=already,
            conflicts=conflicts,
            partitions_written=tuple(written),
            gaps=tuple(find_gaps(pd.DatetimeIndex(with_previous.index), series.timeframe)),
            spikes=tuple(
                s
                for s in find_spikes(bars, sigmas=spike_sigmas, min_move=spike_min_move)
                if s.time in added.index
            ),
            first_conflict=first_conflict,
        )

    def summary(
        self, series: SeriesId, *, spike_sigmas: float = 15.0, spike_min_move: float = 0.01
    ) -> DatasetSummary:
        """Return count, span, gaps and spikes of the whole stored series."""
        keys = self.partitions(series)
        bars = self.read(series)
        if bars.empty:
            return DatasetSummary(series, 0, None, None, len(keys))
        return DatasetSummary(
            series=series,
            bars=len(bars),
            first=bars.index[0],
            last=bars.index[-1],
            partitions=len(keys),
            gaps=tuple(find_gaps(pd.DatetimeIndex(bars.index), series.timeframe)),
            spikes=tuple(find_spikes(bars, sigmas=spike_sigmas, min_move=spike_min_move)),
            order_flow_bars=_order_flow_bars(bars),
        )

    def _load(self, key: str) -> pd.DataFrame:
        return decode_bars(self._store.get(key).data, self._format, key=key)

    def _last_bar_before(self, keys: dict[str, str], when: pd.Timestamp) -> pd.DataFrame | None:
        day = when.strftime("%Y-%m-%d")
        earlier = [key for d, key in keys.items() if d <= day]
        for key in reversed(earlier):
            bars = self._load(key)
            before = bars.loc[bars.index < when]
            if len(before):
                return before.iloc[-1:]
        return None

    def _merge_day(self, key: str, new: pd.DataFrame, *, exists: bool) -> _DayOutcome:
        for _ in range(_CAS_ATTEMPTS):
            if not exists:
                try:
                    self._store.put_if_absent(key, encode_bars(new, self._format))
                    return _DayOutcome(new, 0, 0, None, new)
                except PreconditionFailed:
                    exists = True  # another writer created the day first: merge into its copy
            try:
                stored = self._store.get(key)
            except ObjectNotFound:
                exists = False
                continue
            old = decode_bars(stored.data, self._format, key=key)
            outcome = _compare(old, new)
            if outcome.added.empty:
                return outcome
            merged = canonical_columns(pd.concat([old, outcome.added]).sort_index())
            try:
                self._store.put_if_match(key, encode_bars(merged, self._format), stored.etag)
            except PreconditionFailed:
                continue
            return dataclasses.replace(outcome, stored=merged)
        raise StoreError(f"{key} kept changing under another writer; nothing was lost, run the fetch again")


@dataclass(frozen=True, slots=True)
class _DayOutcome:
    added: pd.DataFrame
    already: int
    conflicts: int
    first_conflict: pd.Timestamp | None
    stored: pd.DataFrame  # the day's bars as stored after the merge


def _order_flow_bars(bars: pd.DataFrame) -> int:
    if any(c not in bars.columns for c in ORDER_FLOW_COLUMNS):
        return 0
    return int(bars[list(ORDER_FLOW_COLUMNS)].notna().all(axis=1).sum())


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Return consecutive bar frames as one, order-flow columns NaN where a frame has none."""
    if len(frames) == 1:
        return frames[0]
    return canonical_columns(pd.concat(frames))


def _compare(old: pd.DataFrame, new: pd.DataFrame) -> _DayOutcome:
    known = new.index.isin(old.index)
    overlap = new.loc[known]
    differs = ~np.isclose(
        overlap[list(BAR_COLUMNS)].to_numpy(),
        old.loc[overlap.index, list(BAR_COLUMNS)].to_numpy(),
        rtol=0.0,
        atol=0.0,
    ).all(axis=1)
    first = overlap.index[differs][0] if differs.any() else None
    return _DayOutcome(new.loc[~known], int(known.sum()), int(differs.sum()), first, old)
