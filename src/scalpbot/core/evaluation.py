"""Score ``StrategyParams`` on a window of bars with precomputed predictions, fast enough to call per trial. Pure.

A :class:`PolicyWindow` holds one window's bars and the model's predictions for each bar as contiguous arrays,
validated once. A :class:`PolicyEvaluator` turns params into signals (:func:`scalpbot.core.policy.fill_signals_nb`),
runs the one execution model (:func:`scalpbot.core.backtest.nb.simulate_nb`) and reduces the equity curve to daily
returns, reusing its buffers so that a call on a year of 1m bars costs a few milliseconds and no pandas.
Tuning (Optuna) and the RL environment both score params this way; :func:`scalpbot.core.backtest.frame.backtest` on
:func:`scalpbot.core.policy.signals_frame` gives the same trades and equity with frames and full metrics.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from scalpbot.core.backtest.enums import (
    NO_FUNDING,
    NO_ORDER_RULES,
    ExitReason,
    InputProblem,
    OrderRules,
    SimulationStatus,
    SimulationStatusT,
)
from scalpbot.core.backtest.nb import find_bad_bar_nb, simulate_nb
from scalpbot.core.metrics import PERIODS_PER_YEAR_24_7, sharpe_ratio
from scalpbot.core.policy import fill_signals_nb, prediction_arrays
from scalpbot.core.policy_params import StrategyParams
from scalpbot.errors import ConfigError, DataError

__all__ = ["Evaluation", "PolicyEvaluator", "PolicyWindow", "day_end_positions", "mean_bar_return"]

_PRICES = ("open", "high", "low", "close")
_TICKS_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def day_end_positions(index: pd.DatetimeIndex, period: str = "1D") -> np.ndarray:
    """Return the position of the last bar of each UTC calendar day (or ``period``, e.g. "1h") with bars.

    Same days as :func:`scalpbot.core.metrics.daily_returns`: periods without bars are skipped. ``period`` must
    divide a day ("1D", "6h", "1h", ...).
    """
    if len(index) == 0:
        return np.empty(0, dtype=np.int64)
    ticks = index.asi8
    per_day = _TICKS_PER_DAY[str(index.unit)]
    length = pd.Timedelta(period)
    if not (pd.Timedelta(0) < length <= pd.Timedelta(days=1)) or pd.Timedelta(days=1) % length:
        raise ConfigError(f"period '{period}' must divide a UTC day, e.g. 1D, 6h or 1h")
    per_period = per_day * length.value // pd.Timedelta(days=1).value
    midnights = (
        np.arange(ticks[0] // per_period + 1, ticks[-1] // per_period + 1, dtype=np.int64) * per_period
    )
    last_of_day = np.append(np.searchsorted(ticks, midnights, side="left") - 1, len(index) - 1)
    ends: np.ndarray = last_of_day[np.append(True, np.diff(last_of_day) != 0)].astype(np.int64)
    return ends


@njit(cache=True)
def daily_returns_nb(equity: np.ndarray, day_ends: np.ndarray, out: np.ndarray) -> None:
    """Write the simple return of each day's last equity over the previous day's (the first day: over equity[0])."""
    previous = equity[0]
    for i in range(day_ends.shape[0]):
        value = equity[day_ends[i]]
        out[i] = value / previous - 1.0
        previous = value


_SL, _TP, _OPEN = int(ExitReason.sl), int(ExitReason.tp), int(ExitReason.open)


@njit(cache=True)
def exposure_nb(
    records: np.ndarray,
    equity: np.ndarray,
    initial_equity: float,
    day_ends: np.ndarray,
    held: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write each period's bar-weighted exposure: the sum over its bars of the signed notional share held.

    A trade holds ``side * qty * entry_price / equity`` (equity at the close before its entry) from its entry
    bar through the bar before a time or signal exit (filled at that bar's open), or through the bar a stop
    filled inside (or the last bar, while open). ``held`` is a scratch buffer of one float per bar.
    """
    n = held.shape[0]
    held[:] = 0.0
    for k in range(records.shape[0]):
        entry = records[k]["entry_idx"]
        base = equity[entry - 1] if entry > 0 else initial_equity
        if not base > 0.0:
            continue
        share = records[k]["side"] * records[k]["qty"] * records[k]["entry_price"] / base
        reason = records[k]["exit_reason"]
        inside = reason in (_SL, _TP, _OPEN)
        last = records[k]["exit_idx"] if inside else records[k]["exit_idx"] - 1
        if last < entry:
            continue
        held[entry] += share
        if last + 1 < n:
            held[last + 1] -= share
    running = 0.0
    total = 0.0
    period = 0
    for t in range(n):
        running += held[t]
        total += running
        if period < day_ends.shape[0] and t == day_ends[period]:
            out[period] = total
            total = 0.0
            period += 1


