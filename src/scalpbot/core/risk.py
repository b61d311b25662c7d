"""Risk checks before every order (pure): position limits, the kill switch, cool-downs and venue order rules.

Units: equity and notional in quote currency, quantities in base units, ``max_daily_loss``/``max_drawdown`` and
``max_position_fraction`` fractions (0.03 = 3 %). Times are bar **open** times (UTC), as in
:class:`~scalpbot.core.execution.Signal`: the execute job calls :func:`update_risk_state` after bar ``t`` closed
with ``now_bar_time = t`` and then :func:`check_entry` for the signal decided on bar ``t``.

* **Kill switch**: :func:`update_risk_state` sets ``halted`` once the equity has fallen ``max_daily_loss`` below
  the UTC day's starting equity, or ``max_drawdown`` below the peak equity. It stays set across bars and days
  until :func:`resume`; while it is set every entry is denied and :func:`needs_flatten` asks to close the position.
* **Cool-down**: after ``cooldown_after_losses`` consecutive losing trades (PnL after fees < 0), entries decided
  on the next ``cooldown_bars`` bars (the current one included) are denied.
* **Checks return a reason**: :func:`check_entry` returns a :class:`Denial` or ``None`` and never raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

import pandas as pd

from scalpbot.core.execution import Position, Signal
from scalpbot.core.lots import floor_to_step_nb, order_qty_nb
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.errors import ConfigError, DataError

__all__ = [
    "Denial",
    "DenialCode",
    "Margin",
    "MarketRules",
    "RiskLimits",
    "RiskState",
    "check_entry",
    "halt",
    "initial_risk_state",
    "needs_flatten",
    "resume",
    "update_risk_state",
]

DenialCode = Literal[
    "halted",
    "cooldown",
    "max_open_positions",
    "max_position_notional",
    "below_min_qty",
    "below_min_notional",
    "liquidation_guard",
    "invalid_input",
]

_LIMIT_TOLERANCE = 1e-9
"""Slack on fraction comparisons, so that a loss of exactly the limit engages it despite float rounding."""


@dataclass(frozen=True, slots=True)
class Denial:
    """Why an entry is refused: a stable ``code`` for the ledger and a message for the operator."""

    code: DenialCode
    message: str

    def to_dict(self) -> dict[str, str]:
        """Return ``{"code": ..., "message": ...}`` for a ledger payload."""
        return {"code": self.code, "message": self.message}


def _check_number(
    name: str, value: float, hint: str, *, high: float = math.inf, open_low: bool = True
) -> float:
    """Return ``value`` as a float in (0, high] (``open_low``) or [0, high]; else raise ``ConfigError``."""
    valid = not isinstance(value, bool) and isinstance(value, int | float) and not math.isnan(value)
    if not (valid and (value > 0 if open_low else value >= 0) and value <= high):
        raise ConfigError(f"{name} must be {hint}; got {value!r}")
    return float(value)


def _check_count(name: str, value: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be {hint}; got {value!r}")
    return value


def _steps(value: float, step: float) -> Decimal:
    """Return ``value / step`` exactly in decimal, from the shortest repr of each (what the venue means)."""
    return Decimal(repr(value)) / Decimal(repr(step))


@dataclass(frozen=True, slots=True)
class MarketRules:
    """The venue's order rules for one symbol (from its market info); 0 means no rule.

    ``amount_step``: quantities are whole multiples of it (base units); ``min_qty``: smallest quantity (base);
    ``min_notional``: smallest ``qty * price`` (quote); ``price_tick``: prices are whole multiples of it (quote).
    """

    amount_step: float = 0.0
    min_qty: float = 0.0
    min_notional: float = 0.0
    price_tick: float = 0.0

    def __post_init__(self) -> None:
        for name, hint in (
            ("amount_step", "the quantity increment in base units, >= 0, e.g. 0.001 (0 = any)"),
            ("min_qty", "the smallest order quantity in base units, >= 0 (0 = none)"),
            ("min_notional", "the smallest order value in quote currency, >= 0, e.g. 5.0 (0 = none)"),
            ("price_tick", "the price increment in quote currency, >= 0, e.g. 0.01 (0 = any)"),
        ):
            value = _check_number(name, getattr(self, name), hint, high=math.inf, open_low=False)
            object.__setattr__(self, name, value)

    def round_qty(self, qty: float) -> float:
        """Return ``qty`` rounded **down** to a whole number of ``amount_step``, as the backtest kernel does."""
        return float(floor_to_step_nb(float(qty), self.amount_step))

    def order_qty(self, qty: float, price: float) -> float:
        """Return ``qty`` rounded down to the step, or 0.0 when under the minimums at ``price`` (kernel's rule)."""
        return float(
            order_qty_nb(float(qty), float(price), self.amount_step, self.min_qty, self.min_notional)
        )

    def round_price(self, price: float) -> float:
        """Return ``price`` rounded to the nearest ``price_tick``."""
        if self.price_tick <= 0.0 or not math.isfinite(price):
            return price
        units = _steps(price, self.price_tick).to_integral_value(ROUND_HALF_EVEN)
        return float(units * Decimal(repr(self.price_tick)))


@dataclass(frozen=True, slots=True)
class Margin:
    """How a derivatives position is margined, and how far its stop must stay from liquidation.

    ``leverage``: notional / margin (1 to 125); ``maintenance_margin``: the venue's maintenance margin rate of
    the first tier (fraction of notional, e.g. 0.004); ``liquidation_margin``: the share of the distance to the
    liquidation price that must stay between the stop and it (0.5: the stop may go at most half way).
    Isolated margin: a position entered at ``p`` is liquidated about ``liquidation_distance`` x ``p`` away
    (``1 / leverage - maintenance_margin``; fees and funding paid bring it a little closer).
    """

    leverage: float = 1.0
    maintenance_margin: float = 0.004
    liquidation_margin: float = 0.5

    def __post_init__(self) -> None:
        _check_number("leverage", self.leverage, "notional / margin in [1, 125], e.g. 3", high=125.0)
        if self.leverage < 1.0:
            raise ConfigError(
                f"leverage must be notional / margin in [1, 125], e.g. 3; got {self.leverage!r}"
            )
        _check_number(
            "maintenance_margin",
            self.maintenance_margin,
            "a fraction of notional in (0, 0.5), e.g. 0.004",
            high=0.5,
        )
        _check_number(
            "liquidation_margin",
            self.liquidation_margin,
            "the share of the distance to liquidation kept free of the stop, in (0, 1), e.g. 0.5",
            high=0.999,
        )
        if self.liquidation_distance <= 0.0:
            raise ConfigError(
                f"leverage {self.leverage:g} with maintenance margin {self.maintenance_margin:g} liquidates at "
                "the entry price; lower the leverage"
            )

    @property
    def liquidation_distance(self) -> float:
        """Return how far from the entry price an isolated position is liquidated (fraction of the price)."""
        return 1.0 / self.leverage - self.maintenance_margin

    @property
    def max_stop(self) -> float:
        """Return the farthest stop distance (fraction of the entry price) the guard lets through."""
        return self.liquidation_distance * (1.0 - self.liquidation_margin)

    def liquidation_price(self, side: int, entry_price: float) -> float:
        """Return the approximate liquidation price of an isolated ``side`` position entered at ``entry_price``."""
        return entry_price * (1.0 - side * self.liquidation_distance)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Validated risk limits of one bot (units in the module docstring).

    The position cap is the smaller of ``max_position_fraction * equity`` and ``max_position_notional``
    (quote currency; ``inf`` for none), and with ``margin`` (derivatives) also ``margin.leverage * equity``, the
    most the venue's margin allows. ``cooldown_after_losses`` 0 turns the cool-down off; ``cooldown_bars``
    counts bars of ``timeframe``. ``margin``: ``None`` on spot (no leverage, no liquidation).
    """

    max_position_fraction: float = 1.0
    max_position_notional: float = math.inf
    max_open_positions: int = 1
    max_daily_loss: float = 0.03
    max_drawdown: float = 0.10
    cooldown_after_losses: int = 3
    cooldown_bars: int = 15
    timeframe: str = "1m"
    margin: Margin | None = None

    def __post_init__(self) -> None:
        for name, hint, high in (
            ("max_position_fraction", "the cap on notional / equity, in (0, 100] (1.0 = no leverage)", 100.0),
            ("max_position_notional", "the cap on notional in quote currency, > 0 (inf = none)", math.inf),
            ("max_daily_loss", "a fraction of the day's start equity in (0, 1], e.g. 0.03", 1.0),
            ("max_drawdown", "a fraction of the peak equity in (0, 1], e.g. 0.1", 1.0),
        ):
            object.__setattr__(self, name, _check_number(name, getattr(self, name), hint, high=high))
        _check_count("max_open_positions", self.max_open_positions, "a whole number >= 0 (0 = no entries)")
        _check_count("cooldown_after_losses", self.cooldown_after_losses, "a whole number >= 0 (0 = off)")
        _check_count("cooldown_bars", self.cooldown_bars, "a whole number of bars >= 0")
        timeframe_delta(self.timeframe)  # raises ConfigError naming the supported timeframes


@dataclass(frozen=True, slots=True)
class RiskState:
    """The risk bookkeeping carried from bar to bar (in the portfolio snapshot).

    ``day``: the UTC date of the last update; ``day_start_equity``: equity when that day began (the last equity
    seen before its first update); ``peak_equity``: the highest equity seen since the start or the last resume;
    ``last_equity``: equity at the last update; ``cooldown_until``: entries decided before this bar open time
    are denied; ``halted``/``halt_reason``/``halted_at``: the kill switch.
    """

    day: date
    day_start_equity: float
    peak_equity: float
    last_equity: float
    consecutive_losses: int = 0
    cooldown_until: pd.Timestamp | None = None
    halted: bool = False
    halt_reason: str | None = None
    halted_at: pd.Timestamp | None = None

    def __post_init__(self) -> None:
        for name in ("day_start_equity", "peak_equity", "last_equity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise DataError(f"RiskState.{name} must be a finite equity in quote currency; got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.consecutive_losses < 0:
            raise DataError(f"RiskState.consecutive_losses must be >= 0; got {self.consecutive_losses}")
        for name in ("cooldown_until", "halted_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _utc(value, f"RiskState.{name}"))
        if self.halted and not self.halt_reason:
            raise DataError("RiskState.halt_reason must say why the kill switch is engaged")


def _utc(time: pd.Timestamp, what: str) -> pd.Timestamp:
    stamp = pd.Timestamp(time)
    if stamp.tzinfo is None:
        raise DataError(f"{what} must be an aware UTC time; got the naive {stamp}: use tz_localize('UTC')")
    return stamp.tz_convert("UTC")


def _check_equity(equity: float, what: str) -> float:
    if isinstance(equity, bool) or not isinstance(equity, int | float) or not math.isfinite(equity):
        raise DataError(f"{what} must be a finite number in quote currency; got {equity!r}")
    return float(equity)


def initial_risk_state(equity: float, now_bar_time: pd.Timestamp) -> RiskState:
    """Return the state of a bot starting with ``equity`` after bar ``now_bar_time`` closed."""
    equity = _check_equity(equity, "equity")
    now = _utc(now_bar_time, "now_bar_time")
    return RiskState(day=now.date(), day_start_equity=equity, peak_equity=equity, last_equity=equity)


def _loss_reached(base: float, equity: float, limit: float) -> float | None:
    """Return the loss ``1 - equity / base`` when it reaches ``limit``, else ``None`` (never for base <= 0)."""
    if base <= 0.0:
        return None
    loss = 1.0 - equity / base
    return loss if loss >= limit - _LIMIT_TOLERANCE else None


def _breach(equity: float, day: date, day_start: float, peak: float, limits: RiskLimits) -> str | None:
    """Return why the kill switch must engage (``code: details``), or ``None``."""
    daily = _loss_reached(day_start, equity, limits.max_daily_loss)
    if daily is not None:
        return (
            f"max_daily_loss: equity {equity:.2f} is {daily:.2%} below the day's start {day_start:.2f} "
            f"({day.isoformat()} UTC), limit {limits.max_daily_loss:.2%}"
        )
    drawdown = _loss_reached(peak, equity, limits.max_drawdown)
    if drawdown is not None:
        return (
            f"max_drawdown: equity {equity:.2f} is {drawdown:.2%} below the peak {peak:.2f}, "
            f"limit {limits.max_drawdown:.2%}"
        )
    return None


def update_risk_state(
    state: RiskState,
    equity: float,
    now_bar_time: pd.Timestamp,
    closed_trades_pnl_since_last: Sequence[float],
    limits: RiskLimits,
) -> RiskState:
    """Return the state after bar ``now_bar_time`` closed with ``equity`` (cash plus the position at the close).

    ``closed_trades_pnl_since_last``: PnL after fees (quote currency) of the trades closed since the last update,
    oldest first. In order: roll the UTC day (the new day starts from the last equity seen; a halt survives),
    track the peak, count consecutive losses and start a cool-down, engage the kill switch when the daily loss
    or the drawdown limit is reached. Raise ``DataError`` for a non-finite equity or PnL or a naive time.
    """
    equity = _check_equity(equity, "equity")
    pnls = [_check_equity(pnl, "a closed trade's pnl") for pnl in closed_trades_pnl_since_last]
    now = _utc(now_bar_time, "now_bar_time")
    day, day_start = state.day, state.day_start_equity
    if now.date() > day:
        day, day_start = now.date(), state.last_equity
    peak = max(state.peak_equity, equity)

    losses, cooldown_until = state.consecutive_losses, state.cooldown_until
    if cooldown_until is not None and now >= cooldown_until:
        cooldown_until = None
    for pnl in pnls:
        losses = losses + 1 if pnl < 0.0 else 0
        if limits.cooldown_after_losses and losses >= limits.cooldown_after_losses:
            losses = 0
            if limits.cooldown_bars:
                until = now + limits.cooldown_bars * timeframe_delta(limits.timeframe)
                cooldown_until = until if cooldown_until is None else max(cooldown_until, until)

    halted, reason, halted_at = state.halted, state.halt_reason, state.halted_at
    if not halted:
        reason = _breach(equity, day, day_start, peak, limits)
        halted, halted_at = reason is not None, None if reason is None else now
    return RiskState(
        day=day,
        day_start_equity=day_start,
        peak_equity=peak,
        last_equity=equity,
        consecutive_losses=losses,
        cooldown_until=cooldown_until,
        halted=halted,
        halt_reason=reason,
        halted_at=halted_at,
    )


def halt(state: RiskState, reason: str, at: pd.Timestamp) -> RiskState:
    """Return ``state`` with the kill switch engaged by hand (an operator's stop); an earlier halt is kept."""
    if state.halted:
        return state
    if not reason:
        raise DataError(
            "a halt needs a reason for the ledger and the operator, e.g. 'manual: exchange outage'"
        )
    return dataclasses.replace(state, halted=True, halt_reason=reason, halted_at=_utc(at, "halt time"))


def resume(state: RiskState) -> RiskState:
    """Return ``state`` with the kill switch released and the losses so far accepted.

    The day's start and the peak restart from the last equity seen, so the next update does not engage the
    switch again for the same loss. Consecutive losses and a running cool-down are kept.
    """
    return dataclasses.replace(
        state,
        halted=False,
        halt_reason=None,
        halted_at=None,
        day_start_equity=state.last_equity,
        peak_equity=state.last_equity,
    )


def needs_flatten(state: RiskState, position: Position | None) -> bool:
    """Return whether the open ``position`` must be closed now: the kill switch is engaged.

    True on every bar while halted and a position is open, not only on the bar the switch engaged, so a flatten
    that failed (exchange down) is retried; the flatten's client ids make a repeat a duplicate, not an order.
    """
    return state.halted and position is not None and position.qty > 0.0


def _finite_positive(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def check_entry(
    signal: Signal,
    snapshot_equity: float,
    position: Position | None,
    state: RiskState,
    limits: RiskLimits,
    market_rules: MarketRules,
    price: float,
) -> Denial | None:
    """Return why the entry ``signal`` may not be sent, or ``None`` when it may.

    ``snapshot_equity``: the broker's equity (quote currency); ``position``: the open position, if any (a
    same-direction one counts as a second position, an opposite one is closed by the reversal); ``price``: the
    reference price (quote currency, e.g. the last close) that turns ``signal.size * equity`` notional into a
    quantity. A signal with side 0 is not an entry: ``None``. Checks, first failure wins: kill switch,
    cool-down, open positions, inputs, position notional (leverage-aware), the liquidation guard (derivatives:
    the stop must lie within ``limits.margin.max_stop`` of the entry), minimum quantity and notional after
    rounding down to the venue's amount step.

    Bad inputs (a naive time, a side outside -1..1, a non-finite or non-positive equity, price or size) are an
    ``invalid_input`` denial; an exception escaping a check is a bug and propagates, so that it is seen.
    """
    equity, rules = snapshot_equity, market_rules
    if signal.side == 0:
        return None
    if state.halted:
        return Denial(
            "halted", f"kill switch engaged since {state.halted_at}: {state.halt_reason}; resume to trade"
        )
    decided_at = pd.Timestamp(signal.decided_at)
    if decided_at.tzinfo is None:
        return Denial("invalid_input", f"signal time {decided_at} is naive; decision times are UTC")
    if state.cooldown_until is not None and decided_at < state.cooldown_until:
        return Denial(
            "cooldown",
            f"cool-down after {limits.cooldown_after_losses} consecutive losses until {state.cooldown_until}",
        )
    held = position is not None and position.side == signal.side
    if 1 + int(held) > limits.max_open_positions:
        already = f"a {'long' if signal.side > 0 else 'short'} position is open; " if held else ""
        return Denial(
            "max_open_positions",
            f"{already}an entry would make {1 + int(held)} open positions, limit {limits.max_open_positions}",
        )
    if signal.side not in (-1, 1):
        return Denial("invalid_input", f"signal side must be -1, 0 or +1; got {signal.side!r}")
    for what, value in (("equity", equity), ("price", price), ("size", signal.size)):
        if not _finite_positive(value):
            return Denial("invalid_input", f"{what} must be finite and > 0 for an entry; got {value!r}")
    notional = signal.size * equity
    cap = min(limits.max_position_fraction * equity, limits.max_position_notional)
    margin = limits.margin
    if margin is not None:
        cap = min(cap, margin.leverage * equity)
    if notional > cap * (1.0 + _LIMIT_TOLERANCE):
        levered = "" if margin is None else f" and {margin.leverage:g} x equity (the leverage)"
        return Denial(
            "max_position_notional",
            f"notional {notional:.2f} ({signal.size:.4g} of equity {equity:.2f}) exceeds the cap {cap:.2f} "
            f"(min of {limits.max_position_fraction:g} x equity and {limits.max_position_notional:g}{levered})",
        )
    if margin is not None and not signal.sl <= margin.max_stop * (1.0 + _LIMIT_TOLERANCE):
        liquidation = margin.liquidation_price(signal.side, price)
        stop = price * (1.0 - signal.side * signal.sl)
        return Denial(
            "liquidation_guard",
            f"stop {signal.sl:.4%} from the entry (~{stop:.2f}) lies beyond the liquidation guard: at "
            f"{margin.leverage:g}x the position is liquidated ~{margin.liquidation_distance:.4%} away "
            f"(~{liquidation:.2f}) and the stop may use at most {1 - margin.liquidation_margin:.0%} of that "
            f"({margin.max_stop:.4%}); lower the leverage or the stop",
        )
    qty = rules.round_qty(notional / price)
    if qty <= 0.0 or qty < rules.min_qty:
        return Denial(
            "below_min_qty",
            f"quantity {notional / price:.10g} rounds down to {qty:.10g} with step {rules.amount_step:g}, "
            f"below the minimum {max(rules.min_qty, rules.amount_step):g}",
        )
    if qty * price < rules.min_notional:
        return Denial(
            "below_min_notional",
            f"order value {qty * price:.2f} (qty {qty:.10g} at {price:g}) is below the venue minimum "
            f"{rules.min_notional:g}",
        )
    return None
