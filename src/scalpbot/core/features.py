"""The model's feature matrix for a bar frame (pure): one function, used by training and execution alike.

Row ``t`` describes the market at the **close** of bar ``t`` (the decision time) from bars ``<= t`` only, by
position: a gap in the index is not filled, so a return or window simply spans it (``log_span_60`` tells the model
how much clock time the last 60 bars cover). Every row depends on the last :data:`FEATURE_WINDOW` bars only and is
computed from scratch (see :mod:`scalpbot.core.features_nb`), so ``build_features(bars.iloc[-FEATURE_WINDOW:])``
ends with the same row, bit for bit, as ``build_features(bars)``.

Features, in :data:`FEATURE_NAMES` order (units in brackets; "ATR" is ``atr_14`` in price units, floored at
1e-6 of the close):

* ``ret_{1,5,15,60,240}``: log return of the close over that many bars [log return].
* ``rv_{15,60,240}``: realized volatility, root mean square of 1-bar log returns over the window [per bar].
* ``hl_vol_60``: Parkinson volatility from ``log(high/low)`` over 60 bars [per bar].
* ``atr_14``: average true range, Wilder weights (alpha 1/14) truncated to 112 bars, over the close [fraction].
* ``rsi_14``: relative strength of close changes with the same Wilder weights, ``(up - down) / (up + down)``
  [-1..1; 0 when nothing moved; equals (RSI - 50) / 50].
* ``ema_dist_{15,60,240}``: ``(close - EMA) / ATR``, EMA of the close with alpha ``2 / (span + 1)`` truncated
  to ``4 * span`` bars and renormalized [ATR, clipped to +-50].
* ``range_pos_{60,240}``: close within the window's lowest low .. highest high [-1..1; 0 when flat].
* ``volume_z_{60,240}``: z-score of the relative volume against the window [std; 0 for constant volume]; the
  relative volume is ``log1p(volume / (0.1 * mean))``, ``mean`` the mean volume of the last 240 bars (0 when
  they traded nothing): a log of the volume in no unit, so volumes counted in any unit (coins, contracts of
  a fixed size, thousands) give the same features.
* ``body``, ``upper_wick``, ``lower_wick``, ``bar_range``: candle shape of bar ``t`` [ATR; body signed].
* ``tod_sin``, ``tod_cos``, ``dow_sin``, ``dow_cos``: UTC time of day and day of week (Monday 0) of the bar's
  open time on the unit circle.
* ``log_span_60``: ``log(minutes from bar t-60 to bar t / 60)`` [0 on a gap-free 1m series].
* ``shock_{1,5}``: ``ret_{1,5} / (rv_60 * sqrt(lag))``, the last move in recent volatilities [sigmas; 0 when
  nothing moved].
* ``vol_regime``: ``log(rv_15 / rv_240)``, short-term against longer-term volatility [log ratio].
* ``spike_{age,z,shock,ret}_30``: the last volume spike, the bar of the highest ``volume_z_60`` among the last
  30 (the latest on a tie; bar ``t`` itself included): its age [bars / 30, 0 for bar ``t``], its
  ``volume_z_60`` [std], its ``shock_1`` [sigmas, signed] and the log return of the close since its close [log
  return]. A burst of trading that starts a move is one bar; these columns carry it to the bars after it.
* ``tf{5,15,60}_now``, ``tf{5,15,60}_prev``: multi-timeframe context from the 1m bars: the log return of the
  clock-aligned 5m/15m/1h bar in progress (its open to close ``t``) and of the last completed one (0 when it has
  no bars) [log return].
* ``tod2_sin``, ``tod2_cos``, ``tod4_sin``, ``tod4_cos``: the time of day's 2nd and 4th harmonics (12 h and 6 h
  periods), so that a few fixed times of day are easy to single out.
* ``moh_sin``, ``moh_cos``: the minute of the hour on the unit circle (a 24th harmonic of the day), which tells
  neighbouring minutes apart far better than the day's own circle.
* ``hour_0`` .. ``hour_23``, ``minute_0`` .. ``minute_59``: the UTC hour of the day and the minute of the hour of
  the bar's open time, one-hot [1 in the bar's hour and minute column, 0 elsewhere]. A clock-fixed effect (a
  funding time, a scheduled release at :30, a session open) starts at one minute; the smooth circles above tell
  that minute from its neighbours only by small differences, these columns by a column of its own.

These features read OHLCV only, so they mean the same thing for every source; none has a unit of price or
volume (returns, ratios, z-scores of relative volume), so they mean the same thing for every symbol too. Order
flow (trade counts, taker-buy volume), which only some sources report, has its own features after these
(:mod:`scalpbot.core.order_flow`); a release records which set it reads (:mod:`scalpbot.core.feature_set`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scalpbot.core.features_nb import (
    bar_series_nb,
    bucket_returns_nb,
    last_spike_nb,
    log_change_nb,
    log_span_nb,
    range_position_nb,
    relative_log_volume_nb,
    rolling_rms_nb,
    rolling_zscore_nb,
    truncated_ewm_nb,
)
from scalpbot.errors import DataError

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SPEC_VERSION",
    "FEATURE_WARMUP",
    "FEATURE_WINDOW",
    "ONE_HOT_GROUPS",
    "VOLUME_FLOOR_SHARE",
    "build_features",
    "relative_volume",
]

FEATURE_SPEC_VERSION = "5"
"""Version of the feature definitions; bump it whenever a feature's name, order or values change."""

