"""Baseline strategies: bars in, a signal frame for :func:`scalpbot.core.backtest.frame.backtest` out. Pure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalpbot.errors import ConfigError


def sma_cross_signals(
    bars: pd.DataFrame,
    *,
    length: int = 50,
    sl: float = 0.003,
    tp: float = 0.006,
    size: float = 1.0,
    max_hold: int = 0,
) -> pd.DataFrame:
    """Return signals that go long when the close crosses above its simple moving average, short when below.

    On bar ``t``: +1 if ``close[t] > sma[t]`` and ``close[t-1] <= sma[t-1]``, -1 for the mirror cross, else 0,
    where ``sma[t]`` is the mean of the ``length`` closes up to and including ``t`` (decided on bar ``t``'s close,
    from bars ``<= t`` only; 0 until ``length`` bars exist). ``sl``/``tp`` are fractions of the fill price,
    ``size`` a fraction of equity, ``max_hold`` bars (0 = none), repeated on every row.
    """
    if length < 1:
        raise ConfigError(f"length must be a whole number of bars >= 1; got {length}")
    close = bars["close"].to_numpy(dtype=np.float64)
    sma = bars["close"].rolling(length, min_periods=length).mean().to_numpy(dtype=np.float64)
    above = close > sma
    below = close < sma
    crossed_up = np.zeros(close.shape[0], dtype=bool)
    crossed_down = np.zeros(close.shape[0], dtype=bool)
    crossed_up[1:] = above[1:] & (close[:-1] <= sma[:-1])
    crossed_down[1:] = below[1:] & (close[:-1] >= sma[:-1])
    side = crossed_up.astype(np.int8) - crossed_down.astype(np.int8)
    n = close.shape[0]
    return pd.DataFrame(
        {
            "side": side,
            "size": np.full(n, size),
            "sl": np.full(n, sl),
            "tp": np.full(n, tp),
            "max_hold": np.full(n, max_hold, dtype=np.int64),
        },
        index=bars.index,
    )
