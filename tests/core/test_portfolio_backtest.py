"""The portfolio backtest of perpetual swaps: each leg pays its funding and shorts, a short reserves its gross
notional, a reversal replaces its symbol's reservation (checked as the execute cycle checks it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalpbot.core.backtest.enums import NO_FUNDING, OrderRules
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.backtest.portfolio import Leg, portfolio_backtest
from scalpbot.core.funding import funding_at_bars
from scalpbot.core.portfolio_risk import PortfolioLimits
from scalpbot.core.risk import Margin, MarketRules, RiskLimits
from scalpbot.errors import ConfigError

SWAP = OrderRules(0.001, 0.001, 0.0, True, price_tick=0.01, size_at_close=True)
LIMITS = RiskLimits(
    max_position_fraction=3.0,
    max_daily_loss=1.0,
    max_drawdown=1.0,
    cooldown_after_losses=0,
    margin=Margin(leverage=3.0),
)
START = pd.Timestamp("2024-12-26T07:00:00Z")


def _bars(seed: int, n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n))), 2)
    open_ = np.round(np.r_[100.0, close[:-1]], 2)
    spread = np.round(np.abs(rng.normal(0, 0.1, n)), 2)
    index = pd.date_range(START, periods=n, freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
        },
        index=index,
    )


def _signals(bars: pd.DataFrame, sides: dict[int, int], stop: float = 0.02) -> pd.DataFrame:
    side = np.zeros(len(bars), dtype=np.int8)
    for k, value in sides.items():
        side[k] = value
    return pd.DataFrame({"side": side, "size": 1.0, "sl": stop, "tp": stop, "max_hold": 0}, index=bars.index)


def _leg(symbol: str, bars: pd.DataFrame, signals: pd.DataFrame, funding: np.ndarray = NO_FUNDING) -> Leg:
    return Leg(symbol, bars, signals, 0.0005, SWAP, LIMITS, MarketRules(0.001, 0.001, 0.0, 0.01), funding)


def _rates(bars: pd.DataFrame, rate: float) -> pd.Series:
    times = pd.DatetimeIndex([t for t in bars.index if t.minute == 0 and t.hour % 2 == 0])
    return pd.Series(rate, index=times)


def test_unbound_swap_legs_trade_as_their_own_backtests_shorts_and_funding_included() -> None:
    legs, alone = [], {}
    for seed, (symbol, rate) in enumerate((("A/USDT:USDT", 0.0003), ("B/USDT:USDT", -0.0002))):
        bars = _bars(seed)
        signals = _signals(bars, {10: -1, 70: 1, 130: -1, 190: 1})
        rates = _rates(bars, rate)
        legs.append(_leg(symbol, bars, signals, funding_at_bars(rates, pd.DatetimeIndex(bars.index))))
        alone[symbol] = backtest(bars, signals, fee=0.0005, rules=SWAP, funding=rates).trades

    result = portfolio_backtest(legs, PortfolioLimits(), bot="unit")

    for symbol, want in alone.items():
        got = result.results[symbol].trades
        pd.testing.assert_frame_equal(got, want)
        assert (got["side"] < 0).any() and (got["funding"] != 0).any()
    assert result.denials == ()


def test_a_short_reserves_its_gross_notional_and_a_reversal_replaces_its_symbols_reservation() -> None:
    first, second = _bars(1), _bars(2)
    # A shorts on bar 5 and reverses to long on bar 40; B wants a short on bar 20 while A's short is held
    legs = [
        _leg("A/USDT:USDT", first, _signals(first, {5: -1, 40: 1}, stop=0.1)),
        _leg("B/USDT:USDT", second, _signals(second, {20: -1}, stop=0.1)),
    ]

    result = portfolio_backtest(legs, PortfolioLimits(max_gross_exposure=1.5), bot="unit")

    assert [(d.bar, d.symbol, d.side, d.codes) for d in result.denials] == [
        (second.index[20], "B/USDT:USDT", -1, ("max_gross_exposure",))
    ]
    a = result.results["A/USDT:USDT"].trades
    assert a["side"].tolist() == [-1, 1] and a["entry_time"].iloc[1] == first.index[41]
    assert result.results["B/USDT:USDT"].trades.empty and result.risk_denials == ()
    assert result.book is not None
    held = result.book.reservations["A/USDT:USDT"]
    assert (held.side, held.bar) == (1, first.index[40])


def test_a_funding_array_that_is_not_one_rate_per_bar_is_refused() -> None:
    bars = _bars(3)
    leg = _leg("A/USDT:USDT", bars, _signals(bars, {}), np.zeros(len(bars) - 1))
    with pytest.raises(ConfigError, match="one rate per bar"):
        portfolio_backtest([leg], PortfolioLimits(), bot="unit")
