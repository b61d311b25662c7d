"""Backtest a signal frame on a bar frame with the one execution model (the pandas face of the kernel).

Fill rules are those of :mod:`scalpbot.core.backtest.nb`: decide on bar ``t``'s close, fill at bar ``t + 1``'s
open worsened by ``slippage``, SL/TP as fractions of the fill price checked from the entry bar on (SL first, gaps
fill at the open), time and signal exits at the next open, an open position marked at the last close.

Bad input raises before anything is simulated: :class:`~scalpbot.errors.DataError` for a malformed ``bars`` or
``signals`` frame (both are data), :class:`~scalpbot.errors.ConfigError` for a bad keyword option.
"""

from __future__ import annotations

import difflib
import math
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from scalpbot.core.backtest.enums import (
    NO_ORDER_RULES,
    TRADE_VALUE_FIELDS,
    ExitReason,
    ExitReasonT,
    InputProblem,
    OrderRules,
    SimulationStatus,
    SimulationStatusT,
)
from scalpbot.core.backtest.nb import (
    find_bad_bar_nb,
    find_bad_signal_nb,
    simulate_nb,
    times_increase_nb,
    unpack_trades_nb,
)
from scalpbot.core.funding import funding_at_bars
from scalpbot.core.metrics import Metrics, TradeArrays, metrics_of_arrays
from scalpbot.errors import ConfigError, DataError

__all__ = ["BacktestResult", "backtest"]

PRICE_COLUMNS = ("open", "high", "low", "close")
BAR_COLUMNS = (*PRICE_COLUMNS, "volume")
REQUIRED_SIGNAL_COLUMNS = ("side", "size", "sl", "tp")
SIGNAL_COLUMNS = (*REQUIRED_SIGNAL_COLUMNS, "max_hold")
EXIT_REASONS = ExitReasonT._fields
SIZE_UNITS = ("equity", "qty")

_BAR_PROBLEMS = {
    InputProblem.time_not_increasing: "the index is not strictly increasing (unsorted or duplicate times); "
    "use bars.sort_index() and drop duplicates with bars[~bars.index.duplicated()]",
    InputProblem.price_not_finite: "a price is NaN or infinite; drop the bar or re-fetch it",
    InputProblem.price_not_positive: "a price is <= 0; drop the bar or re-fetch it",
    InputProblem.high_below_open_or_close: "high is below open or close; the bar is corrupt, re-fetch it",
    InputProblem.low_above_open_or_close: "low is above open or close; the bar is corrupt, re-fetch it",
}
_SIGNAL_PROBLEMS = {
    InputProblem.side_not_in_range: "side must be -1 (short), 0 (nothing) or +1 (long)",
    InputProblem.size_invalid: "size must be finite and >= 0 where side != 0",
    InputProblem.sl_not_positive: "sl must be > 0 where side != 0 (a fraction of the fill price, e.g. 0.003; "
    "np.inf for no stop loss)",
    InputProblem.tp_not_positive: "tp must be > 0 where side != 0 (a fraction of the fill price, e.g. 0.006; "
    "np.inf for no take profit)",
    InputProblem.max_hold_negative: "max_hold must be a whole number of bars >= 0 where side != 0 (0 = no time stop)",
}


class BacktestResult:
    """Outcome of :func:`backtest`.

    ``trades``: one row per trade with ``entry_time``/``exit_time`` (bar open times, UTC: entries fill at that
    bar's open; time/signal exits at that bar's open; stops inside that bar; ``open`` trades at its close),
    ``side`` (+1/-1), ``entry_price``/``exit_price`` (after slippage), ``qty`` (base units), ``pnl``, ``fees``
    and ``funding`` (quote currency; ``pnl`` after fees and funding) and ``exit_reason`` in sl, tp, time,
    signal, open; built from the kernel's columns on first access. ``equity``: account value at each bar close.
    ``metrics``: :func:`scalpbot.core.metrics.compute_metrics` of both. ``status``: ``ok``, or
    ``equity_depleted`` when equity reached <= 0 and entries were skipped.
    """

    __slots__ = ("_columns", "_index", "_trades", "equity", "metrics", "status")

    def __init__(
        self,
        columns: _TradeColumns,
        index: pd.DatetimeIndex,
        equity: pd.Series,
        metrics: Metrics,
        status: str,
    ) -> None:
        self._columns = columns
        self._index = index
        self._trades: pd.DataFrame | None = None
        self.equity = equity
        self.metrics = metrics
        self.status = status

    @property
    def trades(self) -> pd.DataFrame:
        """The trades frame (see the class docstring); the same frame on every access."""
        if self._trades is None:
            self._trades = self._columns.frame(self._index)
        return self._trades

    def __repr__(self) -> str:
        return f"BacktestResult({self.metrics.trades} closed trades, status={self.status!r})"


