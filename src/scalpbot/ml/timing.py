"""Does a challenger time its trades, or only hold the market? A random-entry test of its trades.

A long-only release in a rising market makes money whether or not it knows when to enter: its return is the
market's drift times its time in the market. The bootstrap against not trading cannot tell the two apart. This
test can: it keeps the challenger's trades - their number, sides and holding times in bars - and enters them
at random bars of the same window instead (Monte Carlo permutation of entry times, as in Aronson's random-entry
benchmark). Each random trade returns ``side * (open[s + h] / open[s] - 1)`` minus the round trip's costs
(``2 * (fee + slippage)`` of the notional), where ``s`` is its random entry bar and ``h`` its holding time
(entries and time exits fill at bar opens, as in the kernel). The statistic is the sum over closed trades of
the net PnL per unit of entry notional; the challenger's comes from its own fills.

``p = (1 + #{b: random_b >= challenger}) / (B + 1)``: H0 is "entering at random bars with the same trades earns
as much". Trades still open at the window's end are left out; with fewer than :data:`MIN_TIMED_TRADES` closed
trades there is no p-value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalpbot.core.costs import TradingCosts

__all__ = ["MIN_TIMED_TRADES", "TimingTest", "timing_p_value", "timing_test"]

MIN_TIMED_TRADES = 5
"""Fewer closed trades than this give no timing p-value."""


@dataclass(frozen=True, slots=True)
class TimingTest:
    """Outcome of :func:`timing_p_value`: ``p_value`` (``None`` below ``MIN_TIMED_TRADES`` closed trades), the
    challenger's summed net return per unit notional, the random entries' mean of that sum, the closed trades
    and the resamples."""

    p_value: float | None
    observed: float
    random_mean: float
    trades: int
    resamples: int


def timing_p_value(
    opens: np.ndarray,
    holds: np.ndarray,
    sides: np.ndarray,
    observed: float,
    round_trip_cost: float,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> TimingTest:
    """Return the random-entry p-value of ``observed`` (module docstring).

    ``opens``: the window's bar opens (quote per base); ``holds``: each closed trade's holding time in bars
    (>= 1); ``sides``: +1 long, -1 short; ``observed``: the challenger's summed net return per unit notional;
    ``round_trip_cost``: fees and slippage of one round trip as a fraction of the notional.
    """
    opens = np.asarray(opens, dtype=np.float64)
    holds = np.clip(np.asarray(holds, dtype=np.int64), 1, max(len(opens) - 1, 1))
    sides = np.asarray(sides, dtype=np.float64)
    trades = int(holds.size)
    if trades < MIN_TIMED_TRADES or len(opens) < 2:
        return TimingTest(None, float(observed), float("nan"), trades, resamples)
    rng = np.random.default_rng(seed)
    starts = np.floor(rng.random((resamples, trades)) * (len(opens) - holds)).astype(np.int64)
    gross = sides * (opens[starts + holds] / opens[starts] - 1.0)
    sums = (gross - round_trip_cost).sum(axis=1)
    p_value = float((1 + np.count_nonzero(sums >= observed)) / (resamples + 1))
    return TimingTest(p_value, float(observed), float(sums.mean()), trades, resamples)


def timing_test(
    bars: pd.DataFrame,
    trades: pd.DataFrame,
    costs: TradingCosts,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> TimingTest:
    """Return the random-entry test of a backtest's ``trades`` on its window ``bars`` at ``costs``."""
    closed = trades.loc[trades["exit_reason"] != "open"] if len(trades) else trades
    if not len(closed):
        return timing_p_value(np.empty(0), np.empty(0), np.empty(0), 0.0, 0.0, resamples=resamples)
    index = pd.DatetimeIndex(bars.index)
    entry = index.get_indexer(pd.DatetimeIndex(closed["entry_time"]))
    exit_ = index.get_indexer(pd.DatetimeIndex(closed["exit_time"]))
    notional = (closed["entry_price"] * closed["qty"].abs()).to_numpy(dtype=np.float64)
    observed = float((closed["pnl"].to_numpy(dtype=np.float64) / notional).sum())
    return timing_p_value(
        bars["open"].to_numpy(dtype=np.float64),
        np.maximum(exit_ - entry, 1),
        np.sign(closed["side"].to_numpy(dtype=np.float64)),
        observed,
        2.0 * (costs.fee + costs.slippage),
        resamples=resamples,
        seed=seed,
    )
