"""Terminal tables that read at 80 columns and at 200: compact UTC times, long/short, one percent format.

Times are UTC: ``MM-DD HH:MM`` when every row is in one year (the year is in the title), else
``YYYY-MM-DD HH:MM``. Percentages are ``+1.23%`` everywhere; money has thousands separators and two decimals;
prices keep up to 8 significant digits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

__all__ = ["money", "percent", "price", "trades_table", "utc_times"]


def percent(value: object, *, signed: bool = True) -> str:
    """Return a fraction as ``+1.23%`` (``-`` when missing); rounding noise never shows as ``-0.00%``."""
    if (
        value is None
        or isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
    ):
        return "-"
    text = f"{value * 100:{'+' if signed else ''}.2f}%"
    return text[1:] if text in ("-0.00%", "+0.00%") else text


def money(value: object) -> str:
    """Return quote-currency money as ``-1,234.56``; never ``-0.00``."""
    if (
        value is None
        or isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
    ):
        return "-"
    text = f"{value:,.2f}"
    return "0.00" if text == "-0.00" else text


def price(value: float) -> str:
    """Return a price or quantity with up to 8 significant digits and thousands separators."""
    return f"{value:,.8g}" if math.isfinite(value) else "-"


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


def trades_table(trades: pd.DataFrame, title: str) -> Table:
    """Return the trades (backtest trade columns) with one row each and a totals row (count, wins, PnL, fees)."""
    entries, year_in = utc_times(pd.DatetimeIndex(trades["entry_time"]))
    exits, year_out = utc_times(pd.DatetimeIndex(trades["exit_time"]))
    year = year_in if year_in == year_out else ""
    table = Table(title=f"{title} (times UTC{', ' + year if year else ''})", show_footer=len(trades) > 0)
    side = trades["side"].to_numpy(dtype=np.int64)
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    fees = trades["fees"].to_numpy(dtype=np.float64)
    wins = int((pnl > 0).sum())
    columns: list[tuple[str, str, str]] = [
        ("#", "right", "total"),
        ("entry", "left", ""),
        ("side", "left", ""),
        ("entry price", "right", ""),
        ("exit", "left", ""),
        ("exit price", "right", ""),
        ("qty", "right", ""),
        ("pnl", "right", money(float(pnl.sum()))),
        ("fees", "right", money(float(fees.sum()))),
        ("reason", "left", f"{wins}/{len(trades)} won"),
    ]
    for name, justify, footer in columns:
        table.add_column(name, justify=justify, footer=footer, no_wrap=name in ("entry", "exit"))  # type: ignore[arg-type]
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
        table.add_row(
            str(number),
            entry,
            "long" if s > 0 else "short",
            price(entry_price),
            exit_,
            price(exit_price),
            f"{qty:.6g}",
            money(p),
            money(f),
            reason,
        )
    return table
