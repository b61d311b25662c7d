"""Numba kernels of the one execution model: arrays and scalars in, record arrays and a status code out.

The model (ARCHITECTURE.md, "One execution model"), in bar positions ``t``:

1. ``side[t]`` is decided on the **close** of bar ``t``, from bars ``<= t`` only.
2. It fills at the **open** of bar ``t + 1``, worsened by ``slippage`` (a fraction of the price); ``fee`` (a
   fraction) is charged on the notional of each fill.
3. SL/TP are fractional distances from the entry fill price, fixed at entry (``np.inf`` disables a barrier),
   their prices rounded to the venue's price tick as the live broker places them.
4. Stops are checked on every bar from the entry bar on (after the entry fill on the entry bar). SL is
   checked first, so it wins when both barriers lie inside one bar. A bar opening beyond a barrier fills
   at that open. SL is checked first even on a bar that opens beyond the TP: if that bar also reaches the SL,
   the exit is the SL at its price (pessimistic, as backtesting.py).
5. A time stop (``max_hold`` bars, 0 = none) or an opposite signal closes the position at the open of the
   next bar, **before** that bar's stops are checked (so a pending time/signal exit wins over a gap at the same
   open); the new position, if any, opens at the same open. A same-direction signal is ignored while in a
   position that stays open. After a time exit the position is flat, so a signal of either side re-enters.
6. A position open at the end is marked at the last close and recorded with exit reason ``open``.
7. The venue's order rules (:class:`~scalpbot.core.backtest.enums.OrderRules`) apply to every entry: its
   quantity is rounded **down** to the amount step, and an entry under the minimum quantity or notional (at
   the fill price) is skipped, as a broker skips it (:func:`scalpbot.core.lots.order_qty_nb`). A ``size``
   fraction of equity buys ``size x cash / fill price``; where the venue's orders are sized at the decision
   (``rules.size_at_close``: derivatives, a market order of contracts) it is ``size x equity[t - 1] /
   close[t - 1]`` (cash plus any open position marked at the decision bar's close, as the live broker's snapshot
   reads it), the minimum notional checked at that close; either way it fills at the next open. Where the venue
   cannot short, a short signal opens nothing: it only closes a long (rule 5), as on a spot market. Where
   the venue buys by quote amount, a long entry spends ``size x cash`` truncated to ``cost_step`` and gets what
   that buys at the fill price, rounded down; where it takes a buy's commission in the base coin, the position
   is the quantity received net of it plus the dust earlier buys left, rounded down to the step; the entry's
   fee is what it cost less what it adds to the position, and the rest (under one step) is carried as dust to
   the next buy - exactly what a spot account holds and sells.
8. Funding (perpetual swaps): ``funding[t]`` is the rate of a funding event at the open time of bar ``t`` (0: no
   event). The position held **through** that instant pays ``signed qty * open[t] * rate`` (a long pays a
   positive rate, a short receives it), before any fill at that open: a position closed at that open pays, one
   opened there does not. ``open[t]`` stands for the venue's mark price. An empty ``funding`` charges nothing.
   Each payment is rounded as the venue books it (``rules.funding_step``, 0: not rounded).

These rules and their tie orders are backtesting.py 0.6.6's with ``exclusive_orders=True`` (its order queue
processes ``Trade.close()`` orders first, then SL, then TP, then new entries, then the new trade's SL/TP on the
same bar). Exits are also worsened by ``slippage`` (backtesting.py's ``spread`` only worsens entries).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from scalpbot.core.backtest.enums import ExitReason, InputProblem, OrderRules, SimulationStatus, trade_dt
from scalpbot.core.lots import floor_to_step_nb, order_qty_nb, round_half_even_nb, round_to_tick_nb
from scalpbot.core.metrics import drawdown_step_nb


@njit(cache=True)
def fill_price_nb(price: float, direction: int, slippage: float) -> float:
    """Return ``price`` worsened by ``slippage`` for a buy (``direction`` +1) or a sell (-1)."""
    return price * (1.0 + direction * slippage)


@njit(cache=True)
def stop_exit_nb(
    direction: int, open_: float, high: float, low: float, sl_price: float, tp_price: float
) -> tuple[float, int]:
    """Return ``(price before slippage, exit reason)`` if a bar hits a position's SL or TP, else ``(nan, -1)``.

    SL is checked first (it wins when both lie inside the bar); a bar opening beyond a barrier fills at its open.
    """
    if direction > 0:
        if low <= sl_price:
            return min(open_, sl_price), ExitReason.sl
        if high >= tp_price:
            return max(open_, tp_price), ExitReason.tp
    else:
        if high >= sl_price:
            return max(open_, sl_price), ExitReason.sl
        if low <= tp_price:
            return min(open_, tp_price), ExitReason.tp
    return np.nan, -1


@njit(cache=True, inline="always")
def write_trade_nb(
    trades: np.ndarray,
    k: int,
    entry_idx: int,
    exit_idx: int,
    direction: int,
    entry_price: float,
    exit_price: float,
    qty: float,
    pnl: float,
    fees: float,
    exit_reason: int,
) -> None:
    """Write one trade record at position ``k``."""
    rec = trades[k]
    rec["entry_idx"] = entry_idx
    rec["exit_idx"] = exit_idx
    rec["side"] = direction
    rec["entry_price"] = entry_price
    rec["exit_price"] = exit_price
    rec["qty"] = qty
    rec["pnl"] = pnl
    rec["fees"] = fees
    rec["exit_reason"] = exit_reason
    rec["funding"] = 0.0


@njit(cache=True, inline="always")
def book_funding_nb(trades: np.ndarray, k: int, funding: float) -> None:
    """Record the funding paid while trade ``k`` was open: its PnL is after it (cash paid it as it fell due)."""
    rec = trades[k]
    rec["funding"] = funding
    rec["pnl"] = rec["pnl"] - funding


@njit(cache=True, inline="always")
def close_trade_nb(
    trades: np.ndarray,
    k: int,
    entry_idx: int,
    exit_idx: int,
    direction: int,
    entry_price: float,
    exit_price: float,
    qty: float,
    entry_fee: float,
    fee: float,
    exit_reason: int,
    funding: float,
) -> float:
    """Record the trade closed at ``exit_price`` (after slippage) at ``k``; return the cash it releases.

    Released cash = gross PnL minus the exit fee (the entry fee left cash at entry and ``funding``, what the
    position paid while open, as it fell due); the record's PnL is after all three.
    """
    exit_fee = qty * exit_price * fee
    fees = exit_fee + entry_fee
    gross = direction * qty * (exit_price - entry_price)
    write_trade_nb(
        trades,
        k,
        entry_idx,
        exit_idx,
        direction,
        entry_price,
        exit_price,
        qty,
        gross - fees,
        fees,
        exit_reason,
    )
    book_funding_nb(trades, k, funding)
    return gross - exit_fee


@njit(cache=True, inline="always")
def bar_ok_nb(open_: float, high: float, low: float, close: float) -> bool:
    """Return whether one bar is valid: finite, positive prices with ``low <= min(open, close)`` and
    ``high >= max(open, close)`` (NaN fails every comparison)."""
    return bool(
        (high >= open_) & (high >= close) & (low <= open_) & (low <= close) & (low > 0.0) & (high < np.inf)
    )


@njit(cache=True, inline="always")
def signal_ok_nb(side: int, size: float, sl: float, tp: float, max_hold: int) -> bool:
    """Return whether one signal row is valid: side -1, 0 or +1, and where it is not 0 a finite ``size >= 0``,
    ``sl > 0``, ``tp > 0`` (``inf``: no barrier) and ``max_hold >= 0``."""
    if side == 0:
        return True
    return bool(
        (side >= -1)
        & (side <= 1)
        & (size >= 0.0)
        & (size < np.inf)
        & (sl > 0.0)
        & (tp > 0.0)
        & (max_hold >= 0)
    )


@njit(cache=True)
def simulate_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    side: np.ndarray,
    size: np.ndarray,
    sl: np.ndarray,
    tp: np.ndarray,
    max_hold: np.ndarray,
    fee: float,
    slippage: float,
    initial_equity: float,
    size_is_qty: bool,
    rules: OrderRules,
    funding: np.ndarray,
    dust_carry: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Simulate one instrument bar by bar; return ``(trade records (trade_dt), equity per close, max drawdown,
    status)``.

    ``dust_carry`` (one float, base units) is the dust the account holds from earlier buys whose commission was
    taken in base (rule 7): read at the start, overwritten with the dust left at the end (a paper account carries
    it from one simulated segment to the next; a backtest starts from ``np.zeros(1)``).

    ``side``/``size``/``sl``/``tp``/``max_hold`` are decided on each bar's close and act on the next open.
    ``size`` is a fraction of equity committed as notional at the fill (at the decision bar's close when
    ``rules.size_at_close``, rule 7), or a base-asset quantity when ``size_is_qty``, rounded down to
    ``rules.amount_step``; ``size`` 0, a quantity under the venue's minimums or a
    short where ``rules.shorts`` is false opens nothing (an opposite signal then only closes). ``funding``: the
    funding rate falling due at each bar's open (rule 8; length ``n``, or empty for none). ``equity[t]`` is cash
    plus the open position marked at ``close[t]`` (entry fee and funding paid, exit fee not yet). Entries are skipped while
    equity is <= 0 (status ``equity_depleted``). Each bar and signal row is checked in the same pass
    (``bar_ok_nb``, ``signal_ok_nb``): the first invalid one stops the run with status ``invalid_input`` and
    empty outputs (``find_bad_bar_nb`` / ``find_bad_signal_nb`` then name it). Times are not the kernel's: the
    caller checks that they increase.
    """
    n = close.shape[0]
    n_signals = 0
    for t in range(side.shape[0]):
        n_signals += side[t] != 0
    trades = np.empty(n_signals, dtype=trade_dt)  # every trade starts from one signal
    equity = np.empty(n, dtype=np.float64)
    if (
        open_.shape[0] != n
        or high.shape[0] != n
        or low.shape[0] != n
        or side.shape[0] != n
        or size.shape[0] != n
        or sl.shape[0] != n
        or tp.shape[0] != n
        or max_hold.shape[0] != n
    ):
        return trades[:0], equity[:0], 0.0, SimulationStatus.length_mismatch
    status = SimulationStatus.ok
    if n == 0:
        return trades[:0], equity, 0.0, status
    last = n - 1
    if not (
        bar_ok_nb(open_[0], high[0], low[0], close[0])
        and signal_ok_nb(side[last], size[last], sl[last], tp[last], max_hold[last])
    ):
        return trades[:0], equity[:0], 0.0, SimulationStatus.invalid_input

    cash = initial_equity
    n_trades = 0
    direction = 0
    qty = 0.0
    signed_qty = 0.0
    entry_idx = 0
    entry_price = 0.0
    entry_fee = 0.0
    dust = dust_carry[0]  # base units below one step left by buys whose commission was taken in base
    sl_price = 0.0
    tp_price = 0.0
    hold = 0
    charges_funding = funding.shape[0] == n
    trade_funding = 0.0
    equity[0] = cash
    # the running peak of equity, the lowest value since it and the largest fall (as max_drawdown_nb)
    peak = cash
    trough = cash
    worst = 0.0
    for t in range(1, n):
        signal = side[t - 1]
        if not (
            bar_ok_nb(open_[t], high[t], low[t], close[t])
            and signal_ok_nb(signal, size[t - 1], sl[t - 1], tp[t - 1], max_hold[t - 1])
        ):
            return trades[:0], equity[:0], 0.0, SimulationStatus.invalid_input
        if direction != 0 and charges_funding and funding[t] != 0.0:
            paid = round_half_even_nb(signed_qty * open_[t] * funding[t], rules.funding_step)
            cash -= paid
            trade_funding += paid
        if direction != 0 or signal != 0:
            bar_open = open_[t]
            if direction != 0:
                time_due = hold > 0 and t - entry_idx >= hold
                if time_due or signal == -direction:
                    exit_price = fill_price_nb(bar_open, -direction, slippage)
                    reason = ExitReason.time if time_due else ExitReason.signal
                    cash += close_trade_nb(
                        trades,
                        n_trades,
                        entry_idx,
                        t,
                        direction,
                        entry_price,
                        exit_price,
                        qty,
                        entry_fee,
                        fee,
                        reason,
                        trade_funding,
                    )
                    n_trades += 1
                    direction = 0
            if direction == 0 and signal != 0 and size[t - 1] > 0.0 and (signal > 0 or rules.shorts):
                if cash <= 0.0:
                    status = SimulationStatus.equity_depleted
                else:
                    wanted = 1 if signal > 0 else -1
                    price = fill_price_nb(bar_open, wanted, slippage)
                    sized_at = price  # the price the quantity's minimum notional is checked at
                    if size_is_qty:
                        raw_qty = size[t - 1]
                    elif rules.size_at_close:
                        # sized at the decision as a contracts order: equity and price of the decision bar's close
                        sized_at = close[t - 1]
                        raw_qty = size[t - 1] * equity[t - 1] / sized_at
                    elif wanted > 0 and rules.cost_step > 0.0:
                        raw_qty = floor_to_step_nb(size[t - 1] * cash, rules.cost_step) / price
                    else:
                        raw_qty = size[t - 1] * cash / price
                    qty = order_qty_nb(
                        raw_qty, sized_at, rules.amount_step, rules.min_qty, rules.min_notional
                    )
                    held, entry_fee, rest = qty, qty * price * fee, dust
                    if wanted > 0 and rules.buy_fee_in_base:
                        # the account receives qty less the commission; with the dust earlier buys left it
                        # holds whole steps (the position) and less than one step of dust
                        received = qty * (1.0 - fee) + dust
                        held = floor_to_step_nb(received, rules.amount_step)
                        rest = received - held
                        entry_fee = (qty - held) * price
                    if held > 0.0:
                        dust = rest
                        direction = wanted
                        entry_price = price
                        qty = held
                        signed_qty = direction * qty
                        cash -= entry_fee
                        entry_idx = t
                        trade_funding = 0.0
                        sl_price = round_to_tick_nb(
                            entry_price * (1.0 - direction * sl[t - 1]), rules.price_tick
                        )
                        tp_price = round_to_tick_nb(
                            entry_price * (1.0 + direction * tp[t - 1]), rules.price_tick
                        )
                        hold = max_hold[t - 1]
            if direction != 0:
                raw_price, reason = stop_exit_nb(direction, bar_open, high[t], low[t], sl_price, tp_price)
                if reason >= 0:
                    exit_price = fill_price_nb(raw_price, -direction, slippage)
                    cash += close_trade_nb(
                        trades,
                        n_trades,
                        entry_idx,
                        t,
                        direction,
                        entry_price,
                        exit_price,
                        qty,
                        entry_fee,
                        fee,
                        reason,
                        trade_funding,
                    )
                    n_trades += 1
                    direction = 0
        if direction != 0:
            value = cash + (close[t] * signed_qty - signed_qty * entry_price)
            if value <= 0.0:
                status = SimulationStatus.equity_depleted
        else:
            value = cash
        equity[t] = value
        peak, trough, worst = drawdown_step_nb(value, peak, trough, worst)

    if direction != 0:
        mark = close[last]
        pnl = signed_qty * (mark - entry_price) - entry_fee
        write_trade_nb(
            trades,
            n_trades,
            entry_idx,
            last,
            direction,
            entry_price,
            mark,
            qty,
            pnl,
            entry_fee,
            ExitReason.open,
        )
        book_funding_nb(trades, n_trades, trade_funding)
        n_trades += 1
    dust_carry[0] = dust
    drawdown = max(worst, 1.0 - trough / peak)
    if 2 * n_trades < trades.shape[0]:  # many ignored signals: do not keep the unused room alive
        return trades[:n_trades].copy(), equity, drawdown, status
    return trades[:n_trades], equity, drawdown, status


