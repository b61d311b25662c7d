"""Performance metrics of a trade list and an equity curve: pure functions, frames and arrays in, numbers out.

The same functions score a backtest and, later, a week of live trading from the ledger, so they take plain
inputs, not a ``BacktestResult``:

* ``trades``: a frame with ``entry_time``, ``exit_time`` (UTC), ``qty`` (base units, > 0), ``entry_price``,
  ``pnl`` (quote currency, after fees), ``fees`` and optionally ``exit_reason``; rows whose ``exit_reason`` is
  ``"open"`` are positions still open, marked to market.
* ``equity``: account value in quote currency at each bar **close**, on the bar index (UTC open times); its first
  value is the capital at the start.

Zero-trade and degenerate cases never return NaN or infinity. Totals, shares and counts (``total_return``,
``max_drawdown``, ``exposure``, ``fees_paid``, ``funding_paid``, ``trades``) are always numbers (0.0 / 0 when nothing traded).
Ratios and averages (``win_rate``, ``risk_reward``, ``profit_factor``, ``expectancy``, ``avg_hold_bars``,
``return_on_capital``, ``sharpe``, ``sortino``) are ``None`` when undefined: no trades, no losing trade for a
ratio over losses, fewer than two daily returns or zero dispersion. Every value is a plain ``float``, ``int``
or ``None``, so :meth:`Metrics.to_dict` is JSON-serializable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numba import njit

PERIODS_PER_YEAR_24_7 = 365.0
"""Daily periods in a year for a market that trades every day (crypto)."""

MetricValue = float | int | None


@dataclass(frozen=True, slots=True, eq=False)
class Metrics(Mapping[str, MetricValue]):
    """The metrics of a trade list and its equity curve (units and ``None`` cases: see the module docstring).

    Read by attribute (``m.sharpe``) or, for tables and JSON, as a read-only mapping of metric name to value in
    the order below (``m["sharpe"]``, ``dict(m)``); equal to any mapping with the same names and values.
    """

    total_return: float
    win_rate: float | None
    risk_reward: float | None
    max_drawdown: float
    return_on_capital: float | None
    sharpe: float | None
    sortino: float | None
    profit_factor: float | None
    expectancy: float | None
    trades: int
    exposure: float
    avg_hold_bars: float | None
    fees_paid: float
    funding_paid: float

    def __getitem__(self, name: str) -> MetricValue:
        if name not in _METRIC_NAMES:
            raise KeyError(name)
        value: MetricValue = getattr(self, name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_METRIC_NAMES)

    def __len__(self) -> int:
        return len(_METRIC_NAMES)

    def to_dict(self) -> dict[str, MetricValue]:
        """Return the metrics as a JSON-native dict."""
        return {name: getattr(self, name) for name in _METRIC_NAMES}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        """Return the metrics of a :meth:`to_dict` dict; ``ValueError`` for a missing or unknown name.

        ``funding_paid`` may be missing (metrics written before funding was charged, e.g. in an older release's
        manifest): it reads as 0.0, which is what a spot market pays.
        """
        data = {"funding_paid": 0.0, **data}
        missing = [name for name in _METRIC_NAMES if name not in data]
        unknown = sorted(set(data) - set(_METRIC_NAMES))
        if missing or unknown:
            raise ValueError(f"metrics: missing {missing}, unknown {unknown}")
        values: list[Any] = [
            None if data[name] is None else (int if name == "trades" else float)(data[name])
            for name in _METRIC_NAMES
        ]
        return cls(*values)


_METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Metrics))


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def closed_mask(trades: pd.DataFrame) -> np.ndarray:
    """Return which trades are closed, i.e. whose ``exit_reason`` is not ``open`` (all, without that column)."""
    if "exit_reason" not in trades.columns:
        return np.ones(len(trades), dtype=bool)
    return np.asarray(trades["exit_reason"] != "open", dtype=bool)


def total_return(equity: pd.Series) -> float:
    """Return the last equity over the first, minus one (0.05 = +5 %); 0.0 for an empty curve."""
    return _total_return_of(equity.to_numpy(dtype=np.float64))


def _total_return_of(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        change = float(values[-1] / values[0] - 1.0)
    return change if math.isfinite(change) else 0.0


@njit(cache=True, inline="always")
def drawdown_step_nb(value: float, peak: float, trough: float, worst: float) -> tuple[float, float, float]:
    """Return ``(peak, trough, worst)`` after one more equity value: the running peak, the lowest value since
    it, and the largest fall from a peak of the stretches a higher peak closed (a fraction). Only comparisons:
    the lowest value of a stretch is divided by its peak once, when a higher peak closes it. The fall of the
    stretch still open is ``1 - trough / peak`` (see :func:`max_drawdown_nb`)."""
    if value > peak:
        return value, value, max(worst, 1.0 - trough / peak)
    if value < trough:
        return peak, value, worst
    return peak, trough, worst


@njit(cache=True)
def max_drawdown_nb(values: np.ndarray) -> float:
    """Return max over t of ``1 - values[t] / max(values[:t + 1])`` in one pass (NaN-free, non-empty input)."""
    peak = float(values[0])
    trough = peak
    worst = 0.0
    for value in values:
        peak, trough, worst = drawdown_step_nb(value, peak, trough, worst)
    return float(max(worst, 1.0 - trough / peak))


def max_drawdown(equity: pd.Series) -> float:
    """Return the largest fall from a running peak of equity at bar closes, as a positive fraction (0.2 = 20 %)."""
    return _max_drawdown_of(equity.to_numpy(dtype=np.float64))


def _max_drawdown_of(values: np.ndarray) -> float:
    return _finite_drawdown(float(max_drawdown_nb(values))) if values.size else 0.0


def _finite_drawdown(worst: float) -> float:
    return worst if math.isfinite(worst) else 1.0


def daily_returns(equity: pd.Series) -> np.ndarray:
    """Return simple returns of the last equity of each UTC calendar day with bars.

    Each day's last close is compared with the previous such day's; the first day with the first equity value
    (the starting capital). Days without bars are skipped, not filled.
    """
    times = pd.DatetimeIndex(equity.index)
    return _daily_returns_of(equity.to_numpy(dtype=np.float64), np.asarray(times.asi8), times.unit)


def _daily_returns_of(values: np.ndarray, ticks: np.ndarray, unit: str) -> np.ndarray:
    """Return :func:`daily_returns` of equity ``values`` at bar times ``ticks`` (int64 since the epoch in
    ``unit``)."""
    if values.size == 0:
        return values
    per_day = _TICKS_PER_DAY[unit]
    midnights = np.arange(ticks[0] // per_day + 1, ticks[-1] // per_day + 1, dtype=np.int64) * per_day
    last_of_day = np.append(np.searchsorted(ticks, midnights, side="left") - 1, values.size - 1)
    last_of_day = last_of_day[np.append(True, np.diff(last_of_day) != 0)]  # a day without bars repeats one
    day_close = values[last_of_day]
    previous = np.insert(day_close[:-1], 0, values[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        returns: np.ndarray = day_close / previous - 1.0
    return returns


def sharpe_ratio(returns: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR_24_7) -> float | None:
    """Return the annualized Sharpe ratio (risk-free 0): mean / sample std (ddof 1) * sqrt(periods_per_year)."""
    if returns.size < 2:
        return None
    std = float(np.std(returns, ddof=1))
    if not std > 0.0:
        return None
    return _finite_or_none(float(np.mean(returns)) / std * math.sqrt(periods_per_year))


def sortino_ratio(returns: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR_24_7) -> float | None:
    """Return the annualized Sortino ratio: mean / downside deviation * sqrt(periods_per_year).

    Downside deviation = sqrt(mean(min(r, 0)^2)) over all periods (target return 0).
    """
    if returns.size < 2:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if not downside > 0.0:
        return None
    return _finite_or_none(float(np.mean(returns)) / downside * math.sqrt(periods_per_year))


class PnlSummary(NamedTuple):
    """Counts and sums of a list of trade PnLs (quote currency, after fees); ``gross_loss`` is positive."""

    trades: int
    wins: int
    losses: int
    gross_profit: float
    gross_loss: float
    net: float


@njit(cache=True)
def _pnl_sums_nb(pnl: np.ndarray) -> tuple[int, int, float, float, float]:
    wins = 0
    losses = 0
    gross_profit = 0.0
    gross_loss = 0.0
    net = 0.0
    for value in pnl:
        net += value
        if value > 0.0:
            wins += 1
            gross_profit += value
        elif value < 0.0:
            losses += 1
            gross_loss -= value
    return wins, losses, gross_profit, gross_loss, net


def summarize_pnl(pnl: np.ndarray) -> PnlSummary:
    """Return the counts and sums of ``pnl`` (one value per trade) that the trade statistics use."""
    values = np.ascontiguousarray(pnl, dtype=np.float64)
    wins, losses, gross_profit, gross_loss, net = _pnl_sums_nb(values)
    return PnlSummary(
        int(values.size), int(wins), int(losses), float(gross_profit), float(gross_loss), float(net)
    )


def win_rate(summary: PnlSummary) -> float | None:
    """Return the share of trades with PnL > 0 (after fees); ``None`` without trades."""
    return summary.wins / summary.trades if summary.trades else None


def risk_reward(summary: PnlSummary) -> float | None:
    """Return the average winning PnL over the average losing PnL (as a positive number).

    ``None`` without a winning or without a losing trade.
    """
    if summary.wins == 0 or summary.losses == 0:
        return None
    return _finite_or_none((summary.gross_profit / summary.wins) / (summary.gross_loss / summary.losses))


def profit_factor(summary: PnlSummary) -> float | None:
    """Return gross profit over gross loss (quote currency, after fees); ``None`` without a losing trade."""
    if not summary.gross_loss > 0.0:
        return None
    return _finite_or_none(summary.gross_profit / summary.gross_loss)


def expectancy(summary: PnlSummary) -> float | None:
    """Return the mean PnL per trade in quote currency (after fees); ``None`` without trades."""
    return _finite_or_none(summary.net / summary.trades) if summary.trades else None


_TICKS_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def _epoch_ticks(index: pd.Index) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Return a DatetimeIndex's int64 ticks since the epoch (UTC, in its own unit) and the index itself."""
    times = pd.DatetimeIndex(index)
    return np.asarray(times.asi8, dtype=np.int64), times


