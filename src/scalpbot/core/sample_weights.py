"""Return-attribution sample weights for the labels (pure).

A class label keeps the sign of what followed a decision and drops its size: a row at the start of a 1 %
move and a row that caught its last 0.25 % both say "long wins". Trained on them alike, a model learns to
want every bar of a move, and enters late on many. Weighting each row by the size of the move its label
spans (López de Prado, *Advances in Financial Machine Learning*, 4.10: the return attributed to the label,
here over equally concurrent labels, one per bar) makes the rows that carry most of a move count most, and
the rows whose label a few basis points decided count least.

The move of the decision on the close of bar ``t`` is ``|log(close[t + b] / open[t + 1])|``: from the entry
(the next open) to the close of the bar ``t + b`` that decided its label - ``b = H`` for a holding label and
a barrier label that timed out, the bar of the barrier touched for a barrier label that a side won - so no bar
outside the label's window ``t + 1 .. t + H`` is read. Weights are scaled to a mean of 1 over the rows they
weigh.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalpbot.core.labels import check_horizon, ohlc_prices

__all__ = ["label_moves", "mean_one"]


def label_moves(bars: pd.DataFrame, horizon: int, exit_bars: np.ndarray | None = None) -> np.ndarray:
    """Return ``|log(close[t + b] / open[t + 1])|`` per bar ``t`` (a fraction, float64), ``b`` the row's
    ``exit_bars`` (bars after ``t``, 1 .. ``horizon``; None: ``horizon`` for every row); NaN where
    ``t + horizon`` is past the last bar or ``b`` is not in 1 .. ``horizon``."""
    check_horizon(horizon)
    open_, _, _, close = ohlc_prices(bars)
    n = open_.shape[0]
    moves = np.full(n, np.nan)
    if n <= horizon:
        return moves
    rows = np.arange(n - horizon)
    b = (
        np.full(rows.size, horizon)
        if exit_bars is None
        else np.asarray(exit_bars)[: rows.size].astype(np.int64)
    )
    valid = (b >= 1) & (b <= horizon)
    exits = rows + np.where(valid, b, horizon)
    with np.errstate(divide="ignore", invalid="ignore"):
        moves[rows] = np.where(valid, np.abs(np.log(close[exits] / open_[rows + 1])), np.nan)
    return moves


def mean_one(weights: np.ndarray) -> np.ndarray:
    """Return ``weights`` (finite, >= 0) scaled to a mean of 1 as float32; all ones where they sum to 0."""
    weights = np.asarray(weights, dtype=np.float64)
    total = float(weights.sum())
    if not np.isfinite(total) or total <= 0.0:
        return np.ones(weights.shape, dtype=np.float32)
    return (weights * (weights.size / total)).astype(np.float32)
