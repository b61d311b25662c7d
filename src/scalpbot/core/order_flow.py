"""Order-flow features of a bar frame that carries ``trades`` and ``taker_buy_volume`` (pure).

They follow the rules of :mod:`scalpbot.core.features`: row ``t`` describes the market at the close of bar ``t``
from bars ``<= t`` only, by position, each row recomputed from a fixed trailing window
(:mod:`scalpbot.core.features_nb`), so ``build_order_flow_features(bars.iloc[-FEATURE_WINDOW:])`` ends with the
full-history row, bit for bit. Rows ``0 .. FEATURE_WARMUP - 1`` are NaN, as in the OHLCV features, so the two
sets start together. A bar whose order flow is missing (NaN: a series mixing sources) makes every row whose
window reaches it NaN: such rows are not trained on and not traded.

Features, in :data:`ORDER_FLOW_FEATURE_NAMES` order:

* ``taker_imbalance_{1,5,15,60}``: ``sum(2 * taker_buy_volume - volume) / sum(volume)`` over that many bars,
  the share of takers buying minus selling [-1..1; 0 when nothing traded].
* ``trades_z_{60,240}``: z-score of ``log1p(trades)`` against the window [std; 0 for a constant count].
* ``trade_size_z_{60,240}``: z-score of the relative volume (``log1p(volume / (0.1 * mean))``, as the OHLCV
  features' ``volume_z``) less ``log1p(trades)``, about the log of the average trade size, against the window
  [std]: large trades against small ones, at the same volume. In no unit, as the volume features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalpbot.core.bars import ORDER_FLOW_COLUMNS
from scalpbot.core.features import FEATURE_WARMUP, relative_volume
from scalpbot.core.features_nb import log1p_nb, rolling_zscore_nb, taker_imbalance_nb
from scalpbot.errors import DataError

__all__ = ["ORDER_FLOW_FEATURE_NAMES", "ORDER_FLOW_SPEC_VERSION", "build_order_flow_features"]

ORDER_FLOW_SPEC_VERSION = "2"
"""Version of the order-flow feature definitions; bump it whenever one's name, order or values change."""

_IMBALANCE_WINDOWS = (1, 5, 15, 60)
_COUNT_WINDOWS = (60, 240)
_MIN_STD = 1e-6  # log units
# Every row (at most 240 bars of relative volume, each over 240 bars: 479 bars) lies inside the OHLCV features'
# FEATURE_WINDOW: the execute path reads no more.

ORDER_FLOW_FEATURE_NAMES: tuple[str, ...] = (
    *(f"taker_imbalance_{w}" for w in _IMBALANCE_WINDOWS),
    *(f"trades_z_{w}" for w in _COUNT_WINDOWS),
    *(f"trade_size_z_{w}" for w in _COUNT_WINDOWS),
)
"""Column names of :func:`build_order_flow_features`, in order."""


def build_order_flow_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Return the float64 order-flow features of ``bars`` (columns :data:`ORDER_FLOW_FEATURE_NAMES`).

    ``bars`` is a bar frame (:mod:`scalpbot.core.bars`) with the ``trades`` and ``taker_buy_volume`` columns;
    raise :class:`~scalpbot.errors.DataError` naming the missing ones otherwise.
    """
    missing = [c for c in ("volume", *ORDER_FLOW_COLUMNS) if c not in bars.columns]
    if missing:
        raise DataError(
            f"bars have no {', '.join(missing)} column: order-flow features need the number of trades and the "
            "taker-buy volume of each bar (Binance klines carry them)"
        )
    volume, trades, taker = (bars[c].to_numpy(dtype=np.float64) for c in ("volume", *ORDER_FLOW_COLUMNS))
    log_trades = log1p_nb(trades)
    log_size = relative_volume(volume) - log_trades
    columns = [
        *(taker_imbalance_nb(taker, volume, w) for w in _IMBALANCE_WINDOWS),
        *(rolling_zscore_nb(log_trades, w, _MIN_STD) for w in _COUNT_WINDOWS),
        *(rolling_zscore_nb(log_size, w, _MIN_STD) for w in _COUNT_WINDOWS),
    ]
    values = np.empty((len(columns), len(bars)))
    for i, column in enumerate(columns):
        values[i] = column
    values[:, :FEATURE_WARMUP] = np.nan
    return pd.DataFrame(values.T, index=bars.index, columns=list(ORDER_FLOW_FEATURE_NAMES), copy=False)