@njit(cache=True)
def unpack_trades_nb(trades: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return trade records as contiguous columns in one pass over them.

    ``(entry_idx, exit_idx, side as int8, values, exit_reason as int8)`` where ``values`` is a (5, n) float64
    block whose rows are ``TRADE_VALUE_FIELDS``: entry_price, exit_price, qty, pnl, fees.
    """
    n = trades.shape[0]
    entry_idx = np.empty(n, dtype=np.int64)
    exit_idx = np.empty(n, dtype=np.int64)
    side = np.empty(n, dtype=np.int8)
    values = np.empty((5, n), dtype=np.float64)
    exit_reason = np.empty(n, dtype=np.int8)
    for k in range(n):
        rec = trades[k]
        entry_idx[k] = rec["entry_idx"]
        exit_idx[k] = rec["exit_idx"]
        side[k] = rec["side"]
        values[0, k] = rec["entry_price"]
        values[1, k] = rec["exit_price"]
        values[2, k] = rec["qty"]
        values[3, k] = rec["pnl"]
        values[4, k] = rec["fees"]
        exit_reason[k] = rec["exit_reason"]
    return entry_idx, exit_idx, side, values, exit_reason


@njit(cache=True)
def times_increase_nb(time_ns: np.ndarray) -> bool:
    """Return whether bar times (int64 ticks) strictly increase."""
    increasing = True
    for t in range(1, time_ns.shape[0]):
        increasing &= time_ns[t] > time_ns[t - 1]
    return increasing


@njit(cache=True)
def find_bad_bar_nb(
    time_ns: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> tuple[int, int]:
    """Return ``(position, InputProblem code)`` of the first invalid bar, or ``(-1, InputProblem.none)``.

    Valid: strictly increasing times; finite, positive prices; ``low <= min(open, close)`` and
    ``high >= max(open, close)``. A branch-free scan over all bars comes first; rows are examined one by one
    only when it finds a problem.
    """
    n = close.shape[0]
    valid = True
    for t in range(n):
        h = high[t]
        lo = low[t]
        valid &= (
            (h >= open_[t])
            & (h >= close[t])
            & (lo <= open_[t])
            & (lo <= close[t])
            & (lo > 0.0)
            & (h < np.inf)
        )
    for t in range(1, n):
        valid &= time_ns[t] > time_ns[t - 1]
    if valid:
        return -1, InputProblem.none
    for t in range(n):
        if t > 0 and time_ns[t] <= time_ns[t - 1]:
            return t, InputProblem.time_not_increasing
        o = open_[t]
        h = high[t]
        lo = low[t]
        c = close[t]
        if not (np.isfinite(o) and np.isfinite(h) and np.isfinite(lo) and np.isfinite(c)):
            return t, InputProblem.price_not_finite
        if o <= 0.0 or h <= 0.0 or lo <= 0.0 or c <= 0.0:
            return t, InputProblem.price_not_positive
        if h < o or h < c:
            return t, InputProblem.high_below_open_or_close
        if lo > o or lo > c:
            return t, InputProblem.low_above_open_or_close
    return -1, InputProblem.none


@njit(cache=True)
def find_bad_signal_nb(
    side: np.ndarray, size: np.ndarray, sl: np.ndarray, tp: np.ndarray, max_hold: np.ndarray
) -> tuple[int, int]:
    """Return ``(position, InputProblem code)`` of the first invalid signal row, or ``(-1, InputProblem.none)``.

    Only rows with ``side != 0`` need valid values: finite ``size >= 0``, ``sl > 0``, ``tp > 0`` (``inf``
    allowed: no barrier), ``max_hold >= 0``. A branch-free scan comes first, as in ``find_bad_bar_nb``.
    """
    n = side.shape[0]
    valid = True
    for t in range(n):
        s = side[t]
        valid &= (s == 0) | (
            (s >= -1)
            & (s <= 1)
            & (size[t] >= 0.0)
            & (size[t] < np.inf)
            & (sl[t] > 0.0)
            & (tp[t] > 0.0)
            & (max_hold[t] >= 0)
        )
    if valid:
        return -1, InputProblem.none
    for t in range(n):
        s = side[t]
        if s == 0:
            continue
        if s < -1 or s > 1:
            return t, InputProblem.side_not_in_range
        if not (size[t] >= 0.0 and np.isfinite(size[t])):
            return t, InputProblem.size_invalid
        if not sl[t] > 0.0:
            return t, InputProblem.sl_not_positive
        if not tp[t] > 0.0:
            return t, InputProblem.tp_not_positive
        if max_hold[t] < 0:
            return t, InputProblem.max_hold_negative
    return -1, InputProblem.none
