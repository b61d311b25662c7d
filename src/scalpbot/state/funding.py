"""Funding-rate history of perpetual swaps, kept in the store beside the bars.

Layout: ``data/{exchange}/{BASE_QUOTE}/funding.json`` (``BTC_USDT_USDT`` for ``BTC/USDT:USDT``), next to the
``{timeframe}/`` folders of its bars and ``venue.json``: ``{"symbol": ..., "rates": [[time_ms, rate], ...]}`` in
time order, one row per funding time. A few kilobytes per year (three settlements a day), so one object.
Appending merges by time: the same window twice gives the same object; a rate that differs from the stored
one at the same time is refused (the venue does not revise settled rates).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from scalpbot.errors import CorruptArtifactError, DataError, ObjectNotFound
from scalpbot.ports import Store

__all__ = ["append_funding", "funding_key", "load_funding"]


def funding_key(exchange: str, symbol: str) -> str:
    """Return the store key of a swap's funding history: ``data/okx/BTC_USDT_USDT/funding.json``."""
    pair = symbol.replace("/", "_").replace(":", "_")
    return f"data/{exchange}/{pair}/funding.json"


def load_funding(
    store: Store,
    exchange: str,
    symbol: str,
    start: pd.Timestamp | None = None,
    last: pd.Timestamp | None = None,
) -> pd.Series:
    """Return the stored rates with funding time in ``[start, last]`` (UTC index ``funding_time``); empty if none.

    Raise ``CorruptArtifactError`` for an object that cannot be read (fetch it again).
    """
    key = funding_key(exchange, symbol)
    try:
        data = store.get(key).data
    except ObjectNotFound:
        return _series(np.empty(0, dtype=np.int64), np.empty(0))
    try:
        body = json.loads(data)
        rows = np.asarray(body["rates"], dtype=np.float64).reshape(-1, 2)
        if body["symbol"] != symbol:
            raise ValueError(f"it holds {body['symbol']}")
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptArtifactError(f"{key} cannot be read ({e}); fetch the funding history again") from None
    series = _series(rows[:, 0].astype(np.int64), rows[:, 1])
    if start is not None:
        series = series[series.index >= start]
    if last is not None:
        series = series[series.index <= last]
    return series


def append_funding(store: Store, exchange: str, symbol: str, rates: pd.Series) -> int:
    """Merge ``rates`` (by funding time, UTC) into the stored history; return how many times were new.

    Raise ``DataError`` for a rate that is not finite or that contradicts the stored rate at the same time.
    """
    if len(rates) and not np.isfinite(rates.to_numpy(dtype=np.float64)).all():
        raise DataError(f"funding rates of {exchange} {symbol} must be finite numbers")
    stored = load_funding(store, exchange, symbol)
    incoming = _series(
        pd.DatetimeIndex(rates.index).tz_convert("UTC").as_unit("ms").asi8, rates.to_numpy(dtype=np.float64)
    )
    incoming = incoming[~incoming.index.duplicated(keep="last")]
    common = stored.index.intersection(incoming.index)
    differ = common[
        ~np.isclose(stored.loc[common].to_numpy(), incoming.loc[common].to_numpy(), rtol=1e-9, atol=0)
    ]
    if len(differ):
        raise DataError(
            f"funding rate of {exchange} {symbol} at {differ[0]} is {incoming.loc[differ[0]]!r}, stored "
            f"{stored.loc[differ[0]]!r}; settled rates do not change: check the source"
        )
    new = incoming[~incoming.index.isin(stored.index)]
    if len(new) == 0:
        return 0
    merged = pd.concat([stored, new]).sort_index()
    times = pd.DatetimeIndex(merged.index).as_unit("ms").asi8
    body = {
        "symbol": symbol,
        "rates": [[int(t), float(r)] for t, r in zip(times, merged.to_numpy(), strict=True)],
    }
    store.put(funding_key(exchange, symbol), json.dumps(body).encode())
    return len(new)


def _series(times_ms: np.ndarray, rates: np.ndarray) -> pd.Series:
    index = pd.DatetimeIndex(pd.to_datetime(times_ms, unit="ms", utc=True), name="funding_time")
    return pd.Series(rates, index=index, name="funding_rate", dtype=np.float64)
