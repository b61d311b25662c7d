"""Bar timeframes: parsing and alignment.

Timeframes use the exchange notation (``1m``, ``5m``, ``1h``, ``1d``). A bar is labelled by its
**open** time; a bar with open time ``t`` covers ``[t, t + timeframe)`` and is closed at ``t + timeframe``.
"""

from __future__ import annotations

import difflib

import pandas as pd

from scalpbot.errors import ConfigError

TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "12h": 43200,
    "1d": 86400,
}


def timeframe_seconds(timeframe: str) -> int:
    """Return the bar length in seconds; raise ``ConfigError`` naming the supported timeframes."""
    try:
        return TIMEFRAME_SECONDS[timeframe]
    except KeyError:
        hint = difflib.get_close_matches(timeframe, TIMEFRAME_SECONDS, n=1)
        did_you_mean = f" (did you mean '{hint[0]}'?)" if hint else ""
        supported = ", ".join(TIMEFRAME_SECONDS)
        raise ConfigError(
            f"timeframe '{timeframe}' is not supported{did_you_mean}; use one of {supported}"
        ) from None


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """Return the bar length as a ``pandas.Timedelta``."""
    return pd.Timedelta(seconds=timeframe_seconds(timeframe))


def last_closed_open(now: pd.Timestamp, timeframe: str) -> pd.Timestamp:
    """Return the open time of the last bar that is closed at ``now`` (UTC)."""
    step = timeframe_delta(timeframe)
    return now.floor(step) - step
