"""Triple-barrier labels and the forward-volatility target, with the fill rules of the backtest kernel (pure).

For a decision on the close of bar ``t`` a trade enters at ``open[t + 1]`` (worsened by ``slippage``), with SL and
TP at fractions ``k_sl * sigma[t]`` and ``k_tp * sigma[t]`` of the entry price, checked on bars ``t + 1 .. t + H``
(the entry bar included) by :func:`scalpbot.core.backtest.nb.stop_exit_nb`: SL wins when both lie inside one bar,
a bar opening beyond a barrier fills at that open. This is exactly what ``backtest`` does with ``max_hold=H``
(its time stop then exits at ``open[t + H + 1]``, which the label does not need).

A side **wins** when it exits at its TP within ``H`` bars with a positive PnL after ``fee`` on both fills (a TP
too close to cover the round-trip fees is no win). Classes: ``2`` long wins, ``0`` short wins, ``1`` neither.
Where the venue cannot short (``shorts=False``, a spot market) a short never wins: no row is labelled ``0``, so
the model learns only what the venue lets the bot do. Both sides can win only when ``k_tp < k_sl`` (up to the long TP, then down to the short TP): the side whose TP
fills first takes the label; both in the same bar gives ``1``.

A row is valid when bars ``t + 1 .. t + H`` exist and ``sigma[t]`` is finite and positive; invalid rows have
label ``-1`` and exit reason ``-1``. Nothing after bar ``t + H`` is ever read for row ``t``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit

from scalpbot.core.backtest.enums import ExitReason
from scalpbot.core.backtest.nb import fill_price_nb, stop_exit_nb
from scalpbot.core.features_nb import bar_series_nb, rolling_rms_nb
from scalpbot.errors import ConfigError, DataError

__all__ = [
    "LABEL_LONG",
    "LABEL_NEITHER",
    "LABEL_SHORT",
    "barrier_volatility",
    "check_fraction",
    "check_horizon",
    "forward_volatility",
    "forward_volatility_nb",
    "ohlc_prices",
    "triple_barrier_labels",
]

LABEL_SHORT = 0
LABEL_NEITHER = 1
LABEL_LONG = 2
_INVALID = -1


@njit(cache=True)
def barrier_exit_nb(
    direction: int,
    t: int,
    horizon: int,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    sl: float,
    tp: float,
    fee: float,
    slippage: float,
) -> tuple[int, int, float]:
    """Return ``(exit reason, bars after t, PnL per unit)`` of one trade decided at ``t`` and held up to ``horizon``.

    The reason is ``ExitReason.sl``/``tp``, or ``ExitReason.time`` when no barrier fills on bars
    ``t + 1 .. t + horizon`` (then the bars are ``horizon`` and the PnL NaN). The PnL per unit of base asset is
    the kernel's: price difference after slippage minus ``fee`` on both fills' notional.
    """
    entry = fill_price_nb(open_[t + 1], direction, slippage)
    sl_price = entry * (1.0 - direction * sl)
    tp_price = entry * (1.0 + direction * tp)
    for j in range(t + 1, t + horizon + 1):
        raw, reason = stop_exit_nb(direction, open_[j], high[j], low[j], sl_price, tp_price)
        if reason >= 0:
            exit_price = fill_price_nb(raw, -direction, slippage)
            fees = exit_price * fee + entry * fee
            return reason, j - t, direction * (exit_price - entry) - fees
    return ExitReason.time, horizon, np.nan


@njit(cache=True)
def triple_barrier_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    sigma: np.ndarray,
    horizon: int,
    k_sl: float,
    k_tp: float,
    fee: float,
    slippage: float,
    shorts: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(label, long reason, long bars, short reason, short bars)`` per decision bar (int8/int16 arrays).

    ``shorts`` false: a short never wins (its exit columns are still filled).
    """
    n = open_.shape[0]
    label = np.full(n, _INVALID, dtype=np.int8)
    reasons = np.full((2, n), _INVALID, dtype=np.int8)
    bars = np.full((2, n), _INVALID, dtype=np.int16)
    for t in range(n - horizon):
        s = sigma[t]
        if not (s > 0.0 and s < np.inf):
            continue
        long_reason, long_after, long_pnl = barrier_exit_nb(
            1, t, horizon, open_, high, low, k_sl * s, k_tp * s, fee, slippage
        )
        short_reason, short_after, short_pnl = barrier_exit_nb(
            -1, t, horizon, open_, high, low, k_sl * s, k_tp * s, fee, slippage
        )
        reasons[0, t] = long_reason
        reasons[1, t] = short_reason
        bars[0, t] = long_after
        bars[1, t] = short_after
        long_won = long_reason == ExitReason.tp and long_pnl > 0.0
        short_won = shorts and short_reason == ExitReason.tp and short_pnl > 0.0
        if long_won and short_won and long_after != short_after:
            label[t] = LABEL_LONG if long_after < short_after else LABEL_SHORT
        elif long_won and not short_won:
            label[t] = LABEL_LONG
        elif short_won and not long_won:
            label[t] = LABEL_SHORT
        else:
            label[t] = LABEL_NEITHER
    return label, reasons[0], bars[0], reasons[1], bars[1]


@njit(cache=True)
def forward_volatility_nb(ret: np.ndarray, horizon: int) -> np.ndarray:
    """Return ``sqrt(sum(ret[t + 1 .. t + horizon] ** 2))``; NaN where ``t + horizon`` is past the end."""
    n = ret.shape[0]
    out = np.full(n, np.nan)
    for t in range(n - horizon):
        total = 0.0
        for j in range(t + 1, t + horizon + 1):
            total += ret[j] * ret[j]
        out[t] = math.sqrt(total)
    return out


