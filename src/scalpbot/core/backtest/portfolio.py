"""The portfolio backtest: several symbols of one bot, bar by bar, through one portfolio risk budget.

Each symbol (a :class:`Leg`) runs the one kernel (:func:`scalpbot.core.backtest.nb.simulate_nb`) on its own
bars with its own account (``initial_equity`` each, as each symbol's paper account of a replay), its venue's
order rules and, for a perpetual swap, its funding (shorts, entries sized at the decision close, funding paid
on the positions held through each settlement: the kernel's rules 7 and 8). What the budget denies is decided
exactly as the execute cycle decides it in a replay of the basket:

* bars in time order; within a bar, the legs in the given order (``bot.symbols``); a leg without a bar at that
  time does nothing (its replay cycle finds the bar processed);
* for each leg's bar ``t``: the kernel's state at the close of ``t`` (equity, the position, the exits filled
  since the leg's previous bar), the symbol's risk state updated with them (:func:`core.risk.update_risk_state`),
  the budget settled (:func:`core.portfolio_risk.settle`; the first settle with an exit, or the first
  reservation, starts the book as :class:`scalpbot.state.risk_budget.RiskBudget` does);
* while the symbol's or the bot's kill switch is engaged: an open position is closed at the next open, no entry;
* otherwise the signal decided on ``t``: the same direction as the open position passes unchecked, unless the
  position's time stop closes it at the next open (the signal then re-enters there: an entry); any other is
  checked by :func:`core.risk.check_entry`, then reserved in the budget (``size x equity`` quote, long or short
  alike: a short holds its gross notional); a denial drops it (a denied reversal still closes the position: its
  size becomes 0). A reversal replaces its symbol's reservation, so it is checked without the position it
  closes (its symbol's notional is counted once, and it adds no position).

The kernel's state at ``t`` depends only on the signals before ``t``, so a leg is re-simulated only after a
decision changed one of its signals. Entries the venue would refuse do not happen here (the paper broker
refuses none). The exits booked carry each trade's PnL after fees and funding, as the paper broker's exit fills
do. Units: prices, notionals and funding in the quote (settle) currency the legs share; times are bar open
times, UTC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scalpbot.core.backtest.enums import NO_FUNDING, OrderRules, SimulationStatus
from scalpbot.core.backtest.frame import BacktestResult, backtest
from scalpbot.core.backtest.nb import simulate_nb
from scalpbot.core.execution import Position, Signal, client_order_id
from scalpbot.core.lots import round_to_tick_nb
from scalpbot.core.orders import time_stop_due
from scalpbot.core.portfolio_risk import (
    Denied,
    PortfolioBook,
    PortfolioLimits,
    Reservation,
    check_reservation,
    new_book,
    reserve,
    settle,
)
from scalpbot.core.risk import (
    MarketRules,
    RiskLimits,
    RiskState,
    check_entry,
    initial_risk_state,
    update_risk_state,
)
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import ConfigError, DataError

__all__ = ["Leg", "PortfolioBacktest", "PortfolioDenialRecord", "portfolio_backtest"]

_REASONS = ("sl", "tp", "time", "signal", "open")
_SIGNAL_COLUMNS = ("side", "size", "sl", "tp", "max_hold")


@dataclass(frozen=True)
class Leg:
    """One symbol of the basket: its bars (open, high, low, close; UTC open times), the signals its release
    decided on them (side, size, sl, tp, max_hold on the same index), its venue's fee and order rules, its
    risk limits and market rules (as the execute cycle checks an entry), and its funding: the rate falling due
    at each bar's open (fraction of position value, 0 where none; :func:`scalpbot.core.funding.funding_at_bars`),
    one per bar, or empty (:data:`~scalpbot.core.backtest.enums.NO_FUNDING`) for a market without funding."""

    symbol: str
    bars: pd.DataFrame
    signals: pd.DataFrame
    fee: float
    rules: OrderRules
    limits: RiskLimits
    market_rules: MarketRules
    funding: np.ndarray = field(default_factory=lambda: NO_FUNDING, repr=False)


@dataclass(frozen=True, slots=True)
class PortfolioDenialRecord:
    """An entry the budget denied: its decision bar, symbol, side and the denial codes."""

    bar: pd.Timestamp
    symbol: str
    side: int
    codes: tuple[str, ...]


@dataclass(frozen=True)
class PortfolioBacktest:
    """What the basket did: each leg's backtest of the signals it kept, the budget's denials, the entries
    its risk checks denied (``(bar, symbol, code)``), and the book at the end (``None``: never started)."""

    results: dict[str, BacktestResult]
    denials: tuple[PortfolioDenialRecord, ...]
    risk_denials: tuple[tuple[pd.Timestamp, str, str], ...]
    book: PortfolioBook | None
    kept: dict[str, pd.DataFrame] = field(repr=False, default_factory=dict)


class _LegRun:
    """One leg's arrays, the signals kept so far, and its kernel run (redone after a signal changed)."""

    def __init__(self, leg: Leg, slippage: float, initial_equity: float) -> None:
        bars, signals = leg.bars, leg.signals
        if not bars.index.equals(signals.index):
            raise ConfigError(f"the signals of {leg.symbol} must be on its bars' index")
        self.leg = leg
        self.index = pd.DatetimeIndex(bars.index)
        self.open, self.high, self.low, self.close = (
            np.ascontiguousarray(bars[k].to_numpy(dtype=np.float64)) for k in ("open", "high", "low", "close")
        )
        self.side = signals["side"].to_numpy(dtype=np.int8).copy()
        self.size = signals["size"].to_numpy(dtype=np.float64).copy()
        self.sl = signals["sl"].to_numpy(dtype=np.float64).copy()
        self.tp = signals["tp"].to_numpy(dtype=np.float64).copy()
        self.max_hold = signals["max_hold"].to_numpy(dtype=np.int64).copy()
        self.funding = _checked_funding(leg, len(bars))
        self.position_of = {t: k for k, t in enumerate(self.index)}
        self.slippage = slippage
        self.initial_equity = initial_equity
        self.risk: RiskState | None = None
        self._run: tuple[np.ndarray, np.ndarray] | None = None

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the kernel's trade records and equity for the signals kept so far."""
        if self._run is None:
            records, equity, _, status = simulate_nb(
                self.open,
                self.high,
                self.low,
                self.close,
                self.side,
                self.size,
                self.sl,
                self.tp,
                self.max_hold,
                self.leg.fee,
                self.slippage,
                self.initial_equity,
                False,
                self.leg.rules,
                self.funding,
                np.zeros(1),
            )
            if status == SimulationStatus.invalid_input:
                raise DataError(
                    f"a bar or signal of {self.leg.symbol} is invalid (NaN or inconsistent prices)"
                )
            self._run = (records, equity)
        return self._run

    def funding_series(self) -> pd.Series | None:
        """Return the leg's funding as rates by funding time (the settlements only), ``None`` without any."""
        due = np.flatnonzero(self.funding)
        if due.size == 0:
            return None
        return pd.Series(self.funding[due], index=self.index[due], name="funding_rate")

    def keep(self, k: int, side: int, size: float, *, flatten: bool = False) -> None:
        """Change the signal decided on bar ``k`` (dropped: side 0; close only: size 0; ``flatten``: the kill
        switch's close, without stops, as the paper broker queues it)."""
        if flatten:
            self.sl[k], self.tp[k], self.max_hold[k] = math.inf, math.inf, 0
        if (self.side[k], self.size[k]) != (side, size) or flatten:
            self.side[k], self.size[k] = side, size
            self._run = None

    def entry_id(self, bot: str, entry_idx: int) -> str:
        return client_order_id(bot, self.leg.symbol, self.index[entry_idx - 1], "entry")

    def state(self, bot: str, k: int) -> tuple[float, Position | None, list[tuple[str, float]]]:
        """Return the equity at the close of bar ``k``, the position open then, and the exits filled on ``k``
        as ``(fill key, realized pnl)`` (the keys the paper broker's fills have)."""
        records, equity = self.run()
        position, exits = None, []
        for rec in records:
            entry_idx, exit_idx, reason = (
                int(rec["entry_idx"]),
                int(rec["exit_idx"]),
                _REASONS[int(rec["exit_reason"])],
            )
            if entry_idx > k:
                break
            decided = self.index[entry_idx - 1]
            if reason == "open" or exit_idx > k:
                side, price = int(rec["side"]), float(rec["entry_price"])
                position = Position(
                    side,
                    float(rec["qty"]),
                    price,
                    self.index[entry_idx],
                    round_to_tick_nb(price * (1 - side * self.sl[entry_idx - 1]), self.leg.rules.price_tick),
                    round_to_tick_nb(price * (1 + side * self.tp[entry_idx - 1]), self.leg.rules.price_tick),
                    int(self.max_hold[entry_idx - 1]),
                    self.entry_id(bot, entry_idx),
                )
            elif exit_idx == k:
                exit_id = client_order_id(bot, self.leg.symbol, decided, reason)
                exits.append((f"{exit_id}:{reason}", float(rec["pnl"])))
        return float(equity[k]), position, exits


