"""Which series a store holds, from its keys: ``data/{exchange}/{BASE_QUOTE}/{timeframe}/...``."""

from __future__ import annotations

import difflib

from scalpbot.ports import Store
from scalpbot.state.dataset import SeriesId

__all__ = ["stored_series", "unknown_series_hint"]


def stored_series(store: Store) -> list[tuple[str, str, str]]:
    """Return ``(exchange, BASE_QUOTE, timeframe)`` of every series with at least one partition, sorted."""
    found = set()
    for key in store.list("data/"):
        parts = key.split("/")
        if len(parts) >= 5:
            found.add((parts[1], parts[2], parts[3]))
    return sorted(found)


def unknown_series_hint(store: Store, series: SeriesId) -> str:
    """Return what the store holds instead of ``series`` ("; stored: ..." with a did-you-mean), or ``""``."""
    held = stored_series(store)
    if not held:
        return "; the store holds no bars yet"
    names = [f"{exchange} {pair.replace('_', '/')} {timeframe}" for exchange, pair, timeframe in held]
    wanted = f"{series.exchange} {series.symbol} {series.timeframe}"
    if wanted in names:
        return ""
    close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{hint}; stored: {', '.join(names[:8])}"
