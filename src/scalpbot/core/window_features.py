"""The raw trailing window a temporal model reads beside the feature matrix (pure, light: numpy and pandas).

Row ``t`` holds the last ``window`` bars ``t - window + 1 .. t`` (oldest first), three channels per bar, from bars
``t - window .. t`` only (by position, as :func:`scalpbot.core.features.build_features`), so it does not depend on
where the frame starts: ``trailing_window(bars.iloc[-w:], window)`` ends with the full-history row, bit for bit,
for any ``w > window``. Channels, in :data:`WINDOW_CHANNELS` order:

* ``ret``: the bar's close-to-close log return divided by the window's scale, the root mean square of the
  window's ``window`` log returns (floored at 1e-8 per bar) [window scales; clipped to +-50].
* ``range``: the bar's ``log(high / low)`` in the same scale [window scales; clipped to 50].
* ``volume_z``: the z-score of the bar's relative volume ``log1p(volume / (0.1 * mean))``, ``mean`` the mean
  volume of the window's ``window`` bars, against the window's bars [std; 0 for a constant volume or a window
  that traded nothing]: in no unit, as the feature matrix's ``volume_z``.

The channels are part of the feature spec: a change here bumps
:data:`~scalpbot.core.features.FEATURE_SPEC_VERSION`. The first ``window`` rows are NaN. Columns are bar-major:
column ``i * 3 + c`` is channel ``c`` of the window's ``i``-th bar, so a row reshapes to ``[window, 3]``.
:func:`model_inputs` is the one place that puts the feature matrix and the window side by side, for training and
execution alike; a window of 0 is the feature matrix alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from scalpbot.core.feature_set import OHLCV_FEATURES, FeatureSet
from scalpbot.core.features import FEATURE_WARMUP, VOLUME_FLOOR_SHARE
from scalpbot.errors import ConfigError

__all__ = ["MAX_WINDOW", "WINDOW_CHANNELS", "model_input_count", "model_inputs", "trailing_window"]

WINDOW_CHANNELS: tuple[str, ...] = ("ret", "range", "volume_z")
"""Channels per bar of the trailing window, in column order."""

MAX_WINDOW = FEATURE_WARMUP
"""Longest window: its rows are complete wherever the feature matrix's are, so the execute job's trailing
``FEATURE_WINDOW`` bars suffice."""

_MIN_SCALE = 1e-8  # per-bar log return: a flat window stays finite
_MIN_VOLUME_STD = 1e-6  # relative volume units
_CLIP = 50.0


def _check_window(window: int) -> None:
    if not 1 <= window <= MAX_WINDOW:
        raise ConfigError(f"the trailing window must be 1 to {MAX_WINDOW} bars; got {window}")


def trailing_window(bars: pd.DataFrame, window: int) -> np.ndarray:
    """Return the trailing-window columns [n, window * 3] float64 of OHLCV ``bars`` (see the module docstring)."""
    _check_window(window)
    close, high, low, volume = (
        bars[c].to_numpy(dtype=np.float64) for c in ("close", "high", "low", "volume")
    )
    n = close.size
    out = np.full((n, window * len(WINDOW_CHANNELS)), np.nan)
    if n <= window:
        return out
    ret = np.log(close[1:] / close[:-1])  # ret[j] is bar j + 1's return
    rets = sliding_window_view(ret, window)  # row r: bars r + 1 .. r + window, so it ends at t = r + window
    ranges = sliding_window_view(np.log(high / low)[1:], window)
    raw = sliding_window_view(volume[1:], window)
    floor = VOLUME_FLOOR_SHARE * np.mean(raw, axis=1)[:, None]
    volumes = np.log1p(np.divide(raw, floor, out=np.zeros_like(raw), where=floor > 0.0))
    scale = np.maximum(np.sqrt(np.mean(np.square(rets), axis=1)), _MIN_SCALE)[:, None]
    mean = np.mean(volumes, axis=1)[:, None]
    std = np.std(volumes, axis=1)[:, None]
    z = np.where(std > _MIN_VOLUME_STD, (volumes - mean) / np.maximum(std, _MIN_VOLUME_STD), 0.0)
    block = out[window:].reshape(n - window, window, len(WINDOW_CHANNELS))
    block[:, :, 0] = np.clip(rets / scale, -_CLIP, _CLIP)
    block[:, :, 1] = np.clip(ranges / scale, 0.0, _CLIP)
    block[:, :, 2] = z
    return out


def model_input_count(window: int, feature_set: FeatureSet = OHLCV_FEATURES) -> int:
    """Return the columns a model reads: ``feature_set``'s and ``window`` bars of the trailing window's."""
    return len(feature_set.names) + window * len(WINDOW_CHANNELS)


def model_inputs(bars: pd.DataFrame, window: int = 0, feature_set: FeatureSet = OHLCV_FEATURES) -> np.ndarray:
    """Return the model's input rows [n, :func:`model_input_count`] float64: ``feature_set``'s feature matrix
    (:meth:`~scalpbot.core.feature_set.FeatureSet.build`), then the trailing window of ``window`` bars.

    ``window`` 0 and OHLCV features: exactly ``build_features(bars)`` as float64 (the MLP's input).
    ``DataError`` when ``bars`` lack a column ``feature_set`` needs.
    """
    features = feature_set.build(bars).to_numpy(dtype=np.float64)
    if window == 0:
        return features
    return np.hstack([features, trailing_window(bars, window)])
