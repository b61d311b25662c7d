"""Closed bars of one series as the execute path reads them: stored in the dataset, or held in memory.

Both answer the same two questions with the same rule: ``between`` by open time, ``tail`` by bar count. The
feature window is a count of stored bars (``tail``), so live trading, replays and backtests compute the same
features across a hole in the data: the window simply reaches further back, over the bars that exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scalpbot.core.bars import empty_bars
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.state.dataset import BarDataset, SeriesId

__all__ = ["MemoryHistory", "StoredHistory"]


@dataclass(frozen=True, slots=True)
class StoredHistory:
    """The bars of ``series`` in ``dataset`` (live trading: new bars appear as they are retrieved)."""

    dataset: BarDataset
    series: SeriesId

    def between(self, start: pd.Timestamp | None, last: pd.Timestamp) -> pd.DataFrame:
        """Return the stored bars with open time in ``[start, last]`` (``start`` ``None``: from the first)."""
        return self.dataset.read(self.series, start, last + timeframe_delta(self.series.timeframe))

    def tail(self, last: pd.Timestamp, count: int) -> pd.DataFrame:
        """Return the last ``count`` stored bars with open time ``<= last``."""
        return self.dataset.read_tail(self.series, last, count)

    def newest(self) -> pd.Timestamp | None:
        """Return the open time of the newest stored bar, or ``None``."""
        return self.dataset.last_open_time(self.series)


class MemoryHistory:
    """Bars held in memory (replays): the same answers as :class:`StoredHistory` over the same bars."""

    def __init__(self, bars: pd.DataFrame) -> None:
        self._bars = bars
        self._index = pd.DatetimeIndex(bars.index)

    def between(self, start: pd.Timestamp | None, last: pd.Timestamp) -> pd.DataFrame:
        """Return the bars with open time in ``[start, last]``."""
        lo = 0 if start is None else int(self._index.searchsorted(start, side="left"))
        hi = int(self._index.searchsorted(last, side="right"))
        return self._bars.iloc[lo:hi]

    def tail(self, last: pd.Timestamp, count: int) -> pd.DataFrame:
        """Return the last ``count`` bars with open time ``<= last``."""
        if count <= 0:
            return empty_bars()
        hi = int(self._index.searchsorted(last, side="right"))
        return self._bars.iloc[max(hi - count, 0) : hi]

    def newest(self) -> pd.Timestamp | None:
        """Return the open time of the last bar held, or ``None``."""
        return None if len(self._index) == 0 else pd.Timestamp(self._index[-1])
