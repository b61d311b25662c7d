"""The command line's one date vocabulary: ISO-8601 dates and date-times, UTC or with an explicit offset.

Accepted: ``2024-12-30`` (midnight UTC), ``2024-12-30T12:00Z``, ``2024-12-30T12:00:00Z``,
``2024-12-30T12:00:00.250+01:00``, ``2024-12-30 12:00:00+00:00``. Refused with one line: anything else,
including ``01/12/2024`` (day or month first?), ``2024``, ``now``, ``Dec 8 2024`` and a date-time without a zone
(local time or UTC?). A range is checked for order where it is taken.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from scalpbot.errors import ConfigError

__all__ = ["parse_range", "parse_time"]

_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}"  # date
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"  # optional time, seconds and fraction
    r"(?:Z|[+-]\d{2}:\d{2}))?"  # the time needs its zone
)
_EXAMPLE = "use an ISO-8601 date or UTC time, e.g. 2024-12-30 or 2024-12-30T12:00:00Z"


def parse_time(value: str | None, option: str) -> datetime | None:
    """Return the aware UTC time written in ``value`` (``None`` stays ``None``); raise ``ConfigError`` otherwise."""
    if value is None:
        return None
    text = value.strip()
    if not _ISO.fullmatch(text):
        zone_missing = _ISO.fullmatch(text + "Z") is not None
        why = "has no time zone (add Z for UTC)" if zone_missing else "is not an ISO-8601 date or time"
        raise ConfigError(f"{option} {value!r} {why}; {_EXAMPLE}")
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigError(f"{option} {value!r} is not a valid date ({e}); {_EXAMPLE}") from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def parse_range(
    start: str | None, end: str | None, options: tuple[str, str] = ("--from", "--to")
) -> tuple[datetime | None, datetime | None]:
    """Return ``(start, end)`` parsed by :func:`parse_time`; ``ConfigError`` unless ``start < end`` when both are given."""
    first, last = parse_time(start, options[0]), parse_time(end, options[1])
    if first is not None and last is not None and first >= last:
        raise ConfigError(
            f"{options[0]} {start} is not before {options[1]} {end}; the range [{options[0]}, {options[1]}) "
            "would be empty: swap them"
        )
    return first, last
