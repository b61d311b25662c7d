"""Order quantities as a venue accepts them (pure, numba): rounded down to the amount step, skipped under minimums.

One implementation for everything that sizes an order: the backtest kernel (and so the paper broker, tuning and
the RL environment), the risk checks and the live broker. Units: quantities in base units, prices in quote
currency per base unit, notional in quote currency. A rule of 0 means "no rule".

Rounding down is exact in decimal terms: the result is the float nearest to ``k * step`` written with the step's
decimals (``0.00008``, never ``0.00007999999999999999``), so formatting it with the venue's precision (ccxt's
``amount_to_precision``) gives back the same number. A quantity within ``1e-12`` (relative) below a step keeps
that step: float noise such as ``0.1 + 0.2`` must not cost a whole step.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["floor_to_step_nb", "order_qty_nb", "round_to_tick_nb", "step_decimals_nb"]

_NOISE = 1e-12
_MAX_DECIMALS = 15


@njit(cache=True)
def step_decimals_nb(step: float) -> int:
    """Return the decimals of ``step`` (0.00001 -> 5, 0.5 -> 1, 10 -> 0); 15 for a step no decimal writes."""
    for decimals in range(_MAX_DECIMALS + 1):
        scaled = step * 10.0**decimals
        if abs(scaled - np.rint(scaled)) <= 1e-9 * scaled:
            return decimals
    return _MAX_DECIMALS


@njit(cache=True)
def floor_to_step_nb(qty: float, step: float) -> float:
    """Return ``qty`` rounded **down** to a whole number of ``step`` (``step`` <= 0: ``qty`` unchanged).

    0.0 when ``qty`` is below one step; a non-finite ``qty`` is returned as it is.
    """
    if not step > 0.0 or not np.isfinite(qty):
        return qty
    whole = math.floor(qty / step * (1.0 + _NOISE))
    if whole <= 0:
        return 0.0
    scale = 10.0 ** step_decimals_nb(step)
    units = float(np.rint(whole * step * scale))
    if units >= 2.0**53:  # beyond exact integers: the decimal form buys nothing
        return whole * step
    return units / scale


@njit(cache=True)
def round_half_even_nb(value: float, step: float) -> float:
    """Return ``value`` rounded to the nearest multiple of ``step`` (a power of ten such as 1e-8), ties to
    even, as a venue writing amounts with that many decimals books them; ``step`` 0: ``value`` unchanged."""
    if step <= 0.0:
        return value
    scale = float(np.rint(1.0 / step))
    return float(np.rint(value * scale)) / scale


@njit(cache=True)
def round_to_tick_nb(price: float, tick: float) -> float:
    """Return ``price`` rounded to the **nearest** multiple of ``tick``, halves up (``tick`` <= 0: unchanged),
    written with the tick's decimals, as ccxt's ``price_to_precision`` rounds a stop or take-profit price's
    decimal text (Python's shortest ``repr``).

    A price is a half exactly when it is the float nearest to the decimal half between two ticks: ``89748.005``
    (stored as ``89748.00499999...``, written ``89748.005``) rounds up, while ``21.104999999999997`` (the float
    of ``21.0 * 1.005``, written so) is below the half and rounds down. A non-finite ``price`` (``inf``: no
    barrier) is returned as it is.
    """
    if not tick > 0.0 or not np.isfinite(price):
        return price
    scale = 10.0 ** step_decimals_nb(tick)
    units_per_tick = float(
        np.rint(tick * scale)
    )  # the tick in units of its last decimal: 1 for 0.01, 5 for 0.05
    below = math.floor(price * scale / units_per_tick)
    # The float nearest to the decimal half: both integers are exact and IEEE division rounds correctly.
    half = ((2.0 * below + 1.0) * units_per_tick) / (2.0 * scale)
    whole = below + 1.0 if price >= half else float(below)
    units = whole * units_per_tick
    if units >= 2.0**53:  # beyond exact integers: the decimal form buys nothing
        return whole * tick
    return units / scale


@njit(cache=True)
def order_qty_nb(qty: float, price: float, step: float, min_qty: float, min_notional: float) -> float:
    """Return the quantity a venue accepts for ``qty`` at ``price``, or 0.0 when the order must be skipped.

    ``qty`` is rounded down to ``step``; the order is skipped (0.0) when the rounded quantity is 0, below
    ``min_qty``, or worth less than ``min_notional`` at ``price``.
    """
    rounded = floor_to_step_nb(qty, step)
    if not rounded > 0.0 or rounded < min_qty or rounded * price < min_notional:
        return 0.0
    return rounded
