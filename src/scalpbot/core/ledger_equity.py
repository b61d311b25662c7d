"""Rebuild an equity curve from trades and bars (pure): what the account was worth at each bar close.

``equity[t] = start + realized PnL of trades closed by bar t + the open trade marked at close[t]``, with the
entry fee already paid and the exit fee not yet, exactly as the backtest kernel marks equity. A trade's entry
fee is its share of ``fees`` by notional (``fees * entry_price / (entry_price + exit_price)``): exact when both
sides pay the same fee rate, as on every venue the bot trades.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def equity_from_trades(trades: pd.DataFrame, bars: pd.DataFrame, start_equity: float) -> pd.Series:
    """Return equity (quote currency) at each close of ``bars`` given every trade of the account.

    ``trades`` has the backtest trade columns; a trade whose ``exit_reason`` is ``open`` is still open.
    ``start_equity`` is the equity before the first trade. Trades closed before the first bar count in full.
    """
    index = pd.DatetimeIndex(bars.index)
    close = bars["close"].to_numpy(dtype=np.float64)
    equity = np.full(len(index), float(start_equity))
    if trades.empty or not len(index):
        return pd.Series(equity, index=index, name="equity")
    entry_time = pd.DatetimeIndex(trades["entry_time"])
    exit_time = pd.DatetimeIndex(trades["exit_time"])
    is_open = (trades["exit_reason"].astype(str) == "open").to_numpy()
    side = trades["side"].to_numpy(dtype=np.float64)
    qty = trades["qty"].to_numpy(dtype=np.float64)
    entry_price = trades["entry_price"].to_numpy(dtype=np.float64)
    exit_price = trades["exit_price"].to_numpy(dtype=np.float64)
    fees = trades["fees"].to_numpy(dtype=np.float64)
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    entry_fee = np.where(is_open, fees, fees * entry_price / (entry_price + exit_price))
    entry_pos = index.searchsorted(entry_time, side="left")  # first bar whose close sees the position
    exit_pos = np.where(is_open, len(index), index.searchsorted(exit_time, side="left"))
    for k in range(len(trades)):
        first, last = int(entry_pos[k]), int(exit_pos[k])
        if last < len(index) and not is_open[k]:
            equity[last:] += pnl[k]  # realized from the exit bar's close on
        lo, hi = max(first, 0), min(last, len(index))
        if lo < hi:
            equity[lo:hi] += side[k] * qty[k] * (close[lo:hi] - entry_price[k]) - entry_fee[k]
    return pd.Series(equity, index=index, name="equity")
