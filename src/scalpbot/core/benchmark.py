"""Buy and hold: the benchmark a backtest is shown beside. Pure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalpbot.core.metrics import daily_returns, max_drawdown, sharpe_ratio, total_return

__all__ = ["buy_and_hold_equity", "buy_and_hold_metrics"]


def buy_and_hold_equity(bars: pd.DataFrame, initial_equity: float, fee: float = 0.0) -> pd.Series:
    """Return the equity (quote currency) at each bar close of buying at the first bar's open and holding.

    The buy pays ``fee`` (a fraction of notional) once; no sale is charged, as an open backtest position is
    marked at the last close without an exit fee.
    """
    if bars.empty:
        return pd.Series([], index=bars.index, dtype=np.float64, name="buy_and_hold")
    first_open = float(bars["open"].iloc[0])
    qty = initial_equity * (1.0 - fee) / first_open
    values = qty * bars["close"].to_numpy(dtype=np.float64)
    return pd.Series(values, index=bars.index, name="buy_and_hold")


def buy_and_hold_metrics(equity: pd.Series) -> dict[str, float | None]:
    """Return the equity-curve metrics of buy and hold: total return, max drawdown and Sharpe (daily, 365)."""
    return {
        "total_return": total_return(equity),
        "max_drawdown": max_drawdown(equity),
        "sharpe": sharpe_ratio(daily_returns(equity)),
    }
