"""The metrics of a whole account that trades several symbols (pure): one equity curve, one trade list.

The account's equity at a bar close is the sum of its symbols' equity curves (quote currency; the symbols of
one bot share their quote currency). Symbols whose bars differ are aligned on the union of their bar times:
a symbol without a bar keeps its last equity (and, before its first bar in the window, its first). Trade
statistics (win rate, risk/reward, ...) are over every symbol's trades together, and return on capital is the
net PnL over the **peak gross notional committed at once** - the sum of the entry notionals of the positions
open together - which for one symbol, holding one position at a time, is the largest entry notional, exactly
:func:`scalpbot.core.metrics.return_on_capital`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from scalpbot.core.metrics import Metrics, compute_metrics

__all__ = ["account_equity", "peak_gross_notional", "portfolio_metrics"]


def account_equity(curves: Mapping[str, pd.Series]) -> pd.Series:
    """Return the sum of the symbols' equity curves (bar-close values on UTC open times) on their union."""
    present = [curve for curve in curves.values() if len(curve)]
    if not present:
        return pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=np.float64, name="equity")
    index = present[0].index
    for curve in present[1:]:
        index = index.union(curve.index)
    aligned = [curve.reindex(index).ffill().bfill() for curve in present]
    return pd.Series(np.sum([a.to_numpy(np.float64) for a in aligned], axis=0), index=index, name="equity")


def peak_gross_notional(trades: pd.DataFrame) -> float:
    """Return the largest sum of entry notionals (``qty * entry_price``, quote currency) held at one time.

    A position counts from its entry time until its exit time (an open one to the end); at one instant exits
    come before entries, as a reversal closes at the open where the next position opens.
    """
    if trades.empty:
        return 0.0
    notional = np.abs(trades["qty"].to_numpy(np.float64) * trades["entry_price"].to_numpy(np.float64))
    entries = pd.DatetimeIndex(trades["entry_time"]).asi8
    is_open = (trades["exit_reason"].astype(str) == "open").to_numpy()
    exits = np.where(is_open, np.iinfo(np.int64).max, pd.DatetimeIndex(trades["exit_time"]).asi8)
    times = np.concatenate([exits, entries])
    steps = np.concatenate([-notional, notional])
    order = np.lexsort((np.concatenate([np.zeros(len(exits)), np.ones(len(entries))]), times))
    return float(max(np.max(np.cumsum(steps[order])), 0.0))


def portfolio_metrics(trades: pd.DataFrame, equity: pd.Series) -> Metrics:
    """Return :func:`~scalpbot.core.metrics.compute_metrics` of every symbol's trades on the account's equity
    curve, with return on capital over the peak gross notional (see the module docstring)."""
    metrics = compute_metrics(trades, equity)
    peak = peak_gross_notional(trades)
    pnl = float(trades["pnl"].sum()) if len(trades) else 0.0
    ratio = pnl / peak if peak > 0 and len(trades) else None
    return dataclasses.replace(
        metrics, return_on_capital=ratio if ratio is None or math.isfinite(ratio) else None
    )