def _checked_funding(leg: Leg, bars: int) -> np.ndarray:
    """Return ``leg``'s funding as a float64 array; raise ``ConfigError`` unless it is empty or one finite rate
    per bar."""
    rates = np.ascontiguousarray(leg.funding, dtype=np.float64)
    if rates.ndim != 1 or rates.shape[0] not in (0, bars):
        raise ConfigError(
            f"the funding of {leg.symbol} must hold one rate per bar ({bars}), or none for a market without "
            f"funding; got {rates.shape}: build it with core.funding.funding_at_bars(rates, bars.index)"
        )
    if not np.isfinite(rates).all():
        first = int(np.argmin(np.isfinite(rates)))
        raise DataError(f"the funding rate of {leg.symbol} at {leg.bars.index[first]} is not a finite number")
    return rates


def portfolio_backtest(
    legs: Sequence[Leg],
    limits: PortfolioLimits,
    *,
    bot: str,
    slippage: float = 0.0,
    initial_equity: float = 10_000.0,
) -> PortfolioBacktest:
    """Backtest ``legs`` together through the budget ``limits`` (see the module docstring).

    ``bot``: the bot's name, which the order client ids (and so the budget's keys) are made from.
    """
    if not legs:
        raise ConfigError("a portfolio backtest needs at least one symbol")
    if len({leg.symbol for leg in legs}) != len(legs):
        raise ConfigError("each symbol may appear once in a portfolio backtest")
    runs = [_LegRun(leg, slippage, initial_equity) for leg in legs]
    times = pd.DatetimeIndex(sorted(set().union(*(set(run.index) for run in runs))))
    book: PortfolioBook | None = None
    denials: list[PortfolioDenialRecord] = []
    risk_denials: list[tuple[pd.Timestamp, str, str]] = []
    for bar in times:
        for run in runs:
            k = run.position_of.get(bar)
            if k is None:
                continue
            book = _cycle(run, k, bar, book, limits, bot, denials, risk_denials)
    results = {}
    kept = {}
    for run in runs:
        frame = pd.DataFrame(
            {"side": run.side, "size": run.size, "sl": run.sl, "tp": run.tp, "max_hold": run.max_hold},
            index=run.index,
        )
        kept[run.leg.symbol] = frame
        results[run.leg.symbol] = backtest(
            run.leg.bars,
            frame,
            fee=run.leg.fee,
            slippage=slippage,
            initial_equity=initial_equity,
            rules=run.leg.rules,
            funding=run.funding_series(),
        )
    return PortfolioBacktest(results, tuple(denials), tuple(risk_denials), book, kept)


