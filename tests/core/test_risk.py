"""Risk checks: each denial, the kill switch at its exact limits, day rolls, cool-downs and order-size rounding."""

from __future__ import annotations

import dataclasses
import math
from datetime import date

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalpbot.core.execution import Position, Signal
from scalpbot.core.risk import (
    Denial,
    Margin,
    MarketRules,
    RiskLimits,
    RiskState,
    check_entry,
    halt,
    initial_risk_state,
    needs_flatten,
    resume,
    update_risk_state,
)
from scalpbot.errors import ConfigError, DataError

T0 = pd.Timestamp("2024-03-01 10:00", tz="UTC")
BAR = pd.Timedelta(minutes=1)
LIMITS = RiskLimits(
    max_position_fraction=1.0,
    max_open_positions=1,
    max_daily_loss=0.03,
    max_drawdown=0.10,
    cooldown_after_losses=3,
    cooldown_bars=5,
)
RULES = MarketRules(amount_step=0.001, min_qty=0.001, min_notional=5.0, price_tick=0.01)


def signal(side: int = 1, size: float = 0.5, at: pd.Timestamp = T0) -> Signal:
    return Signal(decided_at=at, side=side, size=size, sl=0.004, tp=0.006, max_hold=30)


def position(side: int = 1) -> Position:
    return Position(
        side=side,
        qty=0.1,
        entry_price=50_000.0,
        entry_time=T0 - 10 * BAR,
        sl_price=49_800.0,
        tp_price=50_300.0,
        max_hold=30,
        entry_client_id="sbentry",
    )


def entry(
    sig: Signal | None = None,
    *,
    equity: float = 10_000.0,
    pos: Position | None = None,
    state: RiskState | None = None,
    limits: RiskLimits = LIMITS,
    rules: MarketRules = RULES,
    price: float = 50_000.0,
) -> Denial | None:
    state = state or initial_risk_state(equity, T0)
    return check_entry(sig or signal(), equity, pos, state, limits, rules, price)