def mean_bar_return(window: PolicyWindow) -> float:
    """Return the window's mean close-to-close simple return per bar: what one unit of notional held over one bar
    earns on average at a random bar of the window."""
    close = window.close
    return float(np.mean(close[1:] / close[:-1] - 1.0))


def _frozen(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class PolicyWindow:
    """Bars and per-bar predictions of one window as read-only contiguous arrays (build with ``from_frame``).

    ``probs[t]`` = (p_short, p_neither, p_long) and ``vol[t]`` (fraction of price) are known at bar ``t``'s
    close; ``day_ends`` are the positions of each UTC day's last bar (of each ``period`` when it is not "1D":
    the evaluation's returns are then per period).
    """

    index: pd.DatetimeIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    probs: np.ndarray
    vol: np.ndarray
    day_ends: np.ndarray
    period: str = "1D"

    @classmethod
    def from_frame(
        cls, bars: pd.DataFrame, probs: np.ndarray, vol: np.ndarray, *, period: str = "1D"
    ) -> PolicyWindow:
        """Validate ``bars`` (UTC DatetimeIndex, open/high/low/close) and one prediction row per bar.

        ``period``: the returns an evaluation reports, per UTC day by default ("1h": per hour).
        """
        if not isinstance(bars, pd.DataFrame) or not isinstance(bars.index, pd.DatetimeIndex):
            raise DataError("bars must be a DataFrame with a UTC DatetimeIndex of bar open times")
        if bars.index.tz is None or str(bars.index.tz) != "UTC":
            raise DataError(f"bars index must be UTC; got tz={bars.index.tz}: use bars.tz_convert('UTC')")
        missing = [name for name in _PRICES if name not in bars.columns]
        if missing:
            raise DataError(f"bars is missing column '{missing[0]}'; expected {', '.join(_PRICES)}")
        if len(bars) < 2:
            raise DataError(f"a policy window needs at least 2 bars; got {len(bars)}")
        prices = [np.ascontiguousarray(bars[name].to_numpy(dtype=np.float64)) for name in _PRICES]
        position, problem = find_bad_bar_nb(bars.index.asi8, *prices)
        if problem != InputProblem.none:
            raise DataError(
                f"bars row {position} ({bars.index[position]}) is invalid ({InputProblem._fields[problem]}); "
                "validate the bars with scalpbot.core.bars.validate_bars"
            )
        p, v = prediction_arrays(probs, vol)
        if v.shape[0] != len(bars):
            raise DataError(f"bars has {len(bars)} rows but probs/vol have {v.shape[0]}; pass one per bar")
        index = pd.DatetimeIndex(bars.index)
        open_, high, low, close = (_frozen(a) for a in prices)
        ends = _frozen(day_end_positions(index, period))
        return cls(index, open_, high, low, close, _frozen(p), _frozen(v), ends, period)

    def __len__(self) -> int:
        return int(self.close.shape[0])

    def slice(self, start: int, stop: int) -> PolicyWindow:
        """Return bars ``[start, stop)`` (positions, at least 2 bars) as a window of views: nothing is copied."""
        if not 0 <= start <= stop - 2 <= len(self) - 2:
            raise DataError(f"slice [{start}, {stop}) must hold at least 2 of the window's {len(self)} bars")
        index = self.index[start:stop]
        s = slice(start, stop)
        return PolicyWindow(
            index,
            self.open[s],
            self.high[s],
            self.low[s],
            self.close[s],
            self.probs[s],
            self.vol[s],
            _frozen(day_end_positions(index, self.period)),
            self.period,
        )

    def fingerprint(self) -> str:
        """Return a hex digest of times, prices and predictions: equal windows, equal fingerprints."""
        digest = hashlib.blake2b(digest_size=16)
        for array in (self.index.asi8, self.open, self.high, self.low, self.close, self.probs, self.vol):
            digest.update(np.ascontiguousarray(array).tobytes())
        if self.period != "1D":
            digest.update(self.period.encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class Evaluation:
    """Outcome of params on a window, net of fees: closed trade count, daily returns, total return, Sharpe.

    ``daily_returns`` are simple returns of each UTC day's last equity (as
    :func:`scalpbot.core.metrics.daily_returns`); ``sharpe`` is their annualized Sharpe ratio (``None`` when
    undefined); ``status`` is the kernel's (``ok`` or ``equity_depleted``). ``exposure`` (evaluators built with
    ``track_exposure``): each period's bar-weighted exposure, the sum over its bars of the signed notional held as
    a share of equity (:func:`exposure_nb`; 60.0 for an hour fully long at 1x), else ``None``.
    """

    trades: int
    daily_returns: np.ndarray
    total_return: float
    sharpe: float | None
    status: str
    exposure: np.ndarray | None = None


class PolicyEvaluator:
    """Score params on one window, reusing signal buffers between calls (not thread-safe: one per thread)."""

    def __init__(
        self,
        window: PolicyWindow,
        *,
        fee: float = 0.0004,
        slippage: float = 0.0,
        periods_per_year: float = PERIODS_PER_YEAR_24_7,
        rules: OrderRules = NO_ORDER_RULES,
        initial_equity: float = 1.0,
        funding: np.ndarray = NO_FUNDING,
        track_exposure: bool = False,
    ) -> None:
        """``fee``/``slippage`` as in ``backtest``; ``rules``: the venue's step, minimums and shorts.

        ``track_exposure``: report each period's exposure in the evaluation (``Evaluation.exposure``).

        ``funding``: the funding rate due at each bar's open of the window (0 where none; empty: no funding),
        e.g. :func:`scalpbot.core.funding.funding_at_bars` over the window's index.

        ``initial_equity`` (quote currency) matters only with ``rules``: steps and minimums are absolute, so
        a window is scored with the equity the bot starts with.
        """
        if not (math.isfinite(fee) and 0.0 <= fee < 0.1):
            raise ConfigError(f"fee must be a fraction of notional in [0, 0.1), e.g. 0.0004; got {fee}")
        if not (math.isfinite(slippage) and 0.0 <= slippage < 0.1):
            raise ConfigError(
                f"slippage must be a fraction of price in [0, 0.1), e.g. 0.0001; got {slippage}"
            )
        if not periods_per_year > 0.0:
            raise ConfigError(f"periods_per_year must be > 0 (365 for a 24/7 market); got {periods_per_year}")
        self.window = window
        self.fee = fee
        self.slippage = slippage
        self.periods_per_year = periods_per_year
        self.rules = rules
        if not (math.isfinite(initial_equity) and initial_equity > 0.0):
            raise ConfigError(f"initial_equity must be > 0 (quote currency); got {initial_equity}")
        self.initial_equity = initial_equity
        n = len(window)
        if funding.shape[0] not in (0, n) or not np.isfinite(funding).all():
            raise ConfigError(
                f"funding must hold one finite rate per bar of the window ({n}) or none; got {funding.shape[0]}"
            )
        self.funding = np.ascontiguousarray(funding, dtype=np.float64)
        self._side = np.zeros(n, dtype=np.int8)
        self._size = np.zeros(n)
        self._sl = np.zeros(n)
        self._tp = np.zeros(n)
        self._hold = np.zeros(n, dtype=np.int64)
        self._hold_value = 0
        self._held = np.zeros(n) if track_exposure else None

    def __call__(self, params: StrategyParams, out: np.ndarray | None = None) -> Evaluation:
        """Return the evaluation of ``params``; daily returns go into ``out`` (length ``len(day_ends)``) if given."""
        w = self.window
        fill_signals_nb(w.probs, w.vol, params.kernel_params(), self._side, self._size, self._sl, self._tp)
        if params.max_hold != self._hold_value:
            self._hold.fill(params.max_hold)
            self._hold_value = params.max_hold
        records, equity, _, status = simulate_nb(
            w.open,
            w.high,
            w.low,
            w.close,
            self._side,
            self._size,
            self._sl,
            self._tp,
            self._hold,
            self.fee,
            self.slippage,
            self.initial_equity,
            False,
            self.rules,
            self.funding,
            np.zeros(1),
        )
        if status == SimulationStatus.invalid_input:
            raise DataError(
                f"policy evaluation got an invalid bar or signal row (parameters {params}); the window's bars are "
                "checked when it is built, so this is a defect: report it with the bars"
            )
        returns = np.empty(w.day_ends.shape[0]) if out is None else out
        daily_returns_nb(equity, w.day_ends, returns)
        closed = records.shape[0] - int(
            records.shape[0] > 0 and records[-1]["exit_reason"] == ExitReason.open
        )
        exposure = None
        if self._held is not None:
            exposure = np.empty(w.day_ends.shape[0])
            exposure_nb(records, equity, self.initial_equity, w.day_ends, self._held, exposure)
        return Evaluation(
            trades=closed,
            daily_returns=returns,
            total_return=float(equity[-1] / self.initial_equity - 1.0),
            sharpe=sharpe_ratio(returns, self.periods_per_year),
            status=SimulationStatusT._fields[status],
            exposure=exposure,
        )
