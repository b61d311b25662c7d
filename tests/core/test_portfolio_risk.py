"""The bot's risk budget (pure): each limit's denial with its reason, reversals, settling, the bot's kill switch."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalpbot.core.portfolio_risk import (
    Approved,
    Denied,
    PortfolioBook,
    PortfolioLimits,
    Reservation,
    cancel,
    check_reservation,
    new_book,
    release,
    reserve,
    resume_book,
    settle,
)
from scalpbot.errors import ConfigError, DataError

T0 = pd.Timestamp("2025-03-03T10:00:00Z")
BAR = pd.Timedelta(minutes=1)
LIMITS = PortfolioLimits(
    max_gross_exposure=0.5,
    max_gross_notional=4_000.0,
    max_symbol_notional=2_000.0,
    max_positions=2,
    max_daily_loss=0.03,
    max_drawdown=0.10,
)


def held(notional: float, client_id: str = "c1", at: pd.Timestamp = T0, side: int = 1) -> Reservation:
    return Reservation(side, notional, client_id, at)


def book_with(*entries: tuple[str, float], equity: float = 10_000.0) -> PortfolioBook:
    book = new_book(equity, T0)
    for k, (symbol, notional) in enumerate(entries):
        book = reserve(book, symbol, held(notional, f"c{k}"), LIMITS)
    return book


def codes(verdict: Approved | Denied) -> list[str]:
    assert isinstance(verdict, Denied)
    return [r.code for r in verdict.reasons]


def test_the_default_limits_bind_nothing() -> None:
    limits = PortfolioLimits()
    book = new_book(1_000.0, T0)
    for k in range(50):
        symbol = f"S{k}/USDT"
        assert isinstance(check_reservation(book, symbol, 1e9, limits), Approved)
        book = reserve(book, symbol, held(1e9, f"c{k}"), limits)
    assert book.positions == 50


def test_an_entry_within_every_limit_is_approved_with_the_gross_after_it() -> None:
    verdict = check_reservation(book_with(("BTC/USDT", 1_500.0)), "ETH/USDT", 2_000.0, LIMITS)
    assert verdict == Approved(3_500.0, 2)


def test_the_gross_cap_is_the_smaller_of_the_multiple_of_equity_and_the_quote_amount() -> None:
    assert LIMITS.gross_cap(10_000.0) == 4_000.0  # 0.5 x 10,000 = 5,000 > 4,000
    assert LIMITS.gross_cap(6_000.0) == 3_000.0
    assert LIMITS.gross_cap(0.0) == 0.0
    book = book_with(("BTC/USDT", 2_000.0), equity=6_000.0)
    verdict = check_reservation(book, "ETH/USDT", 1_500.0, LIMITS)
    assert codes(verdict) == ["max_gross_exposure"]
    assert isinstance(verdict, Denied)
    assert "3500.00" in verdict.message and "cap 3000.00" in verdict.message


def test_exactly_the_cap_is_allowed() -> None:
    assert isinstance(
        check_reservation(book_with(("BTC/USDT", 2_000.0)), "ETH/USDT", 2_000.0, LIMITS), Approved
    )


def test_every_broken_limit_is_reported_at_once() -> None:
    book = book_with(("BTC/USDT", 2_000.0), ("ETH/USDT", 1_500.0))
    verdict = check_reservation(book, "SOL/USDT", 2_500.0, LIMITS)
    assert codes(verdict) == ["max_symbol_notional", "max_gross_exposure", "max_positions"]
    assert isinstance(verdict, Denied)
    assert verdict.to_dict()["code"] == "max_symbol_notional"
    assert "3 open positions across the bot, limit 2" in verdict.message


def test_a_reversal_replaces_its_symbols_reservation_instead_of_adding_one() -> None:
    book = book_with(("BTC/USDT", 2_000.0), ("ETH/USDT", 2_000.0))
    assert isinstance(check_reservation(book, "BTC/USDT", 2_000.0, LIMITS), Approved)
    flipped = reserve(book, "BTC/USDT", held(1_800.0, "c-rev", T0 + BAR, side=-1), LIMITS)
    assert (flipped.gross, flipped.positions, flipped.reservations["BTC/USDT"].side) == (3_800.0, 2, -1)


def test_reserving_the_same_entry_again_changes_nothing() -> None:
    book = book_with(("BTC/USDT", 1_000.0))
    again = reserve(book, "BTC/USDT", held(1_000.0, "c0"), LIMITS)
    assert again is book


def test_reserve_refuses_what_the_check_denies() -> None:
    with pytest.raises(DataError, match="max_symbol_notional|per-symbol cap"):
        reserve(new_book(10_000.0, T0), "BTC/USDT", held(2_500.0), LIMITS)


@pytest.mark.parametrize("notional", [0.0, -5.0, math.nan, math.inf])
def test_a_non_positive_or_non_finite_notional_is_an_invalid_input(notional: float) -> None:
    assert codes(check_reservation(new_book(10_000.0, T0), "BTC/USDT", notional, LIMITS)) == ["invalid_input"]


def test_settling_books_each_exit_once_and_releases_a_flat_symbol() -> None:
    book = book_with(("BTC/USDT", 1_000.0))
    later = T0 + 5 * BAR
    settled = settle(book, "BTC/USDT", [("x:tp", 25.0)], later, LIMITS, held=None)
    assert (settled.equity, settled.day_pnl, settled.positions) == (10_025.0, 25.0, 0)
    assert settle(settled, "BTC/USDT", [("x:tp", 25.0)], later, LIMITS, held=None) == settled


def test_a_reservation_for_the_bar_being_processed_is_kept_while_its_order_is_on_the_way() -> None:
    book = book_with(("BTC/USDT", 1_000.0))  # reserved on T0: the order fills at the next open
    assert settle(book, "BTC/USDT", [], T0, LIMITS, held=None) == book
    assert settle(book, "BTC/USDT", [], T0 + BAR, LIMITS, held=None).positions == 0


def test_a_position_without_a_reservation_is_recorded_as_it_is() -> None:
    book = book_with(("BTC/USDT", 2_000.0), ("ETH/USDT", 2_000.0))
    adopted = settle(book, "SOL/USDT", [], T0, LIMITS, held=held(900.0, "old"))
    assert adopted.reservations["SOL/USDT"] == held(900.0, "old")
    assert adopted.positions == 3  # it exists, whatever the limits say


def test_an_open_position_keeps_its_symbols_reservation() -> None:
    book = book_with(("BTC/USDT", 1_000.0))
    kept = settle(book, "BTC/USDT", [("old:sl", -10.0)], T0 + BAR, LIMITS, held=held(990.0, "new"))
    assert kept.reservations == book.reservations
    assert kept.equity == 9_990.0


def test_release_and_cancel() -> None:
    book = book_with(("BTC/USDT", 1_000.0))
    released = release(book, "BTC/USDT", -20.0, T0 + BAR, LIMITS, key="c0:sl")
    assert (released.positions, released.equity) == (0, 9_980.0)
    assert cancel(book, "BTC/USDT", "another").reservations == book.reservations
    assert cancel(book, "BTC/USDT", "c0").positions == 0


def test_the_daily_loss_of_the_whole_bot_engages_its_kill_switch_and_blocks_every_symbol() -> None:
    book = book_with(("BTC/USDT", 1_000.0), ("ETH/USDT", 1_000.0))
    at = T0 + 3 * BAR
    book = settle(book, "BTC/USDT", [("b:sl", -150.0)], at, LIMITS, held=None)
    assert not book.halted
    book = settle(book, "ETH/USDT", [("e:sl", -150.0)], at, LIMITS, held=None)  # -300 = 3 % of 10,000
    assert book.halted and book.halted_at == at
    assert book.halt_reason is not None and book.halt_reason.startswith("max_daily_loss")
    assert codes(check_reservation(book, "SOL/USDT", 10.0, LIMITS)) == ["portfolio_halted"]
    next_day = settle(book, "BTC/USDT", [("b2:tp", 5.0)], T0 + pd.Timedelta(days=1), LIMITS, held=None)
    assert next_day.halted  # it survives the day
    resumed = resume_book(next_day)
    assert not resumed.halted
    assert isinstance(check_reservation(resumed, "SOL/USDT", 10.0, LIMITS), Approved)


def test_the_drawdown_from_the_peak_engages_the_kill_switch() -> None:
    limits = PortfolioLimits(max_drawdown=0.10)
    book = new_book(10_000.0, T0)
    book = settle(book, "BTC/USDT", [("a", 1_000.0)], T0, limits, held=None)
    book = settle(book, "BTC/USDT", [("b", -1_000.0)], T0 + pd.Timedelta(days=1), limits, held=None)
    assert not book.halted  # 9.09 % below the peak of 11,000
    book = settle(book, "BTC/USDT", [("c", -100.0)], T0 + pd.Timedelta(days=2), limits, held=None)
    assert book.halted and book.halt_reason is not None and "max_drawdown" in book.halt_reason


def test_a_new_utc_day_starts_from_the_equity_reached() -> None:
    book = settle(new_book(10_000.0, T0), "BTC/USDT", [("a", -200.0)], T0, LIMITS, held=None)
    tomorrow = settle(book, "BTC/USDT", [("b", -100.0)], T0 + pd.Timedelta(days=1), LIMITS, held=None)
    assert (tomorrow.day_start_equity, tomorrow.day_pnl) == (9_800.0, -100.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_gross_exposure": 0.0},
        {"max_symbol_notional": -1.0},
        {"max_positions": -1},
        {"max_positions": True},
        {"max_daily_loss": 1.5},
        {"max_drawdown": 0.0},
    ],
)
def test_invalid_limits_are_refused_naming_the_key(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=f"portfolio.{next(iter(bad))}"):
        PortfolioLimits(**bad)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(DataError, match="naive"):
        new_book(10_000.0, pd.Timestamp("2025-03-03T10:00:00"))


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]),
        st.sampled_from(["enter", "exit", "cancel"]),
        st.floats(1.0, 3_000.0),
    ),
    max_size=60,
)


@given(ACTIONS)
def test_whatever_the_order_of_entries_and_exits_no_book_breaks_the_limits(
    actions: list[tuple[str, str, float]],
) -> None:
    book = new_book(10_000.0, T0)
    for k, (symbol, action, amount) in enumerate(actions, start=1):
        at = T0 + k * BAR
        if action == "enter":
            if isinstance(check_reservation(book, symbol, amount, LIMITS), Approved):
                book = reserve(book, symbol, held(amount, f"c{k}", at), LIMITS)
        elif action == "exit":
            book = settle(book, symbol, [(f"x{k}", (amount - 1_500.0) / 50)], at, LIMITS, held=None)
        else:
            book = cancel(book, symbol, f"c{k - 1}")
        assert book.positions <= 2
        assert all(r.notional <= 2_000.0 for r in book.reservations.values())
        assert book.gross <= 4_000.0 + 1e-6