# --- limits and market rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("max_daily_loss", 0.0, "fraction of the day's start equity"),
        ("max_daily_loss", 1.5, "fraction of the day's start equity"),
        ("max_drawdown", math.nan, "fraction of the peak equity"),
        ("max_position_fraction", -1.0, "notional / equity"),
        ("max_position_notional", 0.0, "quote currency"),
        ("max_open_positions", -1, "whole number"),
        ("cooldown_bars", 2.5, "whole number of bars"),
        ("timeframe", "1min", "did you mean '1m'"),
    ],
)
def test_risk_limits_reject_bad_values_with_a_hint(field: str, value: object, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        RiskLimits(**{field: value})  # type: ignore[arg-type]


def test_market_rules_reject_negative_steps() -> None:
    with pytest.raises(ConfigError, match="amount_step"):
        MarketRules(amount_step=-0.001)


@pytest.mark.parametrize(
    ("step", "qty", "rounded"),
    [
        (0.1, 0.3, 0.3),
        (0.1, 0.1 + 0.2, 0.3),
        (0.001, 0.003 - 4e-19, 0.003),
        (0.001, 0.123456, 0.123),
        (0.001, 0.0009, 0.0),
        (1e-5, 0.07, 0.07),
        (1e-5, 116582.0, 116582.0),
        (5.0, 12.0, 10.0),
    ],
)
def test_round_qty_rounds_down_to_whole_steps_without_float_noise(
    step: float, qty: float, rounded: float
) -> None:
    assert MarketRules(amount_step=step).round_qty(qty) == rounded


def test_round_price_rounds_to_the_nearest_tick() -> None:
    rules = MarketRules(price_tick=0.5)
    assert rules.round_price(100.26) == 100.5
    assert rules.round_price(100.24) == 100.0
    assert MarketRules(price_tick=0.01).round_price(49_800.004999) == 49_800.0
    assert MarketRules().round_price(1.23456) == 1.23456


@given(
    qty=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    step=st.sampled_from([1e-8, 1e-5, 0.001, 0.01, 0.1, 1.0, 5.0]),
)
def test_round_qty_never_exceeds_the_request_and_loses_less_than_a_step(qty: float, step: float) -> None:
    rounded = MarketRules(amount_step=step).round_qty(qty)
    assert rounded <= qty * (1 + 1e-11)
    assert qty - rounded < step * (1 + 1e-6) + qty * 1e-12
    units = rounded / step
    assert abs(units - round(units)) < 1e-6 * max(1.0, units)


# --- check_entry: each denial ----------------------------------------------------------------------------------


def test_a_valid_entry_is_allowed() -> None:
    assert entry() is None


def test_no_signal_is_not_an_entry() -> None:
    assert entry(signal(side=0), state=halt(initial_risk_state(10_000.0, T0), "manual: test", T0)) is None


def test_halted_denies_every_entry() -> None:
    state = halt(initial_risk_state(10_000.0, T0), "manual: exchange outage", T0)
    denial = entry(state=state)
    assert denial is not None and denial.code == "halted"
    assert "exchange outage" in denial.message


def test_cooldown_denies_entries_before_its_end() -> None:
    state = dataclasses.replace(initial_risk_state(10_000.0, T0), cooldown_until=T0 + BAR)
    denial = entry(state=state)
    assert denial is not None and denial.code == "cooldown"
    assert entry(signal(at=T0 + BAR), state=state) is None


def test_a_same_direction_signal_would_be_a_second_position() -> None:
    denial = entry(pos=position(side=1))
    assert denial is not None and denial.code == "max_open_positions"
    assert "long position is open" in denial.message


def test_a_reversal_is_allowed_because_it_closes_the_open_position() -> None:
    assert entry(pos=position(side=-1)) is None


def test_zero_open_positions_allowed_means_no_entries() -> None:
    denial = entry(limits=dataclasses.replace(LIMITS, max_open_positions=0))
    assert denial is not None and denial.code == "max_open_positions"


def test_notional_above_the_equity_fraction_is_denied() -> None:
    denial = entry(signal(size=1.2))
    assert denial is not None and denial.code == "max_position_notional"
    assert entry(signal(size=1.0)) is None  # exactly at the cap


def test_notional_above_the_absolute_cap_is_denied() -> None:
    limits = dataclasses.replace(LIMITS, max_position_notional=2_000.0)
    denial = entry(signal(size=0.5), limits=limits)
    assert denial is not None and denial.code == "max_position_notional"
    assert "2000" in denial.message
    assert entry(signal(size=0.2), limits=limits) is None


def test_on_a_swap_the_notional_cap_is_the_leverage_times_equity() -> None:
    swap = dataclasses.replace(LIMITS, max_position_fraction=10.0, margin=Margin(leverage=3.0))
    assert entry(signal(size=3.0), limits=swap) is None
    denial = entry(signal(size=3.5), limits=swap)
    assert denial is not None and denial.code == "max_position_notional"
    assert "3 x equity (the leverage)" in denial.message
    capped = dataclasses.replace(swap, max_position_fraction=2.0)  # the tighter of the two caps holds
    denied = entry(signal(size=2.5), limits=capped)
    assert denied is not None and denied.code == "max_position_notional"


@pytest.mark.parametrize("side", [1, -1])
def test_an_entry_whose_stop_lies_beyond_the_liquidation_guard_is_denied(side: int) -> None:
    margin = Margin(leverage=50.0, maintenance_margin=0.004, liquidation_margin=0.5)
    limits = dataclasses.replace(LIMITS, margin=margin)
    assert margin.liquidation_distance == pytest.approx(0.016)  # 1/50 - 0.4 %
    assert margin.max_stop == pytest.approx(0.008)
    inside = dataclasses.replace(signal(side), sl=0.008)
    beyond = dataclasses.replace(signal(side), sl=0.0081)
    assert entry(inside, limits=limits) is None
    denial = entry(beyond, limits=limits)
    assert denial is not None and denial.code == "liquidation_guard"
    liquidation = 50_000.0 * (1 - side * 0.016)
    assert f"~{liquidation:.2f}" in denial.message and "lower the leverage or the stop" in denial.message
    no_stop = dataclasses.replace(signal(side), sl=math.inf)
    assert entry(no_stop, limits=limits).code == "liquidation_guard"  # type: ignore[union-attr]
    assert entry(beyond, limits=LIMITS) is None  # spot: no liquidation, no guard


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"leverage": 0.5}, "notional / margin in \\[1, 125\\]"),
        ({"leverage": 200.0}, "notional / margin in \\[1, 125\\]"),
        ({"liquidation_margin": 1.0}, "distance to liquidation"),
        ({"leverage": 125.0, "maintenance_margin": 0.01}, "liquidates at the entry price"),
    ],
)
def test_margin_rules_reject_bad_values_with_a_hint(kwargs: dict[str, float], hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        Margin(**kwargs)


def test_a_quantity_that_rounds_to_zero_is_denied() -> None:
    # 10 000 * 0.004 / 50 000 = 0.0008 BTC, below one 0.001 step
    denial = entry(signal(size=0.004))
    assert denial is not None and denial.code == "below_min_qty"


def test_a_quantity_below_the_venue_minimum_is_denied() -> None:
    rules = dataclasses.replace(RULES, min_qty=0.01)
    denial = entry(signal(size=0.04), rules=rules)  # 0.008 BTC
    assert denial is not None and denial.code == "below_min_qty"


def test_an_order_value_below_the_minimum_notional_after_rounding_is_denied() -> None:
    rules = MarketRules(amount_step=0.001, min_notional=100.0)
    # 10 000 * 0.0199 = 199 quote -> 0.00398 BTC -> 0.003 BTC = 150 quote: allowed; at min 160 it is not
    assert entry(signal(size=0.0199), rules=rules) is None
    denial = entry(signal(size=0.0199), rules=dataclasses.replace(rules, min_notional=160.0))
    assert denial is not None and denial.code == "below_min_notional"


@pytest.mark.parametrize(
    ("equity", "price", "size"),
    [(math.nan, 50_000.0, 0.5), (10_000.0, 0.0, 0.5), (10_000.0, 50_000.0, math.inf)],
)
def test_invalid_inputs_are_a_denial_not_an_error(equity: float, price: float, size: float) -> None:
    state = initial_risk_state(10_000.0, T0)
    denial = check_entry(signal(size=size), equity, None, state, LIMITS, RULES, price)
    assert denial is not None and denial.code == "invalid_input"


def test_a_naive_signal_time_is_a_denial() -> None:
    denial = entry(signal(at=pd.Timestamp("2024-03-01 10:00")))
    assert denial is not None and denial.code == "invalid_input"


@given(
    side=st.integers(-3, 3),
    size=st.floats(allow_nan=True, allow_infinity=True),
    equity=st.floats(allow_nan=True, allow_infinity=True),
    price=st.floats(allow_nan=True, allow_infinity=True),
)
def test_check_entry_never_raises(side: int, size: float, equity: float, price: float) -> None:
    state = initial_risk_state(10_000.0, T0)
    result = check_entry(signal(side=side, size=size), equity, None, state, LIMITS, RULES, price)
    assert result is None or isinstance(result, Denial)


# --- the kill switch -------------------------------------------------------------------------------------------


@given(
    start=st.floats(min_value=10.0, max_value=1e9),
    limit=st.floats(min_value=0.001, max_value=0.99),
)
def test_kill_switch_engages_at_exactly_the_daily_loss_limit(start: float, limit: float) -> None:
    limits = RiskLimits(max_daily_loss=limit, max_drawdown=1.0)
    state = initial_risk_state(start, T0)
    above = update_risk_state(state, start * (1 - limit) * (1 + 1e-6), T0 + BAR, [], limits)
    assert not above.halted
    at = update_risk_state(state, start * (1 - limit), T0 + BAR, [], limits)
    assert at.halted and at.halted_at == T0 + BAR
    assert at.halt_reason is not None and at.halt_reason.startswith("max_daily_loss")


def test_kill_switch_engages_at_the_drawdown_limit_from_the_peak() -> None:
    limits = dataclasses.replace(LIMITS, max_daily_loss=1.0, max_drawdown=0.10)
    state = initial_risk_state(10_000.0, T0)
    state = update_risk_state(state, 12_000.0, T0 + BAR, [], limits)
    assert state.peak_equity == 12_000.0
    state = update_risk_state(state, 10_801.0, T0 + 2 * BAR, [], limits)
    assert not state.halted
    state = update_risk_state(state, 10_800.0, T0 + 3 * BAR, [], limits)
    assert state.halted
    assert state.halt_reason is not None and state.halt_reason.startswith("max_drawdown")


def test_kill_switch_stays_engaged_across_bars_and_days_until_resume() -> None:
    state = update_risk_state(initial_risk_state(10_000.0, T0), 9_600.0, T0, [], LIMITS)
    assert state.halted
    reason = state.halt_reason
    for step in range(1, 4):
        state = update_risk_state(state, 10_500.0, T0 + step * pd.Timedelta(days=1), [], LIMITS)
        assert state.halted and state.halt_reason == reason and state.halted_at == T0
        assert entry(state=state) == Denial("halted", entry(state=state).message)  # type: ignore[union-attr]
    resumed = resume(state)
    assert not resumed.halted and resumed.halt_reason is None and resumed.halted_at is None
    assert entry(state=resumed) is None


def test_resume_accepts_the_losses_so_far() -> None:
    state = update_risk_state(initial_risk_state(10_000.0, T0), 8_900.0, T0, [], LIMITS)
    assert state.halted
    state = update_risk_state(resume(state), 8_900.0, T0 + BAR, [], LIMITS)
    assert not state.halted
    assert state.day_start_equity == 8_900.0 and state.peak_equity == 8_900.0


def test_day_roll_resets_the_daily_loss_but_not_a_halt() -> None:
    limits = dataclasses.replace(LIMITS, max_daily_loss=0.03, max_drawdown=0.5)
    day1 = pd.Timestamp("2024-03-01 23:58", tz="UTC")
    state = update_risk_state(initial_risk_state(10_000.0, day1), 9_800.0, day1 + BAR, [], limits)
    assert not state.halted and state.day == date(2024, 3, 1)
    # 2 % more on the next UTC day: 4 % since yesterday's start, but 2 % today
    state = update_risk_state(state, 9_604.0, day1 + 2 * BAR, [], limits)
    assert state.day == date(2024, 3, 2) and state.day_start_equity == 9_800.0
    assert not state.halted
    halted = halt(state, "manual: test", day1 + 2 * BAR)
    next_day = update_risk_state(halted, 9_604.0, day1 + pd.Timedelta(days=2), [], limits)
    assert next_day.day == date(2024, 3, 3) and next_day.halted


def test_an_earlier_halt_reason_is_kept() -> None:
    state = halt(initial_risk_state(10_000.0, T0), "manual: first", T0)
    assert halt(state, "manual: second", T0 + BAR).halt_reason == "manual: first"
    assert update_risk_state(state, 1_000.0, T0 + BAR, [], LIMITS).halt_reason == "manual: first"


def test_a_stale_reason_without_a_halt_does_not_engage_the_switch() -> None:
    state = dataclasses.replace(initial_risk_state(10_000.0, T0), halt_reason="old: resumed by hand")
    assert not update_risk_state(state, 10_000.0, T0 + BAR, [], LIMITS).halted


def test_needs_flatten_while_halted_with_an_open_position() -> None:
    state = initial_risk_state(10_000.0, T0)
    halted = update_risk_state(state, 9_000.0, T0 + BAR, [], LIMITS)
    assert needs_flatten(halted, position())
    assert not needs_flatten(halted, None)
    assert not needs_flatten(state, position())


def test_update_rejects_non_finite_equity_and_naive_times() -> None:
    state = initial_risk_state(10_000.0, T0)
    with pytest.raises(DataError, match="finite"):
        update_risk_state(state, math.nan, T0, [], LIMITS)
    with pytest.raises(DataError, match="pnl"):
        update_risk_state(state, 10_000.0, T0, [math.inf], LIMITS)
    with pytest.raises(DataError, match="naive"):
        update_risk_state(state, 10_000.0, pd.Timestamp("2024-03-01"), [], LIMITS)


# --- cool-down -------------------------------------------------------------------------------------------------


def test_cooldown_after_consecutive_losses_lasts_the_configured_bars() -> None:
    limits = dataclasses.replace(LIMITS, cooldown_after_losses=3, cooldown_bars=5)
    state = initial_risk_state(10_000.0, T0)
    state = update_risk_state(state, 9_990.0, T0, [-5.0, -5.0], limits)
    assert state.consecutive_losses == 2 and state.cooldown_until is None
    state = update_risk_state(state, 9_985.0, T0 + BAR, [-5.0], limits)
    assert state.cooldown_until == T0 + 6 * BAR and state.consecutive_losses == 0
    denied = []
    for k in range(1, 8):
        now = T0 + k * BAR
        state = update_risk_state(state, 9_985.0, now, [], limits)
        denied.append(entry(signal(at=now), equity=9_985.0, state=state) is not None)
    assert denied == [True] * 5 + [False] * 2
    assert state.cooldown_until is None


def test_a_winning_trade_resets_the_loss_count() -> None:
    state = initial_risk_state(10_000.0, T0)
    state = update_risk_state(state, 10_000.0, T0, [-1.0, -1.0, 3.0, -1.0], LIMITS)
    assert state.consecutive_losses == 1 and state.cooldown_until is None


def test_cooldown_off_when_after_losses_is_zero() -> None:
    limits = dataclasses.replace(LIMITS, cooldown_after_losses=0)
    state = update_risk_state(initial_risk_state(10_000.0, T0), 9_990.0, T0, [-1.0] * 10, limits)
    assert state.cooldown_until is None and state.consecutive_losses == 10


def test_resume_keeps_a_running_cooldown() -> None:
    state = dataclasses.replace(
        halt(initial_risk_state(10_000.0, T0), "manual: x", T0), cooldown_until=T0 + 3 * BAR
    )
    assert resume(state).cooldown_until == T0 + 3 * BAR


def test_a_check_that_hits_a_bug_raises_instead_of_denying() -> None:
    class BrokenRules(MarketRules):
        def round_qty(self, qty: float) -> float:
            raise ZeroDivisionError("a bug in the rounding")

    with pytest.raises(ZeroDivisionError, match="a bug"):
        entry(signal(), rules=BrokenRules(amount_step=0.001))
