"""Holding-period labels: did holding a side for ``H`` bars make money after costs? (pure)

For a decision on the close of bar ``t`` a trade enters at ``open[t + 1]`` and exits at ``close[t + H]``, each
fill worsened by ``slippage`` and charged ``fee`` on its notional, as the backtest kernel fills them
(:func:`scalpbot.core.backtest.nb.fill_price_nb`). The kernel's time stop exits at ``open[t + H + 1]``, which
equals ``close[t + H]`` on a market that trades without pause; the label stops at the close so that nothing
after bar ``t + H`` is read for row ``t``, as for the triple-barrier labels.

A side **wins** when its net return per unit of entry notional is positive and the price moved at least
``min_move`` (a fraction of the entry price) its way. Classes as the triple-barrier labels': ``2`` long wins,
``0`` short wins, ``1`` neither; where the venue cannot short (``shorts=False``) no row is ``0``. Both sides
cannot win: their net returns sum to minus the costs.

Where the triple-barrier label asks whether a take profit at a multiple of the recent volatility fills before
the stop, this label asks for the sign of the return over the horizon. A drift of a given size pays the same
in a calm week and in a wild one; its barrier label does not (the barriers widen with the volatility, so the
take profit fills first less often), its holding label nearly does (the noise around the same mean widens, so
the probability of a positive return falls by far less). The train job tries both kinds; the folds choose.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from scalpbot.core.backtest.nb import fill_price_nb
from scalpbot.core.labels import (
    LABEL_LONG,
    LABEL_NEITHER,
    LABEL_SHORT,
    check_fraction,
    check_horizon,
    forward_volatility,
    ohlc_prices,
)

__all__ = ["holding_labels", "holding_returns_nb"]


@njit(cache=True)
def holding_returns_nb(
    open_: np.ndarray, close: np.ndarray, horizon: int, fee: float, slippage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(long, short)`` net returns per unit of entry notional of a trade decided at each bar ``t``,
    entered at ``open[t + 1]`` and exited at ``close[t + horizon]``; NaN where ``t + horizon`` is past the end."""
    n = open_.shape[0]
    out = np.full((2, n), np.nan)
    for t in range(n - horizon):
        for k, direction in ((0, 1), (1, -1)):
            entry = fill_price_nb(open_[t + 1], direction, slippage)
            exit_ = fill_price_nb(close[t + horizon], -direction, slippage)
            out[k, t] = (direction * (exit_ - entry) - fee * (entry + exit_)) / entry
    return out[0], out[1]


@njit(cache=True)
def _classes_nb(
    open_: np.ndarray, long_ret: np.ndarray, short_ret: np.ndarray, close: np.ndarray, horizon: int,
    min_move: float, shorts: bool,
) -> np.ndarray:  # fmt: skip
    n = long_ret.shape[0]
    label = np.full(n, -1, dtype=np.int8)
    for t in range(n - horizon):
        move = close[t + horizon] / open_[t + 1] - 1.0
        long_won = long_ret[t] > 0.0 and move >= min_move
        short_won = shorts and short_ret[t] > 0.0 and -move >= min_move
        label[t] = LABEL_LONG if long_won else LABEL_SHORT if short_won else LABEL_NEITHER
    return label


def holding_labels(
    bars: pd.DataFrame,
    *,
    horizon: int,
    fee: float = 0.0,
    slippage: float = 0.0,
    min_move: float = 0.0,
    shorts: bool = True,
) -> pd.DataFrame:
    """Return the holding-period label of each decision bar (index ``bars.index``).

    ``fee``/``slippage``: fractions as in ``backtest``; ``min_move``: the smallest price move (a fraction of the
    entry price, before costs) a win needs; ``shorts``: whether the venue can short.

    Columns: ``label`` (int8: 0 short wins, 1 neither, 2 long wins, -1 where ``t + horizon`` is past the data);
    ``fwd_vol`` (float64, the realized volatility over bars ``t + 1 .. t + H`` as in
    :func:`scalpbot.core.labels.triple_barrier_labels`); ``long_return``/``short_return`` (float64, net return per
    unit of entry notional, NaN where invalid).
    """
    check_horizon(horizon)
    check_fraction("fee", fee, "0.0004")
    check_fraction("slippage", slippage, "0.0001")
    check_fraction("min_move", min_move, "0.002")
    open_, high, low, close = ohlc_prices(bars)
    long_ret, short_ret = holding_returns_nb(open_, close, int(horizon), float(fee), float(slippage))
    label = _classes_nb(open_, long_ret, short_ret, close, int(horizon), float(min_move), bool(shorts))
    return pd.DataFrame(
        {
            "label": label,
            "fwd_vol": forward_volatility(open_, high, low, close, horizon),
            "long_return": long_ret,
            "short_return": short_ret,
        },
        index=bars.index,
    )
