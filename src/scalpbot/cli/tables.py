"""Terminal tables that read at 80 columns and at 200: compact UTC times, long/short, one percent format.

Times are UTC: ``MM-DD HH:MM`` when every row is in one year (the year is in the title), else
``YYYY-MM-DD HH:MM``. Percentages are ``+1.23%`` everywhere; money has thousands separators and two decimals; prices
have 2 decimals from 1,000 up, 4 from 1, else 6 significant digits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, TypeGuard

import numpy as np
import pandas as pd
from rich import box
from rich.table import Table

__all__ = ["PERCENT_METRICS", "WIDE", "metric_text", "money", "percent", "price", "trades_table", "utc_times"]


def _finite(value: object) -> TypeGuard[int | float]:
    """Return whether ``value`` is a finite number (not a bool, not missing)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def percent(value: object, *, signed: bool = True) -> str:
    """Return a fraction as ``+1.23%`` (``-`` when missing); rounding noise never shows as ``-0.00%``."""
    if not _finite(value):
        return "-"
    text = f"{value * 100:{'+' if signed else ''}.2f}%"
    return text[1:] if text in ("-0.00%", "+0.00%") else text


def money(value: object) -> str:
    """Return quote-currency money as ``-1,234.56``; never ``-0.00``."""
    if not _finite(value):
        return "-"
    text = f"{value:,.2f}"
    return "0.00" if text == "-0.00" else text


def price(value: float) -> str:
    """Return a price: 2 decimals from 1,000 up, 4 from 1, else 6 significant digits (one format per size)."""
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 1_000:
        return f"{value:,.2f}"
    return f"{value:,.4f}" if abs(value) >= 1 else f"{value:.6g}"


def utc_times(times: pd.DatetimeIndex) -> tuple[list[str], str]:
    """Return compact UTC texts for ``times`` and the year they share (``""`` when they span several)."""
    index = pd.DatetimeIndex(times)
    if len(index) == 0:
        return [], ""
    index = index.tz_convert("UTC")
    years = set(index.year)
    if len(years) == 1:
        return [t.strftime("%m-%d %H:%M") for t in index], str(years.pop())
    return [t.strftime("%Y-%m-%d %H:%M") for t in index], ""


WIDE = 110
"""From this many terminal columns on, tables show every column (quantity and fees too)."""


PERCENT_METRICS = frozenset({"total_return", "win_rate", "max_drawdown", "return_on_capital", "exposure"})
_SIGNED = frozenset({"total_return", "return_on_capital"})


def metric_text(name: str, value: object) -> str:
    """Return a metric as the CLI shows it: fractions as percentages, counts whole, the rest with 2 decimals."""
    if name in PERCENT_METRICS:
        return percent(value, signed=name in _SIGNED)
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return money(value)


def trades_table(trades: pd.DataFrame, title: str, width: int = 200) -> Table:
    """Return the trades (backtest trade columns), one row each, and a totals row (count, PnL, fees, wins).

    Below :data:`WIDE` columns (``width``: the terminal's) quantity and fees are left out so a row fits 80.
    """
    entries, year_in = utc_times(pd.DatetimeIndex(trades["entry_time"]))
    exits, year_out = utc_times(pd.DatetimeIndex(trades["exit_time"]))
    year = year_in if year_in == year_out else ""
    wide = width >= WIDE
    table = Table(
        title=f"{title} (times UTC{', ' + year if year else ''})",
        show_footer=len(trades) > 0,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )
    side = trades["side"].to_numpy(dtype=np.int64)
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    fees = trades["fees"].to_numpy(dtype=np.float64)
    wins = int((pnl > 0).sum())
    columns: list[tuple[str, str, str, bool]] = [
        ("#", "right", f"{len(trades)}", True),
        ("entry", "left", "trades", True),
        ("side", "left", "", True),
        ("entry price", "right", "", True),
        ("exit", "left", "", True),
        ("exit price", "right", "", True),
        ("qty", "right", "", wide),
        ("pnl", "right", money(float(pnl.sum())), True),
        ("fees", "right", money(float(fees.sum())), wide),
        ("reason", "left", f"{wins} won", True),
    ]
    shown = [c for c in columns if c[3]]
    for name, justify, footer, _ in shown:
        table.add_column(name, justify=justify, footer=footer, no_wrap=True)  # type: ignore[arg-type]
    rows: Iterator[Any] = zip(
        entries,
        side,
        trades["entry_price"].to_numpy(dtype=np.float64),
        exits,
        trades["exit_price"].to_numpy(dtype=np.float64),
        trades["qty"].to_numpy(dtype=np.float64),
        pnl,
        fees,
        trades["exit_reason"].astype(str),
        strict=True,
    )
    for number, (entry, s, entry_price, exit_, exit_price, qty, p, f, reason) in enumerate(rows, start=1):
        cells = {
            "#": str(number),
            "entry": entry,
            "side": "long" if s > 0 else "short",
            "entry price": price(entry_price),
            "exit": exit_,
            "exit price": price(exit_price),
            "qty": f"{qty:.6g}",
            "pnl": money(p),
            "fees": money(f),
            "reason": reason,
        }
        table.add_row(*(cells[name] for name, *_ in shown))
    return table
