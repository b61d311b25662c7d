"""Read a perpetual swap's funding-rate history from its exchange through ccxt's ``fetch_funding_rate_history``.

Venues page the history differently, so each is walked the way it answers without gaps: OKX newest first,
backwards with ``after`` (records older than a funding time, up to 100 a page); Binance USD-M and others
oldest first, forwards from ``since`` (``startTime``). Rates are the settled ones (OKX ``realizedRate``, Binance
``fundingRate``), as ccxt reports them in ``fundingRate``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from scalpbot.adapters.ccxt.common import RetryPolicy, connect
from scalpbot.errors import ConfigError

__all__ = ["fetch_funding"]

_PAGE = 100
_MAX_PAGES = 1_000


def fetch_funding(
    exchange_id: str,
    symbol: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    config: Mapping[str, Any] | None,
    api_urls: Mapping[str, Any] | None,
    max_attempts: int = 5,
) -> pd.Series:
    """Return the funding rates of ``symbol`` with funding time in ``[start, end)`` (UTC index), oldest first.

    ``config`` is ccxt's constructor dict, ``api_urls`` replaces ``urls['api']``. Raise ``ConfigError`` for a
    symbol that is not a perpetual swap, ``ExchangeError`` if the venue fails.
    """
    ex, calls = connect(
        exchange_id,
        config,
        api_urls=api_urls,
        retry=RetryPolicy(max_attempts=max_attempts),
        sleep=time.sleep,
        rng=None,
        strict_json=True,
    )
    markets = calls.call("loading markets", ex.load_markets)
    market = markets.get(symbol)
    if market is None or not market.get("swap"):
        raise ConfigError(
            f"'{symbol}' is not a perpetual swap on {exchange_id}; funding exists only for swaps, e.g. BTC/USDT:USDT"
        )
    low, high = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    rows: dict[int, float] = {}
    if exchange_id == "okx":
        cursor = high
        for _ in range(_MAX_PAGES):
            page = calls.call(
                "reading the funding history",
                ex.fetch_funding_rate_history,
                symbol,
                None,
                _PAGE,
                {"after": str(cursor)},
            )
            times = [int(r["timestamp"]) for r in page]
            rows.update({int(r["timestamp"]): float(r["fundingRate"]) for r in page})
            if not times or min(times) < low:
                break
            cursor = min(times)
    else:
        since = low
        for _ in range(_MAX_PAGES):
            page = calls.call(
                "reading the funding history", ex.fetch_funding_rate_history, symbol, since, _PAGE
            )
            times = [int(r["timestamp"]) for r in page]
            rows.update({int(r["timestamp"]): float(r["fundingRate"]) for r in page})
            if not times or max(times) >= high or max(times) < since:
                break
            since = max(times) + 1
    kept = sorted((t, r) for t, r in rows.items() if low <= t < high)
    index = pd.DatetimeIndex(pd.to_datetime([t for t, _ in kept], unit="ms", utc=True), name="funding_time")
    return pd.Series([r for _, r in kept], index=index, name="funding_rate", dtype="float64")
