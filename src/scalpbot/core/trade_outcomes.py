"""The outcome of one trade per decision bar under a policy's own exits (pure): the meta-labels' target.

For a decision on the close of bar ``t`` with side ``side[t]`` (+1 long, -1 short, 0 none) a trade enters at
``open[t + 1]`` (worsened by ``slippage``) with SL and TP at fractions ``sl[t]`` and ``tp[t]`` of the entry price,
checked on bars ``t + 1 .. t + max_hold`` as the backtest kernel checks them
(:func:`scalpbot.core.labels.barrier_exit_nb`); when neither fills it exits at ``close[t + max_hold]``, which
equals the kernel's time stop at ``open[t + max_hold + 1]`` on a market that trades without pause. ``fee`` is
charged on both fills' notional. The outcome is the net return per unit of entry notional (0.004 = +0.4 %).
As for the labels, the stop and target prices are not rounded to a price tick and a swap's funding is not
charged: the backtest that scores a policy does both.

Each row is one trade on its own (the backtest would skip a signal while a position is open): a row's outcome
asks whether *this* entry pays, which is what a filter of entries needs to learn. A row is NaN where its side is
0, its SL/TP is not positive, or its trade would need a bar at or after ``end`` (a caller passes the end of the
window the outcomes must not read past: a fold's end keeps the next fold out of them).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from scalpbot.core.backtest.enums import ExitReason
from scalpbot.core.backtest.nb import fill_price_nb
from scalpbot.core.labels import barrier_exit_nb
from scalpbot.errors import DataError

__all__ = ["trade_outcomes", "trade_outcomes_nb"]


@njit(cache=True)
def trade_outcomes_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    side: np.ndarray,
    sl: np.ndarray,
    tp: np.ndarray,
    max_hold: int,
    fee: float,
    slippage: float,
    end: int,
) -> np.ndarray:
    """Return the net return per unit of entry notional of each row's trade (module docstring), NaN if none."""
    n = open_.shape[0]
    out = np.full(n, np.nan)
    last = min(end, n)
    for t in range(n):
        d = int(side[t])
        if d == 0 or not (sl[t] > 0.0 and tp[t] > 0.0) or t + max_hold >= last:
            continue
        reason, _, pnl = barrier_exit_nb(d, t, max_hold, open_, high, low, sl[t], tp[t], fee, slippage)
        entry = fill_price_nb(open_[t + 1], d, slippage)
        if reason == ExitReason.time:
            exit_price = fill_price_nb(close[t + max_hold], -d, slippage)
            pnl = d * (exit_price - entry) - (exit_price + entry) * fee
        out[t] = pnl / entry
    return out


def trade_outcomes(
    prices: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    side: np.ndarray,
    sl: np.ndarray,
    tp: np.ndarray,
    *,
    max_hold: int,
    fee: float,
    slippage: float,
    end: int | None = None,
) -> np.ndarray:
    """Return each decision row's trade outcome (module docstring) from ``prices`` ``(open, high, low, close)``.

    ``side``/``sl``/``tp``: one per bar, as :func:`scalpbot.core.policy.decide_arrays` returns them;
    ``max_hold`` > 0 bars; ``end``: no trade reads bar ``end`` or later (default: the last bar).
    """
    open_, high, low, close = (np.ascontiguousarray(p, dtype=np.float64) for p in prices)
    n = open_.shape[0]
    if not (side.shape == sl.shape == tp.shape == (n,)):
        raise DataError(
            f"side, sl and tp must have one row per bar ({n}); got {side.shape}, {sl.shape}, {tp.shape}"
        )
    if max_hold < 1:
        raise DataError(f"max_hold must be at least 1 bar for a trade outcome; got {max_hold}")
    return trade_outcomes_nb(
        open_,
        high,
        low,
        close,
        np.ascontiguousarray(side, dtype=np.int64),
        np.ascontiguousarray(sl, dtype=np.float64),
        np.ascontiguousarray(tp, dtype=np.float64),
        int(max_hold),
        float(fee),
        float(slippage),
        n if end is None else int(end),
    )
