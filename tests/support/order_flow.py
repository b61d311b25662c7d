"""Order-flow columns for the bundled sample, which carries OHLCV only: a deterministic stand-in for Binance's.

``trades`` grows with the bar's volume; the taker-buy share leans with the bar's direction, as aggressive buying
lifts the close. Only for tests that need the columns' shape, never for claims about an edge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def with_order_flow(bars: pd.DataFrame) -> pd.DataFrame:
    """Return ``bars`` with ``trades`` and ``taker_buy_volume`` columns derived from its OHLCV."""
    o, h, lo, c, v = (bars[n].to_numpy() for n in ("open", "high", "low", "close", "volume"))
    lean = np.divide(c - o, h - lo, out=np.zeros_like(c), where=h > lo)
    share = np.clip(0.5 + 0.35 * lean + 0.1 * np.sin(np.arange(len(bars)) / 7.0), 0.0, 1.0)
    out = bars.copy()
    out["trades"] = np.floor(v * 37.0) + (v > 0)
    out["taker_buy_volume"] = np.round(v * share, 8).clip(0.0, v)
    return out
