"""Turn model outputs into trades: class probabilities and predicted volatility in, a ``Decision`` out. Pure.

For each closed bar ``t`` the model gives ``probs[t] = (p_short_wins, p_neither, p_long_wins)`` and ``vol[t]``,
the forward volatility over the label horizon as a fraction of price (e.g. 0.002). The rule, in this order:

1. No trade (side 0, size/sl/tp 0.0) unless every probability and ``vol`` is finite and ``vol > 0``.
2. ``edge = p_long - p_short``; long if ``edge > 0``, short if ``edge < 0`` and ``allow_short`` (then
   ``edge = -edge``); enter only if ``edge >= entry_threshold`` and ``p_win >= min_confidence``, where ``p_win``
   is the probability of the chosen side winning.
3. ``sl = clip(sl_mult * vol, min_stop, max_stop)``, ``tp = clip(tp_mult * vol, min_stop, max_stop)``: fractions
   of the fill price, as the backtest kernel takes them.
4. ``size = min(risk_per_trade / sl * min(1, edge / full_size_edge), max_position)``: the fraction of equity
   committed as notional, so that a stop-out loses ``risk_per_trade`` of equity (before fees, slippage and gaps)
   when the model's edge reaches ``full_size_edge``, and proportionally less below it (``full_size_edge`` 0:
   always the full risk). ``max_position`` caps the notional (1.0 = no leverage).

``decide`` (one bar, for the execute job) runs :func:`_decide_row` as plain Python; ``decide_arrays`` and
``fill_signals_nb`` (backtests, tuning) run the same function compiled by numba, so both agree to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from scalpbot.core.policy_params import KernelParams, ParamBounds, StrategyParams
from scalpbot.errors import DataError

__all__ = [
    "Decision",
    "ParamBounds",
    "StrategyParams",
    "decide",
    "decide_arrays",
    "fill_signals_nb",
    "prediction_arrays",
    "signals_frame",
]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do at the next open: ``side`` +1 long, -1 short, 0 nothing; ``size`` a fraction of equity as
    notional; ``sl``/``tp`` fractional distances from the fill price (all 0.0 when ``side`` is 0)."""

    side: int
    size: float
    sl: float
    tp: float


def _decide_row(
    p_short: float, p_neither: float, p_long: float, vol: float, k: KernelParams
) -> tuple[int, float, float, float]:
    """Return ``(side, size, sl, tp)`` for one bar (see the module docstring); runs in Python and in numba.

    The entry test uses ``&`` rather than ``and``: the edge's sign is random from bar to bar, and in a
    year-long loop mispredicted branches cost more than evaluating every condition (2x in ``bench``).
    """
    edge = p_long - p_short
    strength = abs(edge)
    enter = (
        (strength >= k.entry_threshold)
        & (max(p_long, p_short) >= k.min_confidence)
        & ((edge > 0.0) | ((edge < 0.0) & k.allow_short))
        & (vol > 0.0)
        & math.isfinite(p_short + p_neither + p_long + vol)  # a sum is finite only if every term is
    )
    if not enter:
        return 0, 0.0, 0.0, 0.0
    sl = min(max(k.sl_mult * vol, k.min_stop), k.max_stop)
    tp = min(max(k.tp_mult * vol, k.min_stop), k.max_stop)
    scale = 1.0 if strength >= k.full_size_edge else strength / k.full_size_edge
    size = min(k.risk_per_trade / sl * scale, k.max_position)
    return (1 if edge > 0.0 else -1), size, sl, tp


_decide_row_nb = njit(cache=True, inline="always")(_decide_row)


@njit(cache=True)
def fill_signals_nb(
    probs: np.ndarray,
    vol: np.ndarray,
    k: KernelParams,
    side: np.ndarray,
    size: np.ndarray,
    sl: np.ndarray,
    tp: np.ndarray,
) -> int:
    """Write each bar's side into ``side`` and, on bars that trade, size/sl/tp; return how many bars trade.

    ``probs`` is ``(n, 3)`` (p_short, p_neither, p_long), ``vol`` ``(n,)``. Rows with side 0 keep whatever
    ``size``/``sl``/``tp`` held (the backtest kernel ignores them): start from zeros for clean arrays. Writing
    only trading rows keeps a tuning trial's memory traffic to one byte per bar plus its entries.
    """
    entries = 0
    for t in range(vol.shape[0]):
        d, s, a, b = _decide_row_nb(probs[t, 0], probs[t, 1], probs[t, 2], vol[t], k)
        side[t] = d
        if d != 0:
            size[t] = s
            sl[t] = a
            tp[t] = b
            entries += 1
    return entries


def decide(probs: np.ndarray, vol: float, params: StrategyParams) -> Decision:
    """Return the decision for one closed bar from its probabilities ``(p_short, p_neither, p_long)`` and vol.

    ``vol`` is the predicted forward volatility as a fraction of price. Non-finite inputs give no trade.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (3,):
        raise DataError(f"probs must have shape (3,) as (p_short, p_neither, p_long); got shape {p.shape}")
    side, size, sl, tp = _decide_row(
        float(p[0]), float(p[1]), float(p[2]), float(vol), params.kernel_params()
    )
    return Decision(side=side, size=size, sl=sl, tp=tp)


def prediction_arrays(probs: np.ndarray, vol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``probs`` ``(n, 3)`` and ``vol`` ``(n,)`` as contiguous float64 arrays (no copy when they are)."""
    p = np.ascontiguousarray(probs, dtype=np.float64)
    v = np.ascontiguousarray(vol, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise DataError(
            f"probs must have shape (n, 3) as (p_short, p_neither, p_long) per bar; got shape {p.shape}"
        )
    if v.shape != (p.shape[0],):
        raise DataError(f"vol must have shape ({p.shape[0]},) like probs' rows; got shape {v.shape}")
    return p, v


def decide_arrays(
    probs: np.ndarray, vol: np.ndarray, params: StrategyParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(side int8, size, sl, tp, max_hold int64)`` arrays, one decision per row of ``probs``/``vol``.

    ``probs`` is ``(n, 3)``, ``vol`` ``(n,)`` (fraction of price); row ``t`` equals ``decide(probs[t], vol[t])``.
    """
    p, v = prediction_arrays(probs, vol)
    n = v.shape[0]
    side = np.empty(n, dtype=np.int8)
    size, sl, tp = np.zeros(n), np.zeros(n), np.zeros(n)
    fill_signals_nb(p, v, params.kernel_params(), side, size, sl, tp)
    return side, size, sl, tp, np.full(n, params.max_hold, dtype=np.int64)


def signals_frame(
    index: pd.Index, probs: np.ndarray, vol: np.ndarray, params: StrategyParams
) -> pd.DataFrame:
    """Return the signal frame :func:`scalpbot.core.backtest.frame.backtest` takes (side, size, sl, tp, max_hold) on ``index``.

    Row ``t`` is decided on bar ``t``'s close from ``probs[t]`` and ``vol[t]`` and acts at bar ``t + 1``'s open.
    """
    side, size, sl, tp, hold = decide_arrays(probs, vol, params)
    if side.shape[0] != len(index):
        raise DataError(
            f"index has {len(index)} bars but probs/vol have {side.shape[0]} rows; pass one per bar"
        )
    return pd.DataFrame({"side": side, "size": size, "sl": sl, "tp": tp, "max_hold": hold}, index=index)
