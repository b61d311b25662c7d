"""The shape's rule: what a trader who knows a planted effect's shape, but not its events, would earn.

The oracle (:func:`support.learning_cases.oracle_net`) knows every event; no learner can beat it. The shape's
rule is the reference between the two: it knows what an event looks like - for ``shock reversion`` a bar
whose log return is ``k`` sigmas down (sigma: the standard deviation of the 60 bars' 1m log returns before
it) and at least ``q`` (a share of the effect's shock) lower; for ``volume momentum`` a bar ``k`` sigmas up (at
least a quarter of the shock, half the burst bar's planted rise) on ``q`` times
the mean volume of the 240 bars before it; for ``time of day`` the clock, where the rule is the oracle - and
fits its two thresholds on the bars before the test window (the ones the train job learns from), then trades
the test window like the oracle: from the open after the signal bar, ``hold`` bars, through the project's
fill kernel at the venue's costs. The short side mirrors both signatures.

Where real bars look like events (a real burst at the same size, a real drop in a calm hour), the rule takes
them too and pays their costs: its capture is what the effect's look allows on that window, and a release
well below it has learnt less than the shape shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalpbot.core.backtest.frame import backtest

SIGMAS = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0)
"""The rule's first threshold ``k``: the signal bar's log return in sigmas of the 60 bars before it."""
DROPS = (0.0, 1 / 6, 1 / 3, 0.5, 0.75)
"""``shock reversion``'s second threshold ``q``: the least log return (down, for a long edge) of the signal bar,
a share of the effect's ``shock`` (0.6 % in the standard cases: 0 to 0.45 %)."""
BURSTS = (1.0, 2.0, 3.0, 5.0, 8.0)
"""``volume momentum``'s second threshold ``q``: the least volume of the signal bar over the mean of 240 before."""
MOMENTUM_MOVE = 0.25
"""The least log return (in the effect's direction) of a ``volume momentum`` signal bar, a share of the effect's
``shock`` (half of the ``shock / 2`` its burst bar closes higher: 0.15 % in the standard cases)."""
_SIGMA_BARS = 60
_VOLUME_BARS = 240


@dataclass(frozen=True)
class ShapeRule:
    """A fitted rule: its thresholds in words, its net PnL per unit notional on the bars it was fitted on and on
    the test window, and its trades there."""

    text: str
    fitted_net: float
    test_net: float
    test_trades: int


def signatures(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per bar its 1m log return, that return in sigmas of the 60 bars before it, and its volume over the
    mean volume of the 240 bars before it (the return NaN at the first bar, the others until their window of
    earlier bars is full: the bar itself is in neither)."""
    close = bars["close"].to_numpy(dtype=np.float64)
    ret = np.concatenate(([np.nan], np.diff(np.log(close))))
    sigma = pd.Series(ret).rolling(_SIGMA_BARS).std().shift(1).to_numpy()
    volume = bars["volume"].to_numpy(dtype=np.float64)
    mean = pd.Series(volume).rolling(_VOLUME_BARS).mean().shift(1).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return ret, ret / sigma, volume / mean


def rule_sides(
    bars: pd.DataFrame, shape: str, side: int, k: float, q: float, shock: float = 0.006
) -> np.ndarray:
    """Return the rule's side per bar (``side`` where its signature holds, else 0) for thresholds ``k``, ``q``
    (:data:`DROPS`, :data:`BURSTS`) of an effect whose shock is ``shock`` (a log return)."""
    ret, sigmas, burst = signatures(bars)
    with np.errstate(invalid="ignore"):
        if shape == "shock reversion":  # the event bar drops (a long edge) and the price drifts back up
            hit = (-side * sigmas >= k) & (-side * ret >= q * shock)
        elif shape == "volume momentum":
            hit = (side * sigmas >= k) & (side * ret >= MOMENTUM_MOVE * shock) & (burst >= q)
        else:
            raise ValueError(f"no rule for the shape {shape!r}")
    return np.where(hit, np.int8(1 if side > 0 else -1), np.int8(0)).astype(np.int8)


def net_per_notional(trades: pd.DataFrame) -> float:
    """Return the sum over closed trades of PnL after fees per unit of entry notional."""
    if trades.empty:
        return 0.0
    closed = trades.loc[trades["exit_reason"] != "open"]
    return float((closed["pnl"] / (closed["entry_price"] * closed["qty"])).sum())


def event_signals(bars: pd.DataFrame, events: np.ndarray, hold: int, side: int = 1) -> pd.DataFrame:
    """Return the signal frame on ``bars`` that trades ``side`` (+1 long, -1 short) for ``hold`` bars, no stop,
    at every event position (relative to ``bars``) but those whose hold the window's end would cut: the
    oracle's frame, and the shape's rule's with its signal bars as the events."""
    sides = np.zeros(len(bars), dtype=np.int8)
    inside = events[(events >= 0) & (events < len(bars) - hold - 2)]
    sides[inside] = 1 if side > 0 else -1
    return pd.DataFrame(
        {"side": sides, "size": 1.0, "sl": np.inf, "tp": np.inf, "max_hold": hold}, index=bars.index
    )


def _net(bars: pd.DataFrame, sides: np.ndarray, hold: int, fee: float, slippage: float) -> tuple[float, int]:
    """Return the net PnL per unit notional and the closed trades of the rule's ``sides`` (one sign) on ``bars``."""
    frame = event_signals(bars, np.flatnonzero(sides), hold, int(sides.min(initial=0)) or 1)
    trades = backtest(bars, frame, fee=fee, slippage=slippage, initial_equity=1.0).trades
    return net_per_notional(trades), int((trades["exit_reason"] != "open").sum()) if len(trades) else 0


def fit_shape_rule(
    bars: pd.DataFrame,
    test_start: pd.Timestamp,
    shape: str,
    side: int,
    hold: int,
    *,
    fee: float,
    slippage: float = 0.0,
    shock: float = 0.006,
) -> ShapeRule:
    """Fit the rule's thresholds on the bars before ``test_start`` (best net PnL per unit notional; on a tie
    the first in the grids' order) and return its result on the bars from ``test_start`` on.

    The signature of a test bar reads only bars before it, so fitting on the earlier bars and testing on the
    later ones is what a trader could have done at ``test_start``.
    """
    first = int(bars.index.searchsorted(test_start))
    fitted, test = bars.iloc[:first], bars.iloc[first:]
    grid = DROPS if shape == "shock reversion" else BURSTS
    best: tuple[float, float, float] | None = None
    all_sides = {(k, q): rule_sides(bars, shape, side, k, q, shock) for k in SIGMAS for q in grid}
    for (k, q), sides in all_sides.items():
        net, _ = _net(fitted, sides[:first], hold, fee, slippage)
        if best is None or net > best[0]:
            best = (net, k, q)
    assert best is not None
    net, k, q = best
    test_net, trades = _net(test, all_sides[(k, q)][first:], hold, fee, slippage)
    unit = f"drop >= {q * shock:.2%}" if shape == "shock reversion" else f"volume >= {q:g} x mean"
    return ShapeRule(f"{k:g} sigmas, {unit}", net, test_net, trades)