def trade_bars(trades: pd.DataFrame, equity: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return the bar positions (in ``equity``'s index) of each trade's entry and exit.

    A time inside a bar maps to that bar (the last bar opened at or before it).
    """
    ticks, times = _epoch_ticks(equity.index)
    entry, exit_ = (
        np.searchsorted(
            ticks, np.asarray(pd.DatetimeIndex(trades[column]).as_unit(times.unit).asi8), side="right"
        )
        - 1
        for column in ("entry_time", "exit_time")
    )
    return entry.astype(np.int64), exit_.astype(np.int64)


def exposure(entry_bars: np.ndarray, exit_bars: np.ndarray, n_bars: int) -> float:
    """Return the share of bars in which a position was held at some moment, entry and exit bars included.

    Open trades count up to their exit bar (the last bar). Overlapping trades are counted once.
    """
    if n_bars == 0 or entry_bars.size == 0:
        return 0.0
    if np.all(entry_bars[1:] >= entry_bars[:-1]):
        starts, ends = entry_bars, exit_bars
    else:
        order = np.argsort(entry_bars, kind="stable")
        starts, ends = entry_bars[order], exit_bars[order]
    covered_until = np.maximum.accumulate(ends)
    previous_end = np.insert(covered_until[:-1], 0, -1)
    new_bars = np.maximum(0, ends - np.maximum(starts - 1, previous_end))
    return float(np.sum(new_bars)) / n_bars


def avg_hold_bars(entry_bars: np.ndarray, exit_bars: np.ndarray) -> float | None:
    """Return the mean of exit bar minus entry bar (a stop on the entry bar holds 0; a time stop ``max_hold``)."""
    if entry_bars.size == 0:
        return None
    return float(np.mean(exit_bars - entry_bars))


def return_on_capital(trades: pd.DataFrame) -> float | None:
    """Return net PnL over peak capital committed: sum of all trades' PnL (after fees, open ones marked to
    market) over the largest entry notional (``qty * entry_price``) of any trade; ``None`` without trades."""
    return _return_on_capital_of(*_columns(trades, "qty", "entry_price", "pnl"))


def _return_on_capital_of(qty: np.ndarray, entry_price: np.ndarray, pnl: np.ndarray) -> float | None:
    if qty.size == 0:
        return None
    peak = float(np.max(np.abs(qty * entry_price)))
    if not peak > 0.0:
        return None
    return _finite_or_none(float(np.sum(pnl)) / peak)


def _columns(trades: pd.DataFrame, *names: str) -> tuple[np.ndarray, ...]:
    return tuple(trades[name].to_numpy(dtype=np.float64) for name in names)


class TradeArrays(NamedTuple):
    """A trade list as columns (one value per trade, in entry order; units as in the module docstring).

    ``closed``: which trades are closed (not ``open``); ``entry_bars``/``exit_bars``: each trade's entry and exit
    bar position in the equity curve's index.
    """

    qty: np.ndarray
    entry_price: np.ndarray
    pnl: np.ndarray
    fees: np.ndarray
    funding: np.ndarray
    closed: np.ndarray
    entry_bars: np.ndarray
    exit_bars: np.ndarray


def compute_metrics(
    trades: pd.DataFrame,
    equity: pd.Series,
    *,
    periods_per_year: float = PERIODS_PER_YEAR_24_7,
    bar_positions: tuple[np.ndarray, np.ndarray] | None = None,
) -> Metrics:
    """Return every metric (see the module docstring for units and ``None``).

    Trade statistics (``trades``, ``win_rate``, ``risk_reward``, ``profit_factor``, ``expectancy``,
    ``avg_hold_bars``) use closed trades only; ``exposure``, ``fees_paid``, ``funding_paid`` and
    ``return_on_capital`` include open ones; ``total_return``, ``max_drawdown``, ``sharpe`` and ``sortino`` come
    from the equity curve, the last two from daily returns annualized with ``periods_per_year`` (365 for a 24/7
    market, 252 for equities). ``bar_positions``: each trade's entry and exit bar position in ``equity``'s
    index when the caller already has them; by default they are found from the trade times (:func:`trade_bars`).
    """
    entry_bars, exit_bars = trade_bars(trades, equity) if bar_positions is None else bar_positions
    qty, entry_price, pnl, fees = _columns(trades, "qty", "entry_price", "pnl", "fees")
    funding = (
        trades["funding"].to_numpy(dtype=np.float64) if "funding" in trades.columns else np.zeros(len(trades))
    )
    columns = TradeArrays(qty, entry_price, pnl, fees, funding, closed_mask(trades), entry_bars, exit_bars)
    times = pd.DatetimeIndex(equity.index)
    return metrics_of_arrays(
        columns, equity.to_numpy(dtype=np.float64), np.asarray(times.asi8), times.unit, periods_per_year
    )


def metrics_of_arrays(
    trades: TradeArrays,
    equity: np.ndarray,
    ticks: np.ndarray,
    unit: str,
    periods_per_year: float = PERIODS_PER_YEAR_24_7,
    drawdown: float | None = None,
) -> Metrics:
    """Return :func:`compute_metrics` of a trade list given as columns and an equity curve given as values at
    bar closes with the bars' open times (``ticks``: int64 since the epoch, UTC, in ``unit``).

    ``drawdown``: ``max_drawdown_nb(equity)`` when the caller already has it (the backtest kernel tracks it in
    the pass that writes the curve)."""
    closed = trades.closed
    pnl = summarize_pnl(trades.pnl[closed])
    returns = _daily_returns_of(equity, ticks, unit)
    return Metrics(
        total_return=_total_return_of(equity),
        win_rate=win_rate(pnl),
        risk_reward=risk_reward(pnl),
        max_drawdown=_max_drawdown_of(equity) if drawdown is None else _finite_drawdown(drawdown),
        return_on_capital=_return_on_capital_of(trades.qty, trades.entry_price, trades.pnl),
        sharpe=sharpe_ratio(returns, periods_per_year),
        sortino=sortino_ratio(returns, periods_per_year),
        profit_factor=profit_factor(pnl),
        expectancy=expectancy(pnl),
        trades=pnl.trades,
        exposure=exposure(trades.entry_bars, trades.exit_bars, equity.size),
        avg_hold_bars=avg_hold_bars(trades.entry_bars[closed], trades.exit_bars[closed]),
        fees_paid=float(np.sum(trades.fees)),
        funding_paid=float(np.sum(trades.funding)),
    )
