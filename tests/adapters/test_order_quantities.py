"""One rule for order quantities: the kernel (so backtests and the paper broker), the risk checks and the live
broker's order planner round down to the venue's step and skip orders under its minimums identically, and the
live broker writes the quantity as the venue wants it (``0.00008``, never ``8e-05``)."""

from __future__ import annotations

import re
from typing import Any

import ccxt
import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scalpbot.adapters.ccxt._account import SpotAccount
from scalpbot.adapters.ccxt.common import CcxtCalls
from scalpbot.adapters.ccxt.family import family_of
from scalpbot.core.backtest.enums import OrderRules
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.risk import MarketRules
from scalpbot.core.venue import default_venue

BINANCE_DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
"""The format Binance accepts for quantities and prices (anything else is error -1100)."""
STEPS = (1e-8, 1e-5, 0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 10.0)


def _account(step: float, min_qty: float, min_notional: float) -> SpotAccount:
    """Return the live broker's view of a BTC/USDT spot market with these rules, without a network."""
    exchange = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}}})
    exchange.set_markets(
        [
            {
                "id": "BTCUSDT",
                "symbol": "BTC/USDT",
                "base": "BTC",
                "quote": "USDT",
                "baseId": "BTC",
                "quoteId": "USDT",
                "type": "spot",
                "spot": True,
                "active": True,
                "precision": {"amount": step, "price": 0.01},
                "limits": {"amount": {"min": min_qty}, "cost": {"min": min_notional}},
            }
        ]
    )
    calls = CcxtCalls(exchange, venue="binance", secrets=[], max_attempts=1, base_delay=0.0, max_delay=0.0)
    venue = default_venue("binance", "BTC/USDT").override(
        {"amount_step": step, "min_amount": min_qty, "min_notional": min_notional}, "exchange"
    )
    return SpotAccount(
        exchange,
        calls,
        bot="q",
        symbol="BTC/USDT",
        timeframe="1m",
        bar=pd.Timedelta(minutes=1),
        fee_rate=0.001,
        family=family_of("binance"),
        venue=venue,
    )


def _kernel_qty(qty: float, price: float, rules: OrderRules) -> float:
    """Return the quantity the backtest kernel enters for an order of ``qty`` filled at ``price`` (0: skipped)."""
    index = pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC")
    bars = pd.DataFrame({"open": price, "high": price, "low": price, "close": price}, index=index)
    signals = pd.DataFrame(
        {"side": [1, 0, 0], "size": [qty, 0.0, 0.0], "sl": np.inf, "tp": np.inf, "max_hold": 0}, index=index
    )
    trades = backtest(bars, signals, fee=0.001, size_in="qty", rules=rules, initial_equity=1e12).trades
    return float(trades["qty"].iloc[0]) if len(trades) else 0.0


@st.composite
def orders(draw: Any) -> tuple[float, float, float, float, float]:
    """Return ``(qty, step, price, min_qty, min_notional)``, often right at or a float ulp around a step."""
    step = draw(st.sampled_from(STEPS))
    units = draw(st.integers(min_value=0, max_value=2_000_000))
    near = draw(st.sampled_from([0.0, 1e-16, -1e-16, 1e-13, -1e-13, 1e-9, -1e-9, 0.3, 0.999]))
    qty = draw(st.one_of(st.just(abs(units * step * (1.0 + near) + step * near)), st.floats(1e-9, 1e5)))
    price = draw(st.floats(min_value=0.01, max_value=200_000.0))
    min_qty = draw(st.sampled_from([0.0, step, 3 * step]))
    min_notional = draw(st.sampled_from([0.0, 5.0, 100.0]))
    return qty, step, price, min_qty, min_notional


@settings(max_examples=300, deadline=None)
@given(orders())
@example((0.00008, 1e-5, 95_000.0, 1e-5, 5.0))
@example((0.1 + 0.2, 0.1, 10.0, 0.0, 0.0))
@example((0.003 - 1e-18, 0.001, 1.0, 0.0, 0.0))
def test_the_kernel_the_risk_check_and_the_live_planner_round_and_skip_alike(
    order: tuple[float, float, float, float, float],
) -> None:
    qty, step, price, min_qty, min_notional = order
    kernel = _kernel_qty(qty, price, OrderRules(step, min_qty, min_notional, False))
    rules = MarketRules(amount_step=step, min_qty=min_qty, min_notional=min_notional)
    account = _account(step, min_qty, min_notional)

    rounded = account.amount(qty)
    assert rounded == rules.round_qty(qty)
    assert kernel == rules.order_qty(qty, price)
    skipped_live = bool(account.below_minimum(rounded, price))
    assert (kernel == 0.0) == skipped_live
    if kernel:
        assert kernel == rounded
        assert rounded <= qty * (1 + 1e-12) and qty - rounded < step * (1 + 1e-9)
        units = rounded / step
        assert units == pytest.approx(round(units), rel=1e-12, abs=1e-9)
        text = account.amount_text(qty)
        assert BINANCE_DECIMAL.match(text), text
        assert float(text) == rounded


def test_a_quantity_of_eight_satoshi_steps_is_written_in_decimals_not_as_8e_05() -> None:
    account = _account(1e-5, 1e-5, 0.0)
    assert str(0.00008) == "8e-05"
    assert account.amount_text(0.00008) == "0.00008"
    assert account.amount_text(0.000089999) == "0.00008"
    assert _kernel_qty(0.000089999, 60_000.0, OrderRules(1e-5, 1e-5, 0.0, False)) == 0.00008


def test_an_order_one_step_under_the_minimum_notional_is_skipped_by_all_three() -> None:
    price, step, minimum = 50_000.0, 1e-5, 5.0  # 0.0001 BTC = 5 USDT, one step less is 4.5 USDT
    account = _account(step, step, minimum)
    rules = OrderRules(step, step, minimum, False)
    assert _kernel_qty(0.0001, price, rules) == 0.0001
    assert account.below_minimum(account.amount(0.0001), price) == ""
    assert _kernel_qty(0.0000999, price, rules) == 0.0
    assert "minimum notional" in account.below_minimum(account.amount(0.0000999), price)
    assert MarketRules(step, step, minimum).order_qty(0.0000999, price) == 0.0


def test_a_short_signal_on_a_venue_that_cannot_short_only_closes_the_long() -> None:
    index = pd.date_range("2024-01-01", periods=5, freq="1min", tz="UTC")
    prices = [100.0, 101.0, 102.0, 103.0, 104.0]
    bars = pd.DataFrame({"open": prices, "high": prices, "low": prices, "close": prices}, index=index)
    signals = pd.DataFrame(
        {"side": [1, -1, 0, -1, 0], "size": 0.5, "sl": np.inf, "tp": np.inf, "max_hold": 0}, index=index
    )
    spot = backtest(bars, signals, fee=0.001, rules=OrderRules(0.0, 0.0, 0.0, False)).trades
    margin = backtest(bars, signals, fee=0.001, rules=OrderRules(0.0, 0.0, 0.0, True)).trades
    assert list(spot["side"]) == [1]
    assert list(spot["exit_reason"].astype(str)) == ["signal"]
    assert list(margin["side"]) == [1, -1]
