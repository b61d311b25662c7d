"""Numba kernels of the feature matrix: each output row is recomputed from scratch from a fixed-length window.

Start independence is the contract of this module: ``out[t]`` is a function of the inputs at positions
``t - window + 1 .. t`` only, evaluated by the same floating-point operations in the same order whatever ``t``
and wherever the array starts. So a trailing window of the bars gives the same last row, bit for bit, as the
full history. That rules out running sums and recursive filters (their rounding carries the whole history);
exponential averages are truncated to a fixed number of weights instead (:func:`truncated_ewm_nb`).

Window sums take two levels (:func:`window_weighted_sum_nb`): a sum over each block of ``b`` consecutive bars,
then a strided sum over ``m`` blocks, ``b * m = window``. Each block sum is itself a fixed function of its own bars,
so the total still is, at a cost of ``b + m`` instead of ``b * m`` per row. Inner loops use four interleaved
accumulators in a fixed pattern (term ``j`` goes to accumulator ``j % 4``): the compiler may not reorder
floating-point additions (no ``fastmath``, no SVML, transcendental functions as scalar calls), so every row is
reproducible, and the four independent chains run about four times faster than one.
Positions without a full window are NaN, and a NaN inside a window propagates.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def bar_series_nb(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return per-bar ``(log return, true range, high/low log range, close gain, close loss)``.

    ``log return[t] = log(close[t] / close[t-1])``; true range in price units,
    ``max(high[t], close[t-1]) - min(low[t], close[t-1])``; ``log(high[t] / low[t])``; gain/loss are the
    positive/negative parts of ``close[t] - close[t-1]`` (price units). Position 0 is NaN except the range.
    """
    n = close.shape[0]
    ret = np.empty(n)
    true_range = np.empty(n)
    hl = np.empty(n)
    gain = np.empty(n)
    loss = np.empty(n)
    for t in range(n):
        hl[t] = math.log(high[t] / low[t])
        if t == 0:
            ret[t] = np.nan
            true_range[t] = np.nan
            gain[t] = np.nan
            loss[t] = np.nan
            continue
        prev = close[t - 1]
        ret[t] = math.log(close[t] / prev)
        true_range[t] = max(high[t], prev) - min(low[t], prev)
        change = close[t] - prev
        gain[t] = max(change, 0.0)
        loss[t] = max(-change, 0.0)
    return ret, true_range, hl, gain, loss


@njit(cache=True)
def log_change_nb(close: np.ndarray, lag: int) -> np.ndarray:
    """Return ``log(close[t] / close[t - lag])``; NaN for ``t < lag``."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    for t in range(lag, n):
        out[t] = math.log(close[t] / close[t - lag])
    return out


@njit(cache=True)
def block_size_nb(window: int) -> int:
    """Return the largest divisor of ``window`` not above its square root (the cheapest two-level split)."""
    block = max(int(math.sqrt(window)), 1)
    while window % block:
        block -= 1
    return block


@njit(cache=True)
def weighted_sum_nb(x: np.ndarray, weights: np.ndarray, stride: int) -> np.ndarray:
    """Return ``sum(weights[j] * x[t - j * stride] for j in range(len(weights)))``; NaN until the window is full."""
    n = x.shape[0]
    m = weights.shape[0]
    out = np.full(n, np.nan)
    for t in range((m - 1) * stride, n):
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        j = 0
        while j + 4 <= m:
            s = t - j * stride
            a0 += weights[j] * x[s]
            a1 += weights[j + 1] * x[s - stride]
            a2 += weights[j + 2] * x[s - 2 * stride]
            a3 += weights[j + 3] * x[s - 3 * stride]
            j += 4
        while j < m:
            a0 += weights[j] * x[t - j * stride]
            j += 1
        out[t] = (a0 + a1) + (a2 + a3)
    return out


@njit(cache=True)
def window_weighted_sum_nb(x: np.ndarray, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Return ``sum(outer[j] * inner[i] * x[t - j * len(inner) - i])`` over a window of ``len(inner) * len(outer)``.

    Two levels: block sums over ``len(inner)`` consecutive bars, then a strided sum of ``len(outer)`` blocks. Each
    block sum is itself a fixed function of its bars, so the result is start independent at a cost of
    ``len(inner) + len(outer)`` per row instead of their product.
    """
    return weighted_sum_nb(weighted_sum_nb(x, inner, 1), outer, inner.shape[0])


