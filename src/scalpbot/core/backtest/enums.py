"""Record dtypes and named constants shared by the backtest kernel and its callers.

Declared once here, vectorbt style: kernels in :mod:`scalpbot.core.backtest.nb` import them as compile-time
constants, pandas-facing code imports them to decode records.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ExitReasonT(NamedTuple):
    """Why a trade ended; ``open`` marks a trade still open at the end of the data."""

    sl: int
    tp: int
    time: int
    signal: int
    open: int


ExitReason = ExitReasonT(*range(len(ExitReasonT._fields)))
"""Exit reason codes as stored in ``trade_dt["exit_reason"]``; names in ``ExitReasonT._fields``."""


class SimulationStatusT(NamedTuple):
    """Outcome of one kernel run; the kernel returns one of these codes instead of raising."""

    ok: int
    length_mismatch: int
    equity_depleted: int
    invalid_input: int


SimulationStatus = SimulationStatusT(*range(len(SimulationStatusT._fields)))
"""``ok``: ran to the end; ``length_mismatch``: input arrays differ in length, nothing simulated;
``equity_depleted``: equity reached <= 0 at some close, later entries were skipped; ``invalid_input``: a bar or
a signal row is invalid (``find_bad_bar_nb`` / ``find_bad_signal_nb`` say which and why), nothing returned."""


class InputProblemT(NamedTuple):
    """What an input scan found wrong at the first bad row (``none`` when all rows are valid)."""

    none: int
    time_not_increasing: int
    price_not_finite: int
    price_not_positive: int
    high_below_open_or_close: int
    low_above_open_or_close: int
    side_not_in_range: int
    size_invalid: int
    sl_not_positive: int
    tp_not_positive: int
    max_hold_negative: int


InputProblem = InputProblemT(*range(len(InputProblemT._fields)))


class OrderRules(NamedTuple):
    """A venue's order rules as the kernel takes them (see :mod:`scalpbot.core.lots`); 0 means no rule.

    ``amount_step``: quantities are rounded down to whole multiples of it (base units); ``min_qty``: smallest
    quantity (base units); ``min_notional``: smallest ``qty * fill price`` (quote currency); ``shorts``: whether
    a short position may be opened (on a spot market it may not: a sell signal only closes a long).
    ``cost_step``: when > 0, a long entry is a market buy of a quote amount (Binance ``quoteOrderQty``, OKX
    ``tgtCcy=quote_ccy``): ``size x cash`` truncated down to this step (quote currency, the price tick ccxt
    truncates it to) buys ``amount / fill price`` rounded down to ``amount_step``. ``buy_fee_in_base``: a long
    entry's commission is taken from the base coin it receives (spot without a fee token): the position holds
    ``qty x (1 - fee)`` rounded down to ``amount_step``, and the sub-step rest is charged to the entry's fee.
    ``price_tick``: stop-loss and take-profit prices are rounded to the nearest tick (quote currency), as the
    live broker writes them on the venue. ``size_at_close``: an entry's quantity is fixed at the decision, as a
    derivatives broker sizes a market order in contracts before it knows the fill: ``size x equity`` at the
    decision bar's close (cash plus the open position marked there) divided by that close, rounded down to
    ``amount_step``, the minimum notional checked at that close; the order still fills at the next open
    (otherwise the quantity is sized at the fill price). ``funding_step``: each funding payment is rounded half
    to even to this step (quote currency), as the venue books it (Binance USD-M writes 8 decimals); 0: not
    rounded.
    """

    amount_step: float
    min_qty: float
    min_notional: float
    shorts: bool
    cost_step: float = 0.0
    buy_fee_in_base: bool = False
    price_tick: float = 0.0
    size_at_close: bool = False
    funding_step: float = 0.0


NO_ORDER_RULES = OrderRules(0.0, 0.0, 0.0, True)
"""Any quantity, no minimum, shorts allowed: the frictionless venue of library calls and oracle tests."""

trade_dt = np.dtype(
    [
        ("entry_idx", np.int64),
        ("exit_idx", np.int64),
        ("side", np.int64),
        ("entry_price", np.float64),
        ("exit_price", np.float64),
        ("qty", np.float64),
        ("pnl", np.float64),
        ("fees", np.float64),
        ("exit_reason", np.int64),
        ("funding", np.float64),
    ],
    align=True,
)
"""One trade: bar positions of entry/exit, side (+1 long, -1 short), fill prices after slippage,
base-asset quantity (> 0), PnL after fees and funding, fees paid (both sides; entry side only while open), exit
reason, funding paid while open (quote currency; negative: received).

``entry_idx`` is the bar whose **open** filled the entry. ``exit_idx`` is the bar whose open filled a
time/signal exit, or inside which a stop filled, or the last bar for a trade still open (marked at its close)."""

TRADE_VALUE_FIELDS = ("entry_price", "exit_price", "qty", "pnl", "fees")
"""The float fields of ``trade_dt`` in the row order of ``unpack_trades_nb``'s value block."""


TRADE_COLUMNS = (
    "entry_time",
    "exit_time",
    "side",
    "entry_price",
    "exit_price",
    "qty",
    "pnl",
    "fees",
    "exit_reason",
    "funding",
)
"""The columns of every trades frame: a backtest's, a ledger's rebuilt trades, the CLI's JSON trades."""


NO_FUNDING = np.zeros(0, dtype=np.float64)
"""The funding series of a market without funding (spot), or of a simulation that ignores it: none charged.
Empty, so it holds nothing to change."""
