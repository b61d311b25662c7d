"""EventBridge schedule expressions: validate ``rate(...)`` and ``cron(...)`` and return their period.

The rules are those of EventBridge (CloudWatch Events) scheduled rules:

- ``rate(VALUE UNIT)``: VALUE a positive integer, UNIT ``minute``/``hour``/``day`` for 1 and
  ``minutes``/``hours``/``days`` otherwise (``rate(1 minutes)`` and ``rate(5 minute)`` are rejected).
- ``cron(MIN HOUR DOM MONTH DOW YEAR)``: six fields, each ``*``, values, ranges, lists and ``/`` steps within
  the field's bounds, month and weekday names, ``L``/``W`` in day-of-month, ``L``/``#`` in day-of-week, and
  exactly one of day-of-month and day-of-week ``?``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["ScheduleError", "schedule_period"]

_RATE = re.compile(r"rate\((?P<value>[1-9][0-9]*) (?P<unit>minutes?|hours?|days?)\)")
_CRON = re.compile(r"cron\((?P<fields>[^()]*)\)")
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class ScheduleError(ValueError):
    """The expression is not a valid EventBridge schedule expression."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_FIELDS = (
    _Field("minutes", 0, 59),
    _Field("hours", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 1, 7, _WEEKDAYS),
    _Field("year", 1970, 2199),
)


def schedule_period(expression: str) -> timedelta | None:
    """Return the time between two runs of ``expression``; ``None`` for a cron of irregular spacing.

    Raise ``ScheduleError`` naming the problem when ``expression`` is not valid.
    """
    if expression.startswith("rate("):
        return _rate_period(expression)
    if expression.startswith("cron("):
        return _cron_period(expression)
    raise ScheduleError(f"{expression!r}: not rate(...) or cron(...)")


def _rate_period(expression: str) -> timedelta:
    match = _RATE.fullmatch(expression)
    if match is None:
        raise ScheduleError(
            f"{expression!r}: must be rate(VALUE UNIT), VALUE > 0, UNIT minute(s), hour(s), day(s)"
        )
    value, unit = int(match["value"]), match["unit"]
    if (value == 1) != (not unit.endswith("s")):
        raise ScheduleError(f"{expression!r}: the unit is singular for 1 and plural otherwise")
    return value * _UNITS[unit.removesuffix("s")]


def _cron_period(expression: str) -> timedelta | None:
    match = _CRON.fullmatch(expression)
    if match is None:
        raise ScheduleError(f"{expression!r}: must be cron(MIN HOUR DOM MONTH DOW YEAR)")
    fields = match["fields"].split()
    if len(fields) != len(_FIELDS) or " ".join(fields) != match["fields"]:
        raise ScheduleError(f"{expression!r}: needs 6 fields separated by single spaces")
    for text, field in zip(fields, _FIELDS, strict=True):
        _check_field(expression, text, field)
    minute, hour, dom, _, dow, _ = fields
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'")
    return _regular_period(minute, hour, dom, fields[3], dow, fields[5])


def _check_field(expression: str, text: str, field: _Field) -> None:
    for item in text.split(","):
        if not _item_ok(item, field):
            raise ScheduleError(f"{expression!r}: {field.name} {text!r} is not valid")


def _item_ok(item: str, field: _Field) -> bool:
    if item == "*":
        return True
    if item == "?":
        return field.name in ("day-of-month", "day-of-week")
    if field.name == "day-of-month" and (item in ("L", "LW") or re.fullmatch(r"[0-9]{1,2}W", item)):
        return item in ("L", "LW") or _value(item[:-1], field) is not None
    if field.name == "day-of-week":
        if item == "L":
            return True
        if item.endswith("L") or "#" in item:
            day, _, nth = item.removesuffix("L").partition("#")
            return _value(day, field) is not None and (not nth or nth in ("1", "2", "3", "4", "5"))
    base, slash, step = item.partition("/")
    if slash and (not step.isdigit() or not 1 <= int(step) <= field.high):
        return False
    if base == "*" and slash:
        return True
    first, dash, last = base.partition("-")
    low, high = _value(first, field), _value(last, field) if dash else None
    return low is not None and (not dash or high is not None)


def _value(text: str, field: _Field) -> int | None:
    if text.upper() in field.names:
        return field.names.index(text.upper()) + 1
    if not text.isdigit():
        return None
    value = int(text)
    return value if field.low <= value <= field.high else None


def _regular_period(minute: str, hour: str, dom: str, month: str, dow: str, year: str) -> timedelta | None:
    """Return the period of the common regular shapes; ``None`` for anything else."""
    every = {"*", "?"}
    if month != "*" or year != "*":
        return None
    step = re.fullmatch(r"(?:\*|0)/([0-9]+)", minute)
    if hour == "*" and dom in every and dow in every:
        if minute == "*":
            return timedelta(minutes=1)
        if step and 60 % int(step[1]) == 0:
            return timedelta(minutes=int(step[1]))
        if minute.isdigit():
            return timedelta(hours=1)
        return None
    if not minute.isdigit():
        return None
    step = re.fullmatch(r"(?:\*|0)/([0-9]+)", hour)
    if dom in every and dow in every:
        if step and 24 % int(step[1]) == 0:
            return timedelta(hours=int(step[1]))
        return timedelta(days=1) if hour.isdigit() else None
    if hour.isdigit() and dom == "?" and re.fullmatch(r"[1-7]|[A-Za-z]{3}", dow):
        return timedelta(days=7)
    return None
