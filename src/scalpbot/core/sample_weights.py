"""Return-attribution sample weights for the labels (pure).

A class label keeps the sign of what followed a decision and drops its size: a row at the start of a 1 %
move and a row that caught its last 0.25 % both say "long wins". Trained on them alike, a model learns to
want every bar of a move, and enters late on many. Weighting each row by the size of the move its label
spans (López de Prado, *Advances in Financial Machine Learning*, 4.10: the return attributed to the label,
here over equally concurrent labels, one per bar) makes the rows that carry most of a move count most, and
the rows whose label a few basis points decided count least.

The move of the decision on the close of bar ``t`` is ``|log(close[t + H] / open[t + 1])|``: from the entry
(the next open) to the end of the label's window, the bars ``t + 1 .. t + H`` that its label reads and no
other bar. Weights are scaled to a mean of 1 over the rows they weigh.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalpbot.core.labels import check_horizon, ohlc_prices

__all__ = ["label_moves", "mean_one"]


def label_moves(bars: pd.DataFrame, horizon: int) -> np.ndarray:
    """Return ``|log(close[t + horizon] / open[t + 1])|`` per bar ``t`` (a fraction, float64); NaN where
    ``t + horizon`` is past the last bar."""
    check_horizon(horizon)
    open_, _, _, close = ohlc_prices(bars)
    n = open_.shape[0]
    moves = np.full(n, np.nan)
    if n > horizon:
        with np.errstate(divide="ignore", invalid="ignore"):
            moves[: n - horizon] = np.abs(np.log(close[horizon:] / open_[1 : n - horizon + 1]))
    return moves


def mean_one(weights: np.ndarray) -> np.ndarray:
    """Return ``weights`` (finite, >= 0) scaled to a mean of 1 as float32; all ones where they sum to 0."""
    weights = np.asarray(weights, dtype=np.float64)
    total = float(weights.sum())
    if not np.isfinite(total) or total <= 0.0:
        return np.ones(weights.shape, dtype=np.float32)
    return (weights * (weights.size / total)).astype(np.float32)
