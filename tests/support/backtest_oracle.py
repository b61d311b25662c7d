"""backtesting.py 0.6.6 replaying a scalpbot signal frame: the trade-for-trade oracle of the execution model.

How the replay maps scalpbot's rules onto backtesting.py (``exclusive_orders=True``, ``spread = slippage``,
``commission = fee``, fixed whole-unit quantities, cash large enough that no order is ever refused):

* ``Strategy.next`` on bar ``t`` reads ``side[t]``. backtesting.py never calls ``next`` on bar 0, so the replay
  requires ``side[0] == 0``.
* SL/TP are absolute prices computed from the fill (``open[t+1]`` worsened by the spread), with the same float
  expressions as the kernel. backtesting.py rejects an order whose SL/TP lies on the wrong side of the *current
  close* (not the fill), so the replay sets them on the order after placing it (``Order._replace``), which is what
  the order would hold had the check been made against the fill. ``inf`` (or a non-positive price) means no
  barrier, i.e. ``None``.
* A time stop is ``Trade.close()`` on the close of bar ``entry + max_hold - 1``; a reversal is a new order (the
  exclusive-orders broker closes the open trade first, at the same open); a same-direction signal is skipped
  unless the trade is being closed by its time stop.
* Exit reasons: ``time``/``signal`` as the replay ordered them; other closed trades are stops, ``sl`` when the exit
  is on the stop side of the entry, else ``tp``. Trades still open are read from the strategy and marked at the
  last close (PnL minus the entry commission), as scalpbot reports them.
* Derivatives sizing (``size_at_close``, the kernel's ``OrderRules.size_at_close``): ``size`` is a fraction of
  equity and the quantity is fixed at the decision, as a swap broker sizes a market order in contracts:
  ``size x Strategy.equity / close`` on the decision bar (backtesting.py's equity there is cash plus the open
  trade marked at that close, its entry commission paid), rounded down to whole units; a quantity of 0 opens
  nothing (an opposite signal then only closes). The order still fills at the next open.
* backtesting.py worsens only entries by ``spread``; scalpbot also worsens exits by ``slippage``. With slippage the
  replay applies it to backtesting.py's exit prices and recomputes fees and PnL from them (equity then not
  comparable); with zero slippage PnL, commissions and equity are backtesting.py's own numbers.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

os.environ.setdefault("TQDM_DISABLE", "1")

from backtesting import Backtest, Strategy


def load_sample_bars() -> pd.DataFrame:
    """Return the bundled real BTC/USDT 1m sample (60,480 bars) with a UTC DatetimeIndex."""
    path = importlib.resources.files("scalpbot") / "sample" / "BTC_USDT-1m.csv.gz"
    with importlib.resources.as_file(path) as file:
        return pd.read_csv(file, index_col="timestamp", parse_dates=True)


@dataclass
class _Plan:
    side: np.ndarray
    qty: np.ndarray
    sl: np.ndarray
    tp: np.ndarray
    max_hold: np.ndarray
    next_open: np.ndarray
    slippage: float
    size_at_close: bool = False
    exit_reasons: dict[int, str] = field(default_factory=dict)


def _barrier(price: float) -> float | None:
    return price if 0.0 < price < np.inf else None


class _Replay(Strategy):
    plan: _Plan | None = None

    def init(self) -> None:
        pass

    def next(self) -> None:
        plan = self.plan
        assert plan is not None
        i = len(self.data) - 1
        trade = self.trades[0] if self.trades else None
        time_due = trade is not None and trade.tag > 0 and i + 1 - trade.entry_bar >= trade.tag
        holding = trade is not None and not time_due
        if trade is not None and time_due:
            plan.exit_reasons[trade.entry_bar] = "time"
        signal = int(plan.side[i])
        wants_entry = signal != 0 and i + 1 < len(plan.side)
        if wants_entry and holding and (trade.size > 0) == (signal > 0):
            wants_entry = False  # same direction: no pyramiding
        if wants_entry and holding:
            plan.exit_reasons[trade.entry_bar] = "signal"
        qty = float(plan.qty[i])
        if wants_entry and plan.size_at_close:
            # a contracts order sized on the decision bar: equity marked at its close, whole units rounded down
            qty = float(math.floor(qty * self.equity / float(self.data.Close[-1]) * (1.0 + 1e-12)))
        if wants_entry and qty > 0:
            fill = plan.next_open[i] * (1.0 + signal * plan.slippage)
            sl_price = fill * (1.0 - signal * plan.sl[i])
            tp_price = fill * (1.0 + signal * plan.tp[i])
            place = self.buy if signal > 0 else self.sell
            order = place(size=qty, tag=int(plan.max_hold[i]))
            order._replace(sl_price=_barrier(sl_price), tp_price=_barrier(tp_price))
        elif trade is not None and (time_due or wants_entry):
            trade.close()


@dataclass(frozen=True)
class OracleRun:
    """backtesting.py's trades in scalpbot's trade-frame layout, and its equity at each close (bar 0 backfilled)."""

    trades: pd.DataFrame
    equity: np.ndarray


def run_backtesting_py(
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    *,
    fee: float,
    slippage: float,
    cash: float,
    size_at_close: bool = False,
) -> OracleRun:
    """Replay ``signals`` on ``bars`` in backtesting.py; see the module docstring.

    ``size`` is whole base units, or with ``size_at_close`` a fraction of equity sized on the decision bar's close.
    """
    side = signals["side"].to_numpy(dtype=np.int64)
    assert side[0] == 0, "backtesting.py never decides on bar 0: make side[0] == 0"
    qty = signals["size"].to_numpy(dtype=np.float64)
    if not size_at_close:
        assert np.all(qty[side != 0] == np.round(qty[side != 0])), "backtesting.py trades whole units only"
    max_hold = (
        signals["max_hold"].to_numpy(dtype=np.int64)
        if "max_hold" in signals
        else np.zeros(len(side), np.int64)
    )
    open_ = bars["open"].to_numpy(dtype=np.float64)
    plan = _Plan(
        side=side,
        qty=qty,
        sl=signals["sl"].to_numpy(dtype=np.float64),
        tp=signals["tp"].to_numpy(dtype=np.float64),
        max_hold=max_hold,
        next_open=np.append(open_[1:], np.nan),
        slippage=slippage,
        size_at_close=size_at_close,
    )
    data = bars[["open", "high", "low", "close"]].rename(columns=str.capitalize)
    run = Backtest(data, _Replay, cash=cash, commission=fee, spread=slippage, exclusive_orders=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Some trades remain open", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="backtesting")
        warnings.filterwarnings("ignore", message=".*dayofweek", module="backtesting")
        stats = run.run(plan=plan)
    closed = stats["_trades"]
    strategy = stats["_strategy"]

    direction = np.sign(closed["Size"].to_numpy(dtype=np.float64)).astype(np.int8)
    qty_closed = np.abs(closed["Size"].to_numpy(dtype=np.float64))
    entry_price = closed["EntryPrice"].to_numpy(dtype=np.float64)
    raw_exit = closed["ExitPrice"].to_numpy(dtype=np.float64)
    stop_side = direction * (raw_exit - entry_price) < 0.0
    reasons = [
        plan.exit_reasons.get(int(bar), "sl" if loss else "tp")
        for bar, loss in zip(closed["EntryBar"], stop_side, strict=True)
    ]
    if slippage == 0.0:
        exit_price, pnl, fees = raw_exit, closed["PnL"].to_numpy(), closed["Commission"].to_numpy()
    else:
        exit_price = raw_exit * (1.0 + (-direction) * slippage)
        fees = qty_closed * exit_price * fee + qty_closed * entry_price * fee
        pnl = direction * qty_closed * (exit_price - entry_price) - fees
    rows = pd.DataFrame(
        {
            "entry_time": closed["EntryTime"].to_numpy(),
            "exit_time": closed["ExitTime"].to_numpy(),
            "side": direction,
            "entry_price": entry_price,
            "exit_price": exit_price,
            "qty": qty_closed,
            "pnl": pnl,
            "fees": fees,
            "exit_reason": reasons,
        }
    )
    last_close = float(bars["close"].iloc[-1])
    open_rows = pd.DataFrame(
        {
            "entry_time": [bars.index[t.entry_bar] for t in strategy.trades],
            "exit_time": [bars.index[-1] for _ in strategy.trades],
            "side": [np.int8(np.sign(t.size)) for t in strategy.trades],
            "entry_price": [t.entry_price for t in strategy.trades],
            "exit_price": [last_close for _ in strategy.trades],
            "qty": [float(abs(t.size)) for t in strategy.trades],
            "pnl": [
                t.size * (last_close - t.entry_price) - abs(t.size) * t.entry_price * fee
                for t in strategy.trades
            ],
            "fees": [abs(t.size) * t.entry_price * fee for t in strategy.trades],
            "exit_reason": ["open" for _ in strategy.trades],
        }
    )
    trades = pd.concat([rows, open_rows], ignore_index=True) if len(open_rows) else rows
    return OracleRun(trades=trades, equity=stats["_equity_curve"]["Equity"].to_numpy(dtype=np.float64))
