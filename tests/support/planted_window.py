"""A policy window with a planted optimum for the tuning tests: signals of edge 0.45 are right, 0.25 noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalpbot.core.evaluation import PolicyWindow

VOL = 0.002
TRUE_EDGE, NOISE_EDGE = 0.45, 0.25


def planted_window(days: int = 8, seed: int = 0) -> PolicyWindow:
    """Return bars where edge-0.45 signals are mostly right (a 1 % move their way next bar, 3 times in 4) and
    edge-0.25 signals are noise.

    With SL 1 vol (0.2 %) and TP 1.5 vol (0.3 %), only entry thresholds in (0.25, 0.45] trade the true signals
    alone: lower thresholds add losing noise trades, higher ones trade nothing.
    """
    rng = np.random.default_rng(seed)
    n = days * 1440
    moves = rng.normal(0.0, 0.0004, n)
    probs = np.tile([0.3, 0.4, 0.3], (n, 1))
    noise = rng.random(n) < 0.15
    noise_side = rng.choice([-1, 1], n)
    true = (np.arange(n) % 40 == 7) & (np.arange(n) < n - 2)
    true_side = rng.choice([-1, 1], n)
    for t in np.flatnonzero(noise):
        probs[t] = [0.2, 0.35, 0.45] if noise_side[t] > 0 else [0.45, 0.35, 0.2]
    for t in np.flatnonzero(true):
        probs[t] = [0.2, 0.15, 0.65] if true_side[t] > 0 else [0.65, 0.15, 0.2]
        moves[t + 1] = 0.01 * true_side[t] * (1 if rng.random() < 0.75 else -1)
    close = 100.0 * np.exp(np.cumsum(moves))
    open_ = np.append(100.0, close[:-1])
    high = np.maximum(open_, close) * (1 + 0.0001)
    low = np.minimum(open_, close) * (1 - 0.0001)
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close}, index=index)
    return PolicyWindow.from_frame(bars, probs, np.full(n, VOL))