def ohlc_prices(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the bars' open, high, low and close as float64 arrays; ``DataError`` if missing or not valid OHLC."""
    if not isinstance(bars, pd.DataFrame):
        raise DataError(f"bars must be a pandas DataFrame of OHLC bars; got {type(bars).__name__}")
    missing = [c for c in ("open", "high", "low", "close") if c not in bars.columns]
    if missing:
        raise DataError(f"bars is missing column(s) {', '.join(missing)}; expected open, high, low, close")
    try:
        open_, high, low, close = (
            bars[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")
        )
    except (TypeError, ValueError) as e:
        raise DataError(f"bars prices must be numeric: {e}") from e
    bad = ~((low > 0.0) & (low <= np.minimum(open_, close)) & (high >= np.maximum(open_, close)))
    bad |= ~np.isfinite(high)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"bars row {first} ({bars.index[first]}): invalid prices (need 0 < low <= open, close <= high); "
            "validate them with scalpbot.core.bars.validate_bars"
        )
    return open_, high, low, close


def check_fraction(name: str, value: float, example: str) -> None:
    """Raise ``ConfigError`` unless ``value`` is a fraction in [0, 0.1) (a fee, a slippage, a move)."""
    if not (math.isfinite(value) and 0.0 <= value < 0.1):
        raise ConfigError(f"{name} must be a fraction in [0, 0.1), e.g. {example}; got {value!r}")


def forward_volatility(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, horizon: int
) -> np.ndarray:
    """Return the ``fwd_vol`` column: the realized volatility of 1-bar close log returns over bars
    ``t + 1 .. t + horizon`` as a fraction of price; NaN where ``t + horizon`` is past the end."""
    out: np.ndarray = forward_volatility_nb(bar_series_nb(open_, high, low, close)[0], int(horizon))
    return out


def check_horizon(horizon: int) -> None:
    """Raise ``ConfigError`` unless ``horizon`` is a whole number of bars in [1, 10000]."""
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or not 1 <= horizon <= 10_000:
        raise ConfigError(f"horizon must be a whole number of bars in [1, 10000], e.g. 30; got {horizon!r}")


def barrier_volatility(bars: pd.DataFrame, *, horizon: int, window: int = 60) -> np.ndarray:
    """Return sigma per bar: the volatility known at the close of bar ``t``, scaled to ``horizon`` bars.

    ``sigma[t] = sqrt(horizon) * rms(log(close[s] / close[s - 1]) for s in t - window + 1 .. t)``: the realized
    volatility of 1-bar log returns over the last ``window`` bars (the ``rv_60`` feature for the default window),
    as a fraction of price over ``horizon`` bars. NaN for ``t < window``. Same units as ``fwd_vol``.
    """
    check_horizon(horizon)
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise ConfigError(f"window must be a whole number of bars >= 2, e.g. 60; got {window!r}")
    open_, high, low, close = ohlc_prices(bars)
    ret = bar_series_nb(open_, high, low, close)[0]
    sigma: np.ndarray = rolling_rms_nb(ret, int(window)) * math.sqrt(horizon)
    return sigma


def triple_barrier_labels(
    bars: pd.DataFrame,
    *,
    horizon: int,
    k_sl: float,
    k_tp: float,
    vol: np.ndarray | None = None,
    fee: float = 0.0,
    slippage: float = 0.0,
    shorts: bool = True,
) -> pd.DataFrame:
    """Return the triple-barrier label and the forward volatility of each decision bar (index ``bars.index``).

    ``vol``: sigma per bar, known at bar ``t``'s close, as a fraction of price (default
    :func:`barrier_volatility` with this ``horizon``); SL/TP distances are ``k_sl * vol[t]`` and ``k_tp * vol[t]``.
    ``fee``/``slippage``: fractions as in ``backtest`` (fee on each fill's notional; 0 = gross labels).
    ``shorts``: whether the venue can short; false (spot) labels no row ``0`` (short wins).

    Columns: ``label`` (int8: 0 short wins, 1 neither, 2 long wins, -1 invalid); ``fwd_vol`` (float64,
    ``sqrt(sum of squared 1-bar close log returns over bars t+1 .. t+H)``, the realized volatility over the
    horizon as a fraction of price, same units as ``vol``; NaN where ``t + H`` is past the data);
    ``long_exit``/``short_exit`` (int8 ``ExitReason`` code: sl, tp or time, -1 invalid) and
    ``long_bars``/``short_bars`` (int16: bars after ``t`` of the exit bar, ``H`` for time, -1 invalid).
    """
    check_horizon(horizon)
    for name, value in (("k_sl", k_sl), ("k_tp", k_tp)):
        if not (math.isfinite(value) and value > 0.0):
            raise ConfigError(
                f"{name} must be a positive multiple of the volatility, e.g. 1.5; got {value!r}"
            )
    check_fraction("fee", fee, "0.0004")
    check_fraction("slippage", slippage, "0.0001")
    open_, high, low, close = ohlc_prices(bars)
    if vol is None:
        sigma = barrier_volatility(bars, horizon=horizon)
    else:
        sigma = np.asarray(vol, dtype=np.float64)
        if sigma.shape != open_.shape:
            raise ConfigError(f"vol must hold one value per bar: shape {open_.shape}, got {sigma.shape}")
    label, long_exit, long_bars, short_exit, short_bars = triple_barrier_nb(
        open_,
        high,
        low,
        sigma,
        int(horizon),
        float(k_sl),
        float(k_tp),
        float(fee),
        float(slippage),
        bool(shorts),
    )
    return pd.DataFrame(
        {
            "label": label,
            "fwd_vol": forward_volatility(open_, high, low, close, horizon),
            "long_exit": long_exit,
            "long_bars": long_bars,
            "short_exit": short_exit,
            "short_bars": short_bars,
        },
        index=bars.index,
    )