_RETURN_LAGS = (1, 5, 15, 60, 240)
_VOL_WINDOWS = (15, 60, 240)
_HL_WINDOW = 60
_WILDER_PERIOD = 14
_WILDER_LENGTH = 8 * _WILDER_PERIOD  # truncated weights: the dropped tail holds (13/14)**112 ~ 2.5e-4
_EMA_SPANS = (15, 60, 240)
_EMA_LENGTH_PER_SPAN = 4  # truncated weights: the dropped tail holds about exp(-8) ~ 3.4e-4
_RANGE_WINDOWS = (60, 240)
_VOLUME_WINDOWS = (60, 240)
_SPAN_LAG = 60
_SHOCK_LAGS = (1, 5)
_TIMEFRAMES = (5, 15, 60)  # minutes
_SPIKE_WINDOW = 30
_TOD_HARMONICS = (
    ("tod2", 2),
    ("tod4", 4),
    ("moh", 24),
)  # harmonics of the day (the 24th: minute of the hour)
_HOURS = 24
_MINUTES = 60
_MIN_VOL = 1e-8  # per-bar volatility floor of the shock and regime ratios: flat stretches stay finite

_MIN_ATR_FRACTION = 1e-6  # ATR floor as a fraction of the close: keeps flat stretches finite
_EMA_DIST_CLIP = 50.0
_MIN_VOLUME_STD = 1e-6  # relative volume units
_VOLUME_REFERENCE = 240  # bars of the mean volume the relative volume is measured against
VOLUME_FLOOR_SHARE = 0.1
"""Share of the mean volume down to which the relative volume is a log of the volume; it flattens below."""
_PARKINSON = math.sqrt(4.0 * math.log(2.0))
_MINUTE_NS = 60_000_000_000
_DAY_NS = 1440 * _MINUTE_NS

ONE_HOT_GROUPS: dict[str, tuple[str, ...]] = {
    "hour": tuple(f"hour_{h}" for h in range(_HOURS)),
    "minute": tuple(f"minute_{m}" for m in range(_MINUTES)),
}
"""The one-hot columns of one quantity each (UTC hour of the day, minute of the hour), last in
:data:`FEATURE_NAMES`: a feature's importance shuffles a group's columns together, rows whole, so that every row
keeps exactly one 1."""

