"""Venue profiles kept in the store beside the bars, so training, backtests and replays run the same offline.

Layout: ``data/{exchange}/{BASE_QUOTE}/venue.json`` (the :meth:`~scalpbot.core.venue.Venue.to_dict` of the
profile read from the exchange), next to the ``{timeframe}/`` folders of its bars. :func:`resolve_venue` gives
the profile everything uses: the stored one, else the offline default, then the ``[venue]`` settings on top.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from scalpbot.core.venue import Venue, default_venue
from scalpbot.errors import ConfigError, CorruptArtifactError, ObjectNotFound
from scalpbot.ports import Store

__all__ = ["load_venue", "resolve_venue", "save_venue", "venue_key"]


def venue_key(exchange: str, symbol: str) -> str:
    """Return the store key of a market's profile: ``data/binance/BTC_USDT/venue.json``."""
    pair = symbol.replace("/", "_").replace(":", "_")
    return f"data/{exchange}/{pair}/venue.json"


def load_venue(store: Store, exchange: str, symbol: str) -> Venue | None:
    """Return the stored profile of ``exchange`` / ``symbol``, or ``None`` when none was fetched.

    Raise ``CorruptArtifactError`` for a profile that cannot be read (fetch it again with ``venue fetch``).
    """
    key = venue_key(exchange, symbol)
    try:
        data = store.get(key).data
    except ObjectNotFound:
        return None
    try:
        venue = Venue.from_dict(json.loads(data))
    except (ValueError, TypeError, ConfigError) as e:
        raise CorruptArtifactError(f"{key} cannot be read ({e}); run `scalpbot venue fetch` again") from None
    if venue.exchange != exchange or venue.symbol != symbol:
        raise CorruptArtifactError(
            f"{key} holds {venue.exchange} {venue.symbol}, not {exchange} {symbol}; run `scalpbot venue fetch`"
        )
    return venue


def save_venue(store: Store, venue: Venue) -> str:
    """Write ``venue`` beside its market's bars (replacing an earlier profile); return its key."""
    key = venue_key(venue.exchange, venue.symbol)
    store.put(key, json.dumps(venue.to_dict(), indent=2, sort_keys=True).encode())
    return key


def resolve_venue(store: Store, exchange: str, symbol: str, overrides: Mapping[str, Any]) -> Venue:
    """Return the profile to simulate and trade with: stored (else the offline default), then ``overrides``.

    ``overrides`` are the ``[venue]`` settings (``None`` values are not set); they are marked ``config``.
    """
    base = load_venue(store, exchange, symbol) or default_venue(exchange, symbol)
    return base.override(overrides, "config")