def _cycle(
    run: _LegRun,
    k: int,
    bar: pd.Timestamp,
    book: PortfolioBook | None,
    limits: PortfolioLimits,
    bot: str,
    denials: list[PortfolioDenialRecord],
    risk_denials: list[tuple[pd.Timestamp, str, str]],
) -> PortfolioBook | None:
    """One leg's execute cycle for its bar ``k`` (time ``bar``); return the book after it."""
    symbol = run.leg.symbol
    equity, position, exits = run.state(bot, k)
    risk = run.risk if run.risk is not None else initial_risk_state(run.initial_equity, bar)
    run.risk = risk = update_risk_state(risk, equity, bar, [pnl for _, pnl in exits], run.leg.limits)
    held = None
    if position is not None:
        held = Reservation(
            position.side, position.qty * position.entry_price, position.entry_client_id, position.entry_time
        )
    if book is None and (exits or held is not None):
        book = new_book(equity - math.fsum(pnl for _, pnl in exits), bar)
    if book is not None:
        book = settle(book, symbol, exits, bar, limits, held=held)
    side = int(run.side[k])
    if risk.halted or (book is not None and book.halted):
        if position is not None:
            run.keep(k, -position.side, 0.0, flatten=True)  # closed at the next open
        else:
            run.keep(k, 0, 0.0)
        return book
    if side == 0:
        return book
    reentry = False
    if position is not None and position.side == side:
        bar_seconds = int(timeframe_delta(run.leg.limits.timeframe).total_seconds())
        if not time_stop_due(position, bar, bar_seconds):
            return book
        reentry = True  # the time stop closes the position at the next open, where this signal re-enters
    signal = Signal(bar, side, float(run.size[k]), float(run.sl[k]), float(run.tp[k]), int(run.max_hold[k]))
    price = float(run.close[k])
    open_before = None if reentry else position
    denial = check_entry(signal, equity, open_before, risk, run.leg.limits, run.leg.market_rules, price)
    if denial is None:
        client_id = client_order_id(bot, symbol, bar, "entry")
        base = new_book(equity, bar) if book is None else book
        verdict = check_reservation(base, symbol, signal.size * equity, limits)
        if not isinstance(verdict, Denied):
            return reserve(base, symbol, Reservation(side, signal.size * equity, client_id, bar), limits)
        denials.append(PortfolioDenialRecord(bar, symbol, side, tuple(r.code for r in verdict.reasons)))
    else:
        risk_denials.append((bar, symbol, denial.code))
    run.keep(k, side if position is not None and not reentry else 0, 0.0)
    return book