class _TradeColumns(NamedTuple):
    """The kernel's trade records as columns (see :func:`~scalpbot.core.backtest.nb.unpack_trades_nb`)."""

    entry_bars: np.ndarray
    exit_bars: np.ndarray
    side: np.ndarray
    values: np.ndarray
    exit_reason: np.ndarray
    funding: np.ndarray

    def frame(self, index: pd.DatetimeIndex) -> pd.DataFrame:
        """Return the trades frame, its times taken from the bars' ``index`` (no copy of the value columns)."""
        columns: dict[str, object] = {
            "entry_time": index[self.entry_bars],
            "exit_time": index[self.exit_bars],
            "side": self.side,
        }
        columns.update(zip(TRADE_VALUE_FIELDS, self.values, strict=True))
        columns["exit_reason"] = pd.Categorical.from_codes(self.exit_reason, dtype=_EXIT_REASON_DTYPE)
        columns["funding"] = self.funding
        return pd.DataFrame(columns, copy=False)

    def arrays(self) -> TradeArrays:
        """Return the columns the metrics read."""
        entry_price, _, qty, pnl, fees = self.values
        closed = self.exit_reason != ExitReason.open
        return TradeArrays(qty, entry_price, pnl, fees, self.funding, closed, self.entry_bars, self.exit_bars)


_EXIT_REASON_DTYPE = pd.CategoricalDtype(pd.Index(EXIT_REASONS))


_Prices = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""open, high, low, close (float64, one per bar)."""
_Signals = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""side (int8), size, sl, tp (float64), max_hold (int64), one per bar."""


def _did_you_mean(name: str, choices: tuple[str, ...] | list[str]) -> str:
    hint = difflib.get_close_matches(name, [str(c) for c in choices], n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def _check_options(fee: float, slippage: float, initial_equity: float, size_in: str) -> None:
    if not (math.isfinite(fee) and 0.0 <= fee < 0.1):
        raise ConfigError(
            f"fee must be a fraction of notional in [0, 0.1), e.g. 0.0004 for 0.04 %; got {fee}"
        )
    if not (math.isfinite(slippage) and 0.0 <= slippage < 0.1):
        raise ConfigError(f"slippage must be a fraction of price in [0, 0.1), e.g. 0.0001; got {slippage}")
    if not (math.isfinite(initial_equity) and initial_equity > 0.0):
        raise ConfigError(f"initial_equity must be > 0 (quote currency); got {initial_equity}")
    if size_in not in SIZE_UNITS:
        raise ConfigError(
            f"size_in '{size_in}' is not supported{_did_you_mean(size_in, SIZE_UNITS)}; use 'equity' "
            "(fraction of equity as notional) or 'qty' (base-asset quantity)"
        )


def _checked_rules(rules: OrderRules) -> OrderRules:
    if not isinstance(rules, OrderRules):
        raise ConfigError(
            f"rules must be an OrderRules (e.g. venue.order_rules()); got {type(rules).__name__}"
        )
    for name in ("amount_step", "min_qty", "min_notional", "cost_step", "price_tick", "funding_step"):
        value = getattr(rules, name)
        if not (math.isfinite(value) and value >= 0.0):
            raise ConfigError(f"rules.{name} must be a finite number >= 0 (0 = no rule); got {value}")
    return OrderRules(
        float(rules.amount_step),
        float(rules.min_qty),
        float(rules.min_notional),
        bool(rules.shorts),
        float(rules.cost_step),
        bool(rules.buy_fee_in_base),
        float(rules.price_tick),
        bool(rules.size_at_close),
        float(rules.funding_step),
    )


def _bar_arrays(bars: pd.DataFrame) -> _Prices:
    if not isinstance(bars, pd.DataFrame):
        raise DataError(
            f"bars must be a pandas DataFrame with columns {', '.join(PRICE_COLUMNS)}; got {type(bars)}"
        )
    for name in PRICE_COLUMNS:
        if name not in bars.columns:
            others = [str(c) for c in bars.columns if c not in BAR_COLUMNS]
            raise DataError(
                f"bars is missing column '{name}'{_did_you_mean(name, others)}; "
                f"expected {', '.join(PRICE_COLUMNS)} (volume optional)"
            )
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"bars must have a DatetimeIndex of bar open times in UTC; got {type(index).__name__}: "
            "use bars.set_index(pd.to_datetime(bars['timestamp'], utc=True))"
        )
    if index.tz is None or str(index.tz) != "UTC":
        raise DataError(
            f"bars index must be UTC; got tz={index.tz}: use bars.tz_localize('UTC') or tz_convert"
        )
    if len(bars) == 0:
        raise DataError("bars is empty: pass at least one bar")
    try:
        open_, high, low, close = (bars[name].to_numpy(dtype=np.float64) for name in PRICE_COLUMNS)
        prices = (open_, high, low, close)
    except (TypeError, ValueError) as e:
        raise DataError(f"bars prices must be numeric: {e}") from e
    if not times_increase_nb(index.asi8):
        _raise_bad_bar(index, prices)
    return prices