@njit(cache=True)
def rolling_sum_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Return the sum of ``x[t - window + 1 .. t]``."""
    block = block_size_nb(window)
    return window_weighted_sum_nb(x, np.ones(block), np.ones(window // block))


@njit(cache=True)
def truncated_ewm_nb(x: np.ndarray, alpha: float, length: int) -> np.ndarray:
    """Return the exponential average of ``x`` with weights ``(1 - alpha) ** k`` for ``k < length``, renormalized.

    The recursive EMA's weights cut at ``length`` bars; a longer series does not change the value.
    """
    block = block_size_nb(length)
    decay = 1.0 - alpha
    inner = np.empty(block)
    for i in range(block):
        inner[i] = decay**i
    outer = np.empty(length // block)
    for j in range(outer.shape[0]):
        outer[j] = decay ** (j * block)
    inner /= inner.sum() * outer.sum()
    return window_weighted_sum_nb(x, inner, outer)


@njit(cache=True)
def rolling_rms_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Return the root mean square of ``x[t - window + 1 .. t]`` (realized volatility when ``x`` are returns)."""
    return np.sqrt(rolling_sum_nb(x * x, window) / window)


@njit(cache=True)
def rolling_zscore_nb(x: np.ndarray, window: int, min_std: float) -> np.ndarray:
    """Return ``(x[t] - mean) / max(std, min_std)`` over ``x[t - window + 1 .. t]`` (population std).

    ``min_std`` keeps a constant window (all-zero volume) at 0 instead of 0/0; |z| <= (window-1)/sqrt(window).
    """
    mean = rolling_sum_nb(x, window) / window
    var = rolling_sum_nb(x * x, window) / window - mean * mean
    return (x - mean) / np.maximum(np.sqrt(np.maximum(var, 0.0)), min_std)