FEATURE_NAMES: tuple[str, ...] = (
    *(f"ret_{lag}" for lag in _RETURN_LAGS),
    *(f"rv_{w}" for w in _VOL_WINDOWS),
    f"hl_vol_{_HL_WINDOW}",
    f"atr_{_WILDER_PERIOD}",
    f"rsi_{_WILDER_PERIOD}",
    *(f"ema_dist_{span}" for span in _EMA_SPANS),
    *(f"range_pos_{w}" for w in _RANGE_WINDOWS),
    *(f"volume_z_{w}" for w in _VOLUME_WINDOWS),
    "body",
    "upper_wick",
    "lower_wick",
    "bar_range",
    "tod_sin",
    "tod_cos",
    "dow_sin",
    "dow_cos",
    f"log_span_{_SPAN_LAG}",
    *(f"shock_{lag}" for lag in _SHOCK_LAGS),
    "vol_regime",
    *(f"spike_{what}_{_SPIKE_WINDOW}" for what in ("age", "z", "shock", "ret")),
    *(f"tf{m}_{when}" for m in _TIMEFRAMES for when in ("now", "prev")),
    *(f"{name}_{fn}" for name, _ in _TOD_HARMONICS for fn in ("sin", "cos")),
    *ONE_HOT_GROUPS["hour"],
    *ONE_HOT_GROUPS["minute"],
)
"""Column names of :func:`build_features`, in order."""

FEATURE_WARMUP = max(
    max(_RETURN_LAGS),
    max(_VOL_WINDOWS),  # returns start at position 1
    _HL_WINDOW - 1,
    _WILDER_LENGTH,  # true range and close changes start at position 1
    _EMA_LENGTH_PER_SPAN * max(_EMA_SPANS) - 1,
    max(_RANGE_WINDOWS) - 1,
    _VOLUME_REFERENCE + max(_VOLUME_WINDOWS) - 2,
    _VOLUME_REFERENCE + min(_VOLUME_WINDOWS) + _SPIKE_WINDOW - 3,  # the spike: the top volume_z_60 of 30 bars
    _SPAN_LAG,
    2 * max(_TIMEFRAMES) - 1,
)
"""Bars before the first complete row: rows ``0 .. FEATURE_WARMUP - 1`` are all NaN, later rows all finite."""

FEATURE_WINDOW = FEATURE_WARMUP + 1
"""Trailing bars that determine a row: ``build_features(bars.iloc[-w:])`` ends with the full-history row, bit for
bit, for any ``w >= FEATURE_WINDOW``."""