def _raise_bad_bar(index: pd.DatetimeIndex, prices: _Prices) -> None:
    """Raise the :class:`DataError` naming the first invalid bar, if there is one."""
    position, problem = find_bad_bar_nb(index.asi8, *prices)
    if problem != InputProblem.none:
        raise DataError(f"bars row {position} ({index[position]}): {_BAR_PROBLEMS[problem]}")


def _raise_bad_input(index: pd.DatetimeIndex, prices: _Prices, signals: _Signals) -> None:
    """Raise the :class:`DataError` naming the first invalid bar, else the first invalid signal row (the kernel
    found one of them: it checks both in its pass)."""
    _raise_bad_bar(index, prices)
    position, problem = find_bad_signal_nb(*signals)
    if problem != InputProblem.none:
        raise DataError(f"signals row {position} ({index[position]}): {_SIGNAL_PROBLEMS[problem]}")
    raise AssertionError("the kernel reported invalid input that neither scan finds")


def _float_column(column: pd.Series) -> np.ndarray:
    if column.dtype == np.float64:
        return column.to_numpy()  # no copy
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _signal_arrays(signals: pd.DataFrame, index: pd.DatetimeIndex) -> _Signals:
    if not isinstance(signals, pd.DataFrame):
        raise DataError(f"signals must be a pandas DataFrame with columns {', '.join(SIGNAL_COLUMNS)}")
    unknown = [str(c) for c in signals.columns if c not in SIGNAL_COLUMNS]
    if unknown:
        raise DataError(
            f"signals has unknown column '{unknown[0]}'{_did_you_mean(unknown[0], SIGNAL_COLUMNS)}; "
            f"allowed: {', '.join(SIGNAL_COLUMNS)} (max_hold optional)"
        )
    missing = [c for c in REQUIRED_SIGNAL_COLUMNS if c not in signals.columns]
    if missing:
        raise DataError(
            f"signals is missing column '{missing[0]}'; required: {', '.join(REQUIRED_SIGNAL_COLUMNS)}"
        )
    if not signals.index.equals(index):
        if len(signals) != len(index):
            where = f"signals has {len(signals)} rows, bars {len(index)}"
        else:
            first = int(np.argmax(signals.index != index))
            where = f"first difference at row {first}: {signals.index[first]} vs {index[first]}"
        raise DataError(
            f"signals index does not match bars index ({where}); build signals from the same bars "
            "or align them with signals.reindex(bars.index)"
        )
    try:
        side = signals["side"].to_numpy()
        if side.dtype != np.int8:
            raw = signals["side"].to_numpy(dtype=np.float64, na_value=np.nan)
            valid = (raw == -1.0) | (raw == 0.0) | (raw == 1.0)
            if not valid.all():
                first = int(np.argmin(valid))
                raise DataError(
                    f"signals row {first} ({index[first]}): side must be -1, 0 or +1; got {raw[first]}"
                )
            side = raw.astype(np.int8)
        size, sl, tp = (_float_column(signals[c]) for c in ("size", "sl", "tp"))
        if "max_hold" not in signals.columns:
            max_hold = np.zeros(len(index), dtype=np.int64)
        else:
            max_hold = signals["max_hold"].to_numpy()
            if max_hold.dtype.kind not in "iu":
                raw = signals["max_hold"].to_numpy(dtype=np.float64, na_value=np.nan)
                whole = np.isfinite(raw) & (raw == np.floor(raw))
                bad = ~whole & (side != 0)
                if bad.any():
                    first = int(np.argmax(bad))
                    raise DataError(
                        f"signals row {first} ({index[first]}): {_SIGNAL_PROBLEMS[InputProblem.max_hold_negative]}"
                        f"; got {raw[first]}"
                    )
                max_hold = np.where(whole, raw, 0.0)
            max_hold = max_hold.astype(np.int64, copy=False)
    except (TypeError, ValueError) as e:
        raise DataError(f"signals columns must be numeric: {e}") from e
    return side, size, sl, tp, max_hold


