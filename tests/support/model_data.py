"""Small synthetic data sets for the model tests: features on wildly different scales with a learnable signal."""

from __future__ import annotations

import numpy as np

N_FEATURES = 12

Data = tuple[np.ndarray, np.ndarray, np.ndarray]


def synthetic(n: int, seed: int, *, signal: bool = True) -> Data:
    """Return features on wildly different scales, classes driven by two of them, and log-normal volatility."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, N_FEATURES))
    x = (z * np.logspace(-3, 3, N_FEATURES) + np.linspace(-50, 50, N_FEATURES)).astype(np.float32)
    if signal:
        score = z[:, 0] - 0.7 * z[:, 5] + 0.3 * rng.normal(size=n)
        y_class = np.where(score > 0.6, 2, np.where(score < -0.6, 0, 1))
        y_vol = 2e-3 * np.exp(0.5 * z[:, 2] + 0.1 * rng.normal(size=n))
    else:
        y_class = rng.integers(0, 3, size=n)
        y_vol = 2e-3 * np.exp(0.3 * rng.normal(size=n))
    return x, y_class, y_vol
