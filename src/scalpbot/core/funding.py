"""Funding of perpetual swaps (pure): the rate due at each bar and the settlements a simulated trade paid.

A perpetual swap has no expiry; every funding interval (8 hours on Binance USD-M and OKX, at 00:00, 08:00 and
16:00 UTC) longs pay shorts ``position value * rate`` (shorts pay longs when the rate is negative). The backtest
kernel charges it at the open of the bar whose open time is a funding time, on the position held through that
instant (:mod:`scalpbot.core.backtest.nb`, rule 8), with the bar's open standing for the mark price.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalpbot.core.backtest.enums import NO_FUNDING
from scalpbot.core.execution import FundingPayment
from scalpbot.core.lots import round_half_even_nb
from scalpbot.errors import DataError

__all__ = ["funding_at_bars", "funding_payments"]


def funding_at_bars(funding: pd.Series | None, index: pd.DatetimeIndex) -> np.ndarray:
    """Return the funding rate falling due at each bar's open time (0 where none), or an empty array for none.

    ``funding``: rates indexed by funding time (UTC), e.g. :func:`scalpbot.state.funding.load_funding`. A rate
    whose time is not a bar's open time is not charged (venues settle on the hour, which every minute bar series
    has). Raise ``DataError`` for rates that are not finite numbers.
    """
    if funding is None or len(funding) == 0:
        return NO_FUNDING
    if not isinstance(funding.index, pd.DatetimeIndex) or funding.index.tz is None:
        raise DataError("funding must be a Series of rates on a UTC DatetimeIndex of funding times")
    try:
        rates = funding.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"funding rates must be numeric: {e}") from e
    if not np.isfinite(rates).all():
        first = int(np.argmin(np.isfinite(rates)))
        raise DataError(f"funding rate at {funding.index[first]} is not a finite number; fetch it again")
    times = pd.DatetimeIndex(funding.index).tz_convert("UTC").as_unit(index.unit)
    at = index.get_indexer(times)
    out = np.zeros(len(index), dtype=np.float64)
    hit = at >= 0
    out[at[hit]] = rates[hit]
    return out


def funding_payments(
    rates: np.ndarray,
    open_: np.ndarray,
    index: pd.DatetimeIndex,
    entry_idx: int,
    exit_idx: int,
    side: int,
    qty: float,
    entry_client_id: str,
    step: float = 0.0,
) -> list[FundingPayment]:
    """Return the settlements a trade open from bar ``entry_idx`` to ``exit_idx`` paid, as the kernel charged them.

    A settlement at bar ``t`` falls on the trade when ``entry_idx < t <= exit_idx`` (held through bar ``t``'s
    open); each pays ``side * qty * open[t] * rate[t]`` rounded to ``step`` as the venue books it
    (``OrderRules.funding_step``), the kernel's figure to the bit.
    """
    if rates.shape[0] == 0:
        return []
    payments = []
    for t in range(entry_idx + 1, exit_idx + 1):
        rate = float(rates[t])
        if rate != 0.0:
            price = float(open_[t])
            amount = round_half_even_nb(side * qty * price * rate, step)
            payments.append(FundingPayment(index[t], side, qty, price, rate, amount, entry_client_id))
    return payments
