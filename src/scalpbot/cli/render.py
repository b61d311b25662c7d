"""Rendering helpers: one rich console for results, another on stderr for progress and warnings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def iso(ts: pd.Timestamp | None) -> str | None:
    """Return an ISO-8601 UTC string ``YYYY-MM-DDTHH:MM:SSZ`` or ``None``."""
    return None if ts is None else ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def print_json(payload: Any) -> None:
    """Print one JSON document on stdout, without rich markup."""
    print(json.dumps(payload, indent=2, allow_nan=False, default=_mapping))


def _mapping(value: object) -> dict[str, Any]:
    """Return a mapping value (such as :class:`~scalpbot.core.metrics.Metrics`) as the JSON object it reads as."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
