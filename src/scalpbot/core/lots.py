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
def round_to_tick_nb(price: float, tick: float) -> float:
    """Return ``price`` rounded to the **nearest** multiple of ``tick`` (``tick`` <= 0: unchanged), written with
    the tick's decimals, as ccxt's ``price_to_precision`` writes a stop or take-profit price.

    A non-finite ``price`` (``inf``: no barrier) is returned as it is.
    """
    if not tick > 0.0 or not np.isfinite(price):
        return price
    whole = float(np.rint(price / tick))
    scale = 10.0 ** step_decimals_nb(tick)
    units = float(np.rint(whole * tick * scale))
    if units >= 2.0**53:
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
