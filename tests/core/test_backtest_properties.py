"""Invariants of the execution model on random bars and signals (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.backtest.enums import OrderRules
from scalpbot.core.backtest.frame import BacktestResult, backtest
from scalpbot.core.metrics import compute_metrics, max_drawdown
from scalpbot.errors import DataError

SETTINGS = settings(max_examples=150, deadline=None)
INITIAL = 10_000.0

moves = st.tuples(
    st.one_of(st.just(0.0), st.floats(-0.03, 0.03)),  # gap from the previous close to this open
    st.floats(-0.02, 0.02),  # body: close over open
    st.floats(0.0, 0.01),  # upper wick
    st.floats(0.0, 0.01),  # lower wick
)
decisions = st.tuples(
    st.sampled_from([-1, 0, 0, 0, 1]),
    st.floats(0.05, 1.0),  # size, fraction of equity
    st.floats(0.001, 0.03),  # sl
    st.floats(0.001, 0.03),  # tp
    st.integers(0, 6),  # max_hold
)


def bars_from(start: float, bar_moves: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    rows = []
    close = start
    for gap, body, up, down in bar_moves:
        open_ = close * (1.0 + gap)
        close = open_ * (1.0 + body)
        rows.append((open_, max(open_, close) * (1.0 + up), min(open_, close) * (1.0 - down), close))
    index = pd.date_range("2024-03-01", periods=len(rows), freq="1min", tz="UTC")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index)


def signals_from(index: pd.DatetimeIndex, rows: list[tuple[int, float, float, float, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["side", "size", "sl", "tp", "max_hold"], index=index)
    return frame.astype({"side": np.int8, "max_hold": np.int64})


@dataclass(frozen=True)
class Scenario:
    bars: pd.DataFrame
    signals: pd.DataFrame
    fee: float
    slippage: float

    def run(self) -> BacktestResult:
        return backtest(self.bars, self.signals, fee=self.fee, slippage=self.slippage, initial_equity=INITIAL)


@st.composite
def scenarios(draw: st.DrawFn, max_bars: int = 40) -> Scenario:
    n = draw(st.integers(2, max_bars))
    bars = bars_from(draw(st.floats(1.0, 1_000.0)), draw(st.lists(moves, min_size=n, max_size=n)))
    signals = signals_from(bars.index, draw(st.lists(decisions, min_size=n, max_size=n)))
    return Scenario(
        bars, signals, draw(st.sampled_from([0.0, 0.0004, 0.002])), draw(st.sampled_from([0.0, 5e-4]))
    )


def bar_positions(bars: pd.DataFrame, trades: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return bars.index.get_indexer(trades["entry_time"]), bars.index.get_indexer(trades["exit_time"])


@SETTINGS
@given(
    direction=st.sampled_from([-1, 1]),
    price=st.floats(1.0, 1_000.0),
    sl=st.floats(0.001, 0.05),
    tp=st.floats(0.001, 0.05),
    beyond=st.tuples(st.floats(0.0, 0.05), st.floats(0.0, 0.05)),
    on_entry_bar=st.booleans(),
)
def test_stop_loss_wins_when_both_barriers_inside_bar(
    direction: int, price: float, sl: float, tp: float, beyond: tuple[float, float], on_entry_bar: bool
) -> None:
    reach = max(sl, tp)
    straddle = (
        price,
        price * (1.0 + reach) * (1.0 + beyond[0]),
        price * (1.0 - reach) * (1.0 - beyond[1]),
        price,
    )
    quiet = (price, price, price, price)
    rows = [quiet, straddle, quiet] if on_entry_bar else [quiet, quiet, straddle]
    bars = bars_from(price, [(0.0, 0.0, 0.0, 0.0)] * len(rows))
    bars.loc[:, :] = rows
    signals = signals_from(
        bars.index, [(direction, 1.0, sl, tp, 0)] + [(0, 1.0, sl, tp, 0)] * (len(rows) - 1)
    )

    trade = backtest(bars, signals, fee=0.0).trades.iloc[0]

    assert trade["exit_reason"] == "sl"
    assert trade["exit_price"] == price * (1.0 - direction * sl)


@SETTINGS
@given(
    direction=st.sampled_from([-1, 1]),
    price=st.floats(1.0, 1_000.0),
    sl=st.floats(0.005, 0.05),  # wider than the entry slippage, so the entry bar cannot stop out
    gap=st.floats(0.0, 0.2),
    slippage=st.sampled_from([0.0, 1e-4, 1e-3]),
)
def test_a_gap_through_the_stop_fills_at_the_open(
    direction: int, price: float, sl: float, gap: float, slippage: float
) -> None:
    entry = price * (1.0 + direction * slippage)
    gap_open = entry * (1.0 - direction * sl) * (1.0 - direction * gap)  # at or beyond the stop
    low, high = sorted((gap_open, gap_open * (1.0 - direction * 0.01)))
    bars = bars_from(price, [(0.0, 0.0, 0.0, 0.0)] * 3)
    bars.loc[:, :] = [
        (price, price, price, price),
        (price, price, price, price),
        (gap_open, high, low, gap_open),
    ]
    signals = signals_from(
        bars.index, [(direction, 1.0, sl, 1.0, 0), (0, 1.0, sl, 1.0, 0), (0, 1.0, sl, 1.0, 0)]
    )

    trade = backtest(bars, signals, fee=0.0, slippage=slippage).trades.iloc[0]

    assert trade["exit_reason"] == "sl"
    assert trade["exit_time"] == bars.index[2]
    assert trade["exit_price"] == gap_open * (1.0 - direction * slippage)


@SETTINGS
@given(scenario=scenarios())
def test_every_stop_exit_takes_sl_first_and_fills_a_gap_at_the_open(scenario: Scenario) -> None:
    trades = scenario.run().trades
    entry, exit_ = bar_positions(scenario.bars, trades)
    for k in np.flatnonzero(trades["exit_reason"].isin(["sl", "tp"]).to_numpy()):
        d, e, x = int(trades["side"].iloc[k]), entry[k], exit_[k]
        decided = scenario.signals.iloc[e - 1]
        sl_price = trades["entry_price"].iloc[k] * (1.0 - d * decided["sl"])
        tp_price = trades["entry_price"].iloc[k] * (1.0 + d * decided["tp"])
        bar = scenario.bars.iloc[x]
        sl_touched = bar["low"] <= sl_price if d > 0 else bar["high"] >= sl_price
        assert (trades["exit_reason"].iloc[k] == "sl") == sl_touched
        barrier = sl_price if sl_touched else tp_price
        gapped = d * (bar["open"] - barrier) <= 0 if sl_touched else d * (bar["open"] - barrier) >= 0
        raw = bar["open"] if gapped else barrier
        assert trades["exit_price"].iloc[k] == raw * (1.0 - d * scenario.slippage)


@SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_no_trade_depends_on_any_bar_after_its_decision_bar(scenario: Scenario, data: st.DataObject) -> None:
    n = len(scenario.bars)
    m = data.draw(st.integers(1, n - 1), label="first changed bar")  # decisions up to bar m - 1 are kept
    tail = data.draw(st.lists(moves, min_size=n - m, max_size=n - m), label="new bars")
    new_bars = bars_from(float(scenario.bars["close"].iloc[m - 1]), tail).set_axis(scenario.bars.index[m:])
    bars = pd.concat([scenario.bars.iloc[:m], new_bars])
    new_decisions = data.draw(st.lists(decisions, min_size=n - m, max_size=n - m), label="new decisions")
    signals = pd.concat([scenario.signals.iloc[:m], signals_from(bars.index[m:], new_decisions)])

    before = scenario.run()
    after = Scenario(bars, signals, scenario.fee, scenario.slippage).run()

    cutoff = bars.index[m]
    closed_before = before.trades[
        (before.trades["exit_time"] < cutoff) & (before.trades["exit_reason"] != "open")
    ]
    pd.testing.assert_frame_equal(closed_before, after.trades.iloc[: len(closed_before)])
    entry_columns = ["entry_time", "side", "entry_price", "qty"]
    entered_before = before.trades.loc[before.trades["entry_time"] < cutoff, entry_columns]
    pd.testing.assert_frame_equal(entered_before, after.trades.loc[: len(entered_before) - 1, entry_columns])
    np.testing.assert_array_equal(before.equity.to_numpy()[:m], after.equity.to_numpy()[:m])


@SETTINGS
@given(scenario=scenarios())
def test_equity_is_continuous_with_the_trade_pnl(scenario: Scenario) -> None:
    result = scenario.run()
    trades, bars = result.trades, scenario.bars
    entry, exit_ = bar_positions(bars, trades)
    close = bars["close"].to_numpy()
    is_open = (trades["exit_reason"] == "open").to_numpy()
    expected = np.full(len(bars), INITIAL)
    for k in range(len(trades)):
        row = trades.iloc[k]
        entry_fee = row["qty"] * row["entry_price"] * scenario.fee
        held_until = len(bars) if is_open[k] else exit_[k]
        marks = np.arange(entry[k], held_until)
        expected[marks] += row["side"] * row["qty"] * (close[marks] - row["entry_price"]) - entry_fee
        if not is_open[k]:
            expected[exit_[k] :] += row["pnl"]

    np.testing.assert_allclose(result.equity.to_numpy(), expected, rtol=1e-9, atol=1e-9 * INITIAL)
    assert np.isclose(result.equity.iloc[-1], INITIAL + trades["pnl"].sum(), rtol=1e-12, atol=1e-9 * INITIAL)


@SETTINGS
@given(scenario=scenarios())
def test_one_position_at_a_time_sized_as_a_fraction_of_equity_at_the_fill(scenario: Scenario) -> None:
    trades = scenario.run().trades
    entry, exit_ = bar_positions(scenario.bars, trades)
    assert np.all(entry[1:] >= exit_[:-1])
    realized = INITIAL + np.concatenate([[0.0], np.cumsum(trades["pnl"].to_numpy())[:-1]])
    size = scenario.signals["size"].to_numpy()[entry - 1]
    notional = trades["qty"].to_numpy() * trades["entry_price"].to_numpy()
    np.testing.assert_allclose(notional, size * realized, rtol=1e-9)


@SETTINGS
@given(scenario=scenarios(), step=st.sampled_from([0.001, 0.01, 1.0]))
def test_swap_entries_are_sized_on_the_equity_and_close_of_their_decision_bar(
    scenario: Scenario, step: float
) -> None:
    swap = OrderRules(amount_step=step, min_qty=0.0, min_notional=0.0, shorts=True, size_at_close=True)
    result = backtest(
        scenario.bars, scenario.signals, fee=scenario.fee, slippage=scenario.slippage, initial_equity=INITIAL,
        rules=swap,
    )  # fmt: skip
    trades = result.trades
    decided = bar_positions(scenario.bars, trades)[0] - 1
    equity = result.equity.to_numpy()[decided]  # cash plus the open position marked at the decision close
    wanted = (
        scenario.signals["size"].to_numpy()[decided] * equity / scenario.bars["close"].to_numpy()[decided]
    )
    steps = np.floor(wanted / step * (1.0 + 1e-12))
    np.testing.assert_allclose(trades["qty"].to_numpy(), steps * step, rtol=1e-12)
    # the fill is still the next open, worsened by the slippage
    opens = scenario.bars["open"].to_numpy()[decided + 1]
    side = trades["side"].to_numpy()
    np.testing.assert_allclose(trades["entry_price"].to_numpy(), opens * (1 + side * scenario.slippage))


@given(scenario=scenarios())
def test_the_kernels_running_drawdown_is_the_metric_of_its_equity_curve(scenario: Scenario) -> None:
    result = scenario.run()
    assert result.metrics.max_drawdown == max_drawdown(result.equity)
    assert result.trades is result.trades  # built once, on first access
    assert compute_metrics(result.trades, result.equity) == result.metrics


@SETTINGS
@given(scenario=scenarios(), data=st.data())
def test_one_bad_bar_or_signal_row_anywhere_is_named_and_nothing_is_returned(
    scenario: Scenario, data: st.DataObject
) -> None:
    """The kernel checks each bar and signal row in its one pass: a bad one at any row, the first and the last
    included, stops it; ``backtest`` then names that row as the scans do."""
    bars, signals = scenario.bars.copy(), scenario.signals.copy()
    row = data.draw(st.integers(0, len(bars) - 1), label="row")
    if data.draw(st.booleans(), label="bad bar"):
        bars.iloc[row, data.draw(st.integers(0, 3), label="price")] = data.draw(
            st.sampled_from([np.nan, np.inf, -1.0, 0.0]), label="value"
        )
        expected = rf"bars row {row} "
    else:
        signals.iloc[row, 0] = 1
        column = data.draw(st.sampled_from(["size", "sl", "tp"]), label="column")
        signals.iloc[row, signals.columns.get_loc(column)] = np.nan
        expected = rf"signals row {row} "
    with pytest.raises(DataError, match=expected):
        backtest(bars, signals)