@njit(cache=True)
def rolling_extremes_nb(high: np.ndarray, low: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the highest high and the lowest low of bars ``t - window + 1 .. t`` (exact; two-level blocks)."""
    n = high.shape[0]
    block = block_size_nb(window)
    top_block = np.full(n, np.nan)
    bottom_block = np.full(n, np.nan)
    for t in range(block - 1, n):
        top = high[t]
        bottom = low[t]
        for i in range(1, block):
            top = max(top, high[t - i])
            bottom = min(bottom, low[t - i])
        top_block[t] = top
        bottom_block[t] = bottom
    top_out = np.full(n, np.nan)
    bottom_out = np.full(n, np.nan)
    for t in range(window - 1, n):
        top = top_block[t]
        bottom = bottom_block[t]
        for s in range(t - block, t - window, -block):
            top = max(top, top_block[s])
            bottom = min(bottom, bottom_block[s])
        top_out[t] = top
        bottom_out[t] = bottom
    return top_out, bottom_out


@njit(cache=True)
def range_position_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    """Return where ``close[t]`` sits in the high-low range of the last ``window`` bars, from -1 (low) to +1.

    A flat window (no range) gives 0.
    """
    n = close.shape[0]
    top, bottom = rolling_extremes_nb(high, low, window)
    out = np.full(n, np.nan)
    for t in range(window - 1, n):
        span = top[t] - bottom[t]
        out[t] = 2.0 * (close[t] - bottom[t]) / span - 1.0 if span > 0.0 else 0.0
    return out


@njit(cache=True)
def log_span_nb(time_ns: np.ndarray, lag: int, step_ns: int) -> np.ndarray:
    """Return ``log((time_ns[t] - time_ns[t - lag]) / (lag * step_ns))``: 0 on a gap-free series."""
    n = time_ns.shape[0]
    out = np.full(n, np.nan)
    expected = float(lag * step_ns)
    for t in range(lag, n):
        out[t] = math.log(float(time_ns[t] - time_ns[t - lag]) / expected)
    return out


@njit(cache=True)
def relative_log_volume_nb(volume: np.ndarray, window: int, share: float) -> np.ndarray:
    """Return ``log1p(volume[t] / (share * mean))``, ``mean`` the mean volume of bars ``t - window + 1 .. t``.

    The bar's volume against the recent mean, in no unit: volumes counted in any unit (coins, contracts of a
    fixed size, thousands: any constant factor) give the same values, bit for bit when the factor is a power of
    two. It is a log of the volume down to ``share`` of the mean and flattens below it, so the quietest bars do
    not dominate a z-score of it; 0 where the window traded nothing (and for a bar with no volume, or a mean so
    small that ``share`` of it is 0.0 in floating point).
    """
    mean = rolling_sum_nb(volume, window) / window
    out = np.full(volume.shape[0], np.nan)
    for t in range(volume.shape[0]):
        floor = share * mean[t]
        if floor > 0.0:
            out[t] = math.log1p(volume[t] / floor)
        elif floor >= 0.0:  # not NaN: the window traded nothing (or next to nothing)
            out[t] = 0.0
    return out


@njit(cache=True)
def log1p_nb(x: np.ndarray) -> np.ndarray:
    """Return ``log(1 + x)`` element by element (scalar libm calls: the same value wherever an element sits)."""
    out = np.empty(x.shape[0])
    for t in range(x.shape[0]):
        out[t] = math.log1p(x[t])
    return out


@njit(cache=True)
def bucket_returns_nb(
    open_: np.ndarray, close: np.ndarray, time_ns: np.ndarray, period_ns: int, max_bars: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the log return of the clock-aligned bucket in progress and of the last completed bucket at ``t``.

    Buckets are ``[k * period_ns, (k + 1) * period_ns)`` in bar open time (a 5m/15m/1h bar built from the 1m
    bars). In progress: ``log(close[t] / open[first bar of t's bucket])``; previous: ``log(close[last] /
    open[first])`` over the bars of the bucket before it (0 when it has no bars). Only positions
    ``t - 2 * max_bars + 1 .. t`` are read (``max_bars``: bars in one bucket), so the row is start independent;
    positions before ``2 * max_bars - 1`` are NaN.
    """
    n = close.shape[0]
    current = np.full(n, np.nan)
    previous = np.full(n, np.nan)
    for t in range(2 * max_bars - 1, n):
        start = (time_ns[t] // period_ns) * period_ns
        first = t
        while first > t - max_bars + 1 and time_ns[first - 1] >= start:
            first -= 1
        current[t] = math.log(close[t] / open_[first])
        prev_start = start - period_ns
        last = first - 1
        if time_ns[last] < prev_start:
            previous[t] = 0.0
            continue
        begin = last
        while begin > t - 2 * max_bars + 1 and time_ns[begin - 1] >= prev_start:
            begin -= 1
        previous[t] = math.log(close[last] / open_[begin])
    return current, previous


@njit(cache=True)
def taker_imbalance_nb(taker_buy: np.ndarray, volume: np.ndarray, window: int) -> np.ndarray:
    """Return the taker-buy imbalance of bars ``t - window + 1 .. t``: ``sum(2 * taker_buy - volume) / sum(volume)``.

    From -1 (every taker sold) to +1 (every taker bought); 0 when the window traded nothing. Volume-weighted, so a
    bar with no volume counts for nothing instead of dividing by zero.
    """
    n = volume.shape[0]
    net = np.empty(n)
    for t in range(n):
        net[t] = 2.0 * taker_buy[t] - volume[t]
    net_sum = rolling_sum_nb(net, window)
    volume_sum = rolling_sum_nb(volume, window)
    out = np.full(n, np.nan)
    for t in range(window - 1, n):
        if volume_sum[t] > 0.0:
            out[t] = min(max(net_sum[t] / volume_sum[t], -1.0), 1.0)
        elif volume_sum[t] == 0.0:
            out[t] = 0.0  # NaN inputs stay NaN
    return out


@njit(cache=True)
def last_spike_nb(
    z: np.ndarray, shock: np.ndarray, close: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return, per bar ``t``, the bar of the largest ``z`` among ``t - window + 1 .. t`` (the latest on a tie):
    its age in bars over ``window`` [0 .. 1), its ``z``, its ``shock`` and the log return of the close since it.

    NaN where the window is not complete or holds a NaN ``z``.
    """
    n = z.shape[0]
    age = np.full(n, np.nan)
    top = np.full(n, np.nan)
    at_shock = np.full(n, np.nan)
    since = np.full(n, np.nan)
    for t in range(window - 1, n):
        best = -1
        for i in range(window):
            v = z[t - i]
            if np.isnan(v):
                best = -2
                break
            if best < 0 or v > z[t - best]:
                best = i
        if best < 0:
            continue
        age[t] = best / window
        top[t] = z[t - best]
        at_shock[t] = shock[t - best]
        since[t] = math.log(close[t] / close[t - best])  # a ratio: the same in any unit of price
    return age, top, at_shock, since