def _check_bars(bars: pd.DataFrame) -> tuple[np.ndarray, ...]:
    if not isinstance(bars, pd.DataFrame):
        raise DataError(f"bars must be a pandas DataFrame of OHLCV bars; got {type(bars).__name__}")
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in bars.columns]
    if missing:
        raise DataError(
            f"bars is missing column(s) {', '.join(missing)}; expected open, high, low, close, volume "
            "(volume 0.0 where the venue reports none)"
        )
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) != "UTC":
        raise DataError(
            "bars must have a UTC DatetimeIndex of bar open times; validate them with "
            "scalpbot.core.bars.validate_bars"
        )
    try:
        columns = [bars[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume")]
    except (TypeError, ValueError) as e:
        raise DataError(f"bars columns must be numeric: {e}") from e
    open_, high, low, close, volume = columns
    bad_price = ~((low > 0.0) & (low <= np.minimum(open_, close)) & (high >= np.maximum(open_, close)))
    bad_price |= ~np.isfinite(high)
    bad_volume = ~((volume >= 0.0) & np.isfinite(volume))
    for what, bad in (("prices (need 0 < low <= open, close <= high)", bad_price), ("volume", bad_volume)):
        if bad.any():
            first = int(np.argmax(bad))
            raise DataError(f"bars row {first} ({index[first]}): invalid {what}; re-fetch or drop the bar")
    return open_, high, low, close, volume, index.as_unit("ns").asi8


def _unit_circle(positions: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:
    angles = 2.0 * np.pi * np.arange(period, dtype=np.float64) / period
    return np.sin(angles)[positions], np.cos(angles)[positions]  # table look-up: exact for any position


def relative_volume(volume: np.ndarray) -> np.ndarray:
    """Return each bar's relative volume, ``log1p(volume / (0.1 * mean))`` with ``mean`` the mean volume of the
    last 240 bars (0 when they traded nothing; NaN before 240 bars): the volume in no unit."""
    return relative_log_volume_nb(volume, _VOLUME_REFERENCE, VOLUME_FLOOR_SHARE)


def build_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Return the float64 feature matrix of ``bars`` (columns :data:`FEATURE_NAMES`, index ``bars.index``).

    Row ``t`` uses bars ``t - FEATURE_WARMUP .. t`` only and is known at the close of bar ``t``. Rows before
    :data:`FEATURE_WARMUP` are NaN; later rows are finite (flat bars, zero volume and gaps included). Raise
    :class:`~scalpbot.errors.DataError` for a frame that is not a valid bar frame (missing columns, non-UTC index,
    non-positive or inconsistent prices, negative or NaN volume).
    """
    open_, high, low, close, volume, time_ns = _check_bars(bars)
    ret, true_range, hl, gain, loss = bar_series_nb(open_, high, low, close)
    wilder = 1.0 / _WILDER_PERIOD
    atr = truncated_ewm_nb(true_range, wilder, _WILDER_LENGTH)
    scale = np.maximum(atr, _MIN_ATR_FRACTION * close)
    up = truncated_ewm_nb(gain, wilder, _WILDER_LENGTH)
    down = truncated_ewm_nb(loss, wilder, _WILDER_LENGTH)
    moved = up + down
    rsi = np.divide(up - down, moved, out=np.zeros_like(moved), where=moved > 0.0)
    rsi[np.isnan(moved)] = np.nan
    log_volume = relative_volume(volume)
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    minute = (time_ns // _MINUTE_NS) % 1440
    weekday = (time_ns // _DAY_NS + 3) % 7  # 1970-01-01 was a Thursday
    day_sin, day_cos = _unit_circle(np.arange(1440), 1440)
    tod_sin, tod_cos = day_sin[minute], day_cos[minute]
    dow_sin, dow_cos = _unit_circle(weekday, 7)
    rv = {w: rolling_rms_nb(ret, w) for w in _VOL_WINDOWS}
    rv_60 = np.maximum(rv[60], _MIN_VOL)
    timeframes = [bucket_returns_nb(open_, close, time_ns, m * _MINUTE_NS, m) for m in _TIMEFRAMES]
    volume_z = {w: rolling_zscore_nb(log_volume, w, _MIN_VOLUME_STD) for w in _VOLUME_WINDOWS}
    shocks = {lag: log_change_nb(close, lag) / (rv_60 * math.sqrt(lag)) for lag in _SHOCK_LAGS}
    spikes = last_spike_nb(volume_z[60], shocks[1], close, _SPIKE_WINDOW)
    harmonics = [(day_sin[(minute * k) % 1440], day_cos[(minute * k) % 1440]) for _, k in _TOD_HARMONICS]

    columns = [
        *(log_change_nb(close, lag) for lag in _RETURN_LAGS),
        *(rv[w] for w in _VOL_WINDOWS),
        rolling_rms_nb(hl, _HL_WINDOW) / _PARKINSON,
        atr / close,
        rsi,
        *(
            np.clip(
                (close - truncated_ewm_nb(close, 2.0 / (span + 1), _EMA_LENGTH_PER_SPAN * span)) / scale,
                -_EMA_DIST_CLIP,
                _EMA_DIST_CLIP,
            )
            for span in _EMA_SPANS
        ),
        *(range_position_nb(high, low, close, w) for w in _RANGE_WINDOWS),
        *volume_z.values(),
        (close - open_) / scale,
        (high - top) / scale,
        (bottom - low) / scale,
        (high - low) / scale,
        tod_sin,
        tod_cos,
        dow_sin,
        dow_cos,
        log_span_nb(time_ns, _SPAN_LAG, _MINUTE_NS),
        *shocks.values(),
        np.log(np.maximum(rv[15], _MIN_VOL) / np.maximum(rv[240], _MIN_VOL)),
        *spikes,
        *(series for pair in timeframes for series in pair),
        *(series for pair in harmonics for series in pair),
    ]
    values = np.empty((len(FEATURE_NAMES), len(bars)))  # one row per feature: the frame's (transposed) layout
    for i, column in enumerate(columns):
        values[i] = column
    first = len(columns)
    values[first : first + _HOURS] = np.eye(_HOURS)[:, minute // 60]
    values[first + _HOURS :] = np.eye(_MINUTES)[:, minute % 60]
    values[:, :FEATURE_WARMUP] = np.nan
    return pd.DataFrame(values.T, index=bars.index, columns=list(FEATURE_NAMES), copy=False)
