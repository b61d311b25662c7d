"""HTML tables of escaped cells, and the value conversions the page and the JSON companion share.

A cell shows ``None``, NaN and NaT as ``-``, numbers with thousands separators (2 decimals from 1 up, 4
significant digits below), times as ISO-8601 UTC and nested values as compact JSON; everything is escaped.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["cell", "iso_utc", "jsonable", "key_values", "records_table", "table"]


def iso_utc(moment: datetime) -> str:
    """Return an aware time as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), the format of the CLI's JSON."""
    return pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def jsonable(value: object) -> Any:
    """Return ``value`` as plain JSON types: NaN and infinity become ``None``, times ISO-8601 UTC strings."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return iso_utc(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [jsonable(v) for v in value]
    return str(value)


def _number(value: float) -> str:
    """Return 2 decimals from 1 up, 4 significant digits below; rounding noise (below 1e-9) is ``0.00``."""
    if not math.isfinite(value):
        return "-"
    if abs(value) < 1e-9:
        return "0.00"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"


def scalar_text(value: object, number: Callable[[float], str] = _number) -> str | None:
    """Return the text of a scalar (``-`` for none, yes/no, ``1,234``, ``number`` for a float), else ``None``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return number(value)
    return None


def cell(value: object) -> str:
    """Return one table cell's content, escaped: ``None`` as ``-``, nested values as compact JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    text = scalar_text(value)
    if text is not None:
        return text
    if isinstance(value, datetime):
        return html.escape(iso_utc(value) if value.tzinfo is not None else value.isoformat())
    if isinstance(value, Mapping | list | tuple):
        return f"<code>{html.escape(json.dumps(jsonable(value), separators=(', ', ': ')))}</code>"
    return html.escape(str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    """Return a table of already-escaped cells; the header texts are escaped here."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{content}</td>" for content in row) + "</tr>" for row in rows)
    attr = f' class="{css}"' if css else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def records_table(records: Sequence[Mapping[str, Any]], first: Sequence[str] = ()) -> str:
    """Return one row per mapping, columns the union of keys (``first`` ones first, then by appearance)."""
    columns = list(first)
    for record in records:
        columns.extend(str(k) for k in record if str(k) not in columns)
    rows = [[cell(record.get(c)) for c in columns] for record in records]
    return table([c.replace("_", " ") for c in columns], rows, "records")


def key_values(mapping: Mapping[str, Any]) -> str:
    """Return a two-column table: each key (underscores as spaces) and its value."""
    rows = [[html.escape(str(k).replace("_", " ")), cell(v)] for k, v in mapping.items()]
    return table(["", "value"], rows, "key-values")