def backtest(
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    *,
    fee: float = 0.0004,
    slippage: float = 0.0,
    initial_equity: float = 10_000.0,
    size_in: Literal["equity", "qty"] = "equity",
    rules: OrderRules = NO_ORDER_RULES,
    funding: pd.Series | None = None,
) -> BacktestResult:
    """Simulate ``signals`` on ``bars`` and return trades, equity at each close and metrics.

    ``bars``: UTC DatetimeIndex of bar open times; columns open, high, low, close (volume and others ignored).
    ``signals``: same index; ``side`` (-1, 0, +1) decided on that bar's close and filled at the next bar's open;
    ``size`` (``size_in="equity"``: fraction of equity at the fill committed as notional, 1.0 = all of it; where
    ``rules.size_at_close`` (derivatives), the quantity is that fraction of the equity at the decision bar's close
    divided by that close, as the live broker sizes contracts; ``size_in="qty"``: base-asset quantity); ``sl``/``tp`` (fractional distances from the fill price, > 0,
    ``np.inf`` for none); optional ``max_hold`` (bars, 0 = no time stop). Values on rows with side 0 are ignored.
    ``fee``: fraction of notional per fill; ``slippage``: fraction by which every fill price is worsened.
    ``rules``: the venue's amount step, minimums and whether it can short (default: none of them, shorts
    allowed); :meth:`scalpbot.core.venue.Venue.order_rules` gives a venue's, ``Venue.taker_fee`` its fee.
    ``funding``: a perpetual swap's funding rates by funding time (see :func:`scalpbot.core.funding.funding_at_bars`); each is charged
    at that bar's open on the position held through it, and each trade's ``funding`` column says what it paid.
    """
    _check_options(fee, slippage, initial_equity, size_in)
    prices = _bar_arrays(bars)
    index = pd.DatetimeIndex(bars.index)
    signal_arrays = _signal_arrays(signals, index)
    records, equity_values, drawdown, status = simulate_nb(
        *prices,
        *signal_arrays,
        fee,
        slippage,
        initial_equity,
        size_in == "qty",
        _checked_rules(rules),
        funding_at_bars(funding, index),
        np.zeros(1),
    )
    if status == SimulationStatus.invalid_input:
        _raise_bad_input(index, prices, signal_arrays)
    columns = _TradeColumns(*unpack_trades_nb(records), records["funding"].copy())
    return BacktestResult(
        columns,
        index,
        pd.Series(equity_values, index=index, name="equity", copy=False),
        metrics_of_arrays(
            columns.arrays(), equity_values, np.asarray(index.asi8), index.unit, drawdown=drawdown
        ),
        SimulationStatusT._fields[status],
    )
