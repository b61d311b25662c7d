"""Each fill rule of the execution model on hand-made bars, and input validation of ``backtest()``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalpbot.core.backtest.enums import NO_FUNDING, NO_ORDER_RULES, OrderRules, SimulationStatus
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.backtest.nb import simulate_nb
from scalpbot.errors import ConfigError, DataError

Bar = tuple[float, float, float, float]


def make_bars(rows: list[Bar]) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=len(rows), freq="1min", tz="UTC")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index)


def make_signals(bars: pd.DataFrame, decisions: dict[int, dict[str, float]]) -> pd.DataFrame:
    """Return signals with side 0 everywhere except ``decisions[t]`` (side, and size/sl/tp/max_hold overrides)."""
    n = len(bars)
    frame = pd.DataFrame(
        {
            "side": np.zeros(n, np.int8),
            "size": np.ones(n),
            "sl": np.full(n, 0.01),
            "tp": np.full(n, 0.01),
            "max_hold": np.zeros(n, np.int64),
        },
        index=bars.index,
    )
    for t, values in decisions.items():
        for column, value in values.items():
            frame.iloc[t, frame.columns.get_loc(column)] = value
    return frame


def run(rows: list[Bar], decisions: dict[int, dict[str, float]], **options: float) -> pd.DataFrame:
    bars = make_bars(rows)
    result = backtest(
        bars, make_signals(bars, decisions), fee=options.pop("fee", 0.0), size_in="qty", **options
    )
    return result.trades


FLAT: Bar = (100.0, 100.0, 100.0, 100.0)


def test_long_fills_at_next_open_and_exits_at_take_profit() -> None:
    trades = run([FLAT, (100.0, 100.5, 99.5, 100.2), (100.2, 101.5, 100.0, 101.2)], {0: {"side": 1}})
    trade = trades.iloc[0]
    assert (trade["side"], trade["entry_price"], trade["exit_reason"]) == (1, 100.0, "tp")
    assert trade["exit_price"] == pytest.approx(101.0)
    assert trade["exit_time"] == pd.Timestamp("2024-01-01 00:02", tz="UTC")
    assert trade["pnl"] == pytest.approx(1.0)


def test_short_exits_at_its_stop_loss_price() -> None:
    trades = run([FLAT, (100.0, 100.5, 99.5, 100.2), (100.2, 101.5, 100.0, 101.2)], {0: {"side": -1}})
    trade = trades.iloc[0]
    assert (trade["side"], trade["exit_reason"]) == (-1, "sl")
    assert trade["exit_price"] == pytest.approx(101.0)
    assert trade["pnl"] == pytest.approx(-1.0)


def test_stop_loss_wins_when_both_barriers_inside_bar() -> None:
    trades = run([FLAT, (100.0, 100.2, 99.8, 100.0), (100.0, 102.0, 98.0, 100.0)], {0: {"side": 1}})
    assert trades["exit_reason"].tolist() == ["sl"]
    assert trades["exit_price"].iloc[0] == pytest.approx(99.0)


def test_stops_are_checked_on_the_entry_bar_after_the_open_fill() -> None:
    trades = run([FLAT, (100.0, 100.2, 98.5, 99.0), FLAT], {0: {"side": 1}})
    trade = trades.iloc[0]
    assert trade["entry_time"] == trade["exit_time"] == pd.Timestamp("2024-01-01 00:01", tz="UTC")
    assert trade["exit_reason"] == "sl"


def test_a_bar_opening_beyond_the_stop_loss_fills_at_that_open() -> None:
    trades = run([FLAT, (100.0, 100.2, 99.8, 100.0), (97.0, 97.5, 96.0, 97.2)], {0: {"side": 1}})
    assert (trades["exit_reason"].iloc[0], trades["exit_price"].iloc[0]) == ("sl", 97.0)


def test_a_bar_opening_beyond_the_take_profit_fills_at_that_open() -> None:
    trades = run([FLAT, (100.0, 100.2, 99.8, 100.0), (97.0, 97.5, 96.0, 97.2)], {0: {"side": -1}})
    assert (trades["exit_reason"].iloc[0], trades["exit_price"].iloc[0]) == ("tp", 97.0)


def test_stop_loss_wins_even_on_a_bar_opening_beyond_the_take_profit() -> None:
    trades = run([FLAT, (100.0, 100.2, 99.8, 100.0), (102.0, 102.5, 98.5, 99.0)], {0: {"side": 1}})
    assert (trades["exit_reason"].iloc[0], trades["exit_price"].iloc[0]) == ("sl", 99.0)


def test_time_stop_exits_at_the_open_max_hold_bars_after_entry() -> None:
    rows = [FLAT, *[(100.0 + i / 10, 100.3 + i / 10, 99.8 + i / 10, 100.1 + i / 10) for i in range(6)]]
    trades = run(rows, {0: {"side": 1, "max_hold": 3}})
    trade = trades.iloc[0]
    assert trade["exit_reason"] == "time"
    assert trade["exit_time"] - trade["entry_time"] == pd.Timedelta(minutes=3)
    assert trade["exit_price"] == rows[4][0]


def test_opposite_signal_closes_and_reverses_at_the_next_open() -> None:
    rows = [FLAT, FLAT, FLAT, (100.5, 100.6, 100.4, 100.5), FLAT]
    trades = run(rows, {0: {"side": 1}, 2: {"side": -1}})
    assert trades["side"].tolist() == [1, -1]
    assert trades["exit_reason"].tolist() == ["signal", "open"]
    assert (
        trades["exit_time"].iloc[0]
        == trades["entry_time"].iloc[1]
        == pd.Timestamp("2024-01-01 00:03", tz="UTC")
    )
    assert trades["exit_price"].iloc[0] == trades["entry_price"].iloc[1] == 100.5


def test_same_direction_signal_is_ignored_while_in_a_position() -> None:
    trades = run([FLAT, FLAT, FLAT, FLAT], {0: {"side": 1}, 1: {"side": 1, "size": 5.0}})
    assert len(trades) == 1
    assert trades["qty"].iloc[0] == 1.0


def test_pending_time_exit_wins_over_a_stop_gap_at_the_same_open() -> None:
    rows = [FLAT, FLAT, FLAT, (95.0, 95.5, 94.0, 95.0)]
    trades = run(rows, {0: {"side": 1, "max_hold": 2}})
    assert (trades["exit_reason"].iloc[0], trades["exit_price"].iloc[0]) == ("time", 95.0)


def test_time_exit_with_a_same_direction_signal_re_enters_at_the_same_open() -> None:
    trades = run([FLAT, FLAT, FLAT, FLAT], {0: {"side": 1, "max_hold": 2}, 2: {"side": 1}})
    assert trades["exit_reason"].tolist() == ["time", "open"]
    assert trades["exit_time"].iloc[0] == trades["entry_time"].iloc[1]


def test_opposite_signal_with_zero_size_only_closes_the_position() -> None:
    trades = run([FLAT, FLAT, FLAT, FLAT], {0: {"side": 1}, 1: {"side": -1, "size": 0.0}})
    assert trades["exit_reason"].tolist() == ["signal"]


def test_a_signal_on_the_last_bar_is_never_filled() -> None:
    assert run([FLAT, FLAT], {1: {"side": 1}}).empty


def test_a_position_open_at_the_end_is_marked_at_the_last_close() -> None:
    bars = make_bars([FLAT, FLAT, (100.0, 100.5, 99.5, 100.4)])
    result = backtest(
        bars, make_signals(bars, {0: {"side": 1}}), fee=0.001, size_in="qty", initial_equity=1_000.0
    )
    trade = result.trades.iloc[0]
    assert (trade["exit_reason"], trade["exit_price"]) == ("open", 100.4)
    assert trade["fees"] == pytest.approx(0.1)  # entry side only
    assert trade["pnl"] == pytest.approx(0.4 - 0.1)
    assert result.equity.iloc[-1] == pytest.approx(1_000.0 + 0.4 - 0.1)


def test_fees_are_charged_on_the_notional_of_each_fill() -> None:
    trades = run([FLAT, (100.0, 100.2, 99.8, 100.0), (100.0, 101.5, 100.0, 101.2)], {0: {"side": 1, "size": 2.0}},
                 fee=0.001)  # fmt: skip
    trade = trades.iloc[0]
    assert trade["fees"] == pytest.approx(2 * 100.0 * 0.001 + 2 * 101.0 * 0.001)
    assert trade["pnl"] == pytest.approx(2 * 1.0 - trade["fees"])


def test_slippage_worsens_entry_and_signal_fills_but_not_the_final_mark() -> None:
    rows = [FLAT, FLAT, (100.5, 100.6, 100.4, 100.5), (100.5, 100.6, 100.1, 100.2)]
    trades = run(rows, {0: {"side": 1}, 1: {"side": -1}}, slippage=0.001)
    long, short = trades.iloc[0], trades.iloc[1]
    assert long["entry_price"] == pytest.approx(100.1)  # bought higher
    assert long["exit_price"] == short["entry_price"] == pytest.approx(100.5 * 0.999)  # sold lower
    assert (short["exit_reason"], short["exit_price"]) == ("open", 100.2)


def test_slippage_worsens_stop_fills() -> None:
    trades = run([FLAT, FLAT, (100.0, 100.2, 98.0, 99.0)], {0: {"side": 1}}, slippage=0.001)
    assert trades["exit_reason"].iloc[0] == "sl"
    assert trades["exit_price"].iloc[0] == pytest.approx(100.1 * 0.99 * 0.999)


def test_size_is_a_fraction_of_equity_committed_as_notional_at_the_fill() -> None:
    bars = make_bars([FLAT, (200.0, 200.0, 200.0, 200.0), (200.0, 200.0, 200.0, 200.0)])
    result = backtest(
        bars, make_signals(bars, {0: {"side": 1, "size": 0.5}}), fee=0.0, initial_equity=1_000.0
    )
    assert result.trades["qty"].iloc[0] * result.trades["entry_price"].iloc[0] == pytest.approx(500.0)


def test_a_swap_entry_is_sized_at_the_decision_close_and_fills_at_the_next_open() -> None:
    bars = make_bars([FLAT, (200.0, 200.0, 200.0, 200.0), (200.0, 200.0, 200.0, 200.0)])
    signals = make_signals(bars, {0: {"side": -1, "size": 0.5, "sl": np.inf, "tp": np.inf}})
    swap = OrderRules(amount_step=0.1, min_qty=0.0, min_notional=0.0, shorts=True, size_at_close=True)
    trades = backtest(bars, signals, fee=0.0, initial_equity=1_000.0, rules=swap).trades
    # 0.5 x 1,000 / 100 (the decision close) = 5 contracts' worth, filled at 200: notional 1,000
    assert (trades["qty"].iloc[0], trades["entry_price"].iloc[0]) == (5.0, 200.0)
    spot_like = backtest(
        bars, signals, fee=0.0, initial_equity=1_000.0, rules=swap._replace(size_at_close=False)
    )
    assert spot_like.trades["qty"].iloc[0] == 2.5  # sized at the fill
    # the minimum notional is checked where the quantity was sized: 5 x 100 < 600, although 5 x 200 is not
    strict = swap._replace(min_notional=600.0)
    assert backtest(bars, signals, fee=0.0, initial_equity=1_000.0, rules=strict).trades.empty


def test_a_swap_reversal_is_sized_on_equity_marked_at_the_decision_close() -> None:
    rows = [FLAT, FLAT, (110.0, 120.0, 110.0, 120.0), (90.0, 90.0, 90.0, 90.0), (90.0, 90.0, 90.0, 90.0)]
    bars = make_bars(rows)
    decisions = {0: {"side": 1, "size": 0.5, "sl": np.inf, "tp": np.inf}, 2: {"side": -1, "size": 0.5}}
    swap = OrderRules(amount_step=0.01, min_qty=0.0, min_notional=0.0, shorts=True, size_at_close=True)
    trades = backtest(
        bars, make_signals(bars, decisions), fee=0.001, initial_equity=1_000.0, rules=swap
    ).trades
    assert trades["side"].tolist() == [1, -1] and trades["exit_reason"].iloc[0] == "signal"
    # the long (5 at 100, fee 0.5) marked at the close of 120: equity 1,000 - 0.5 + 5 x 20 = 1,099.5
    assert trades["qty"].iloc[1] == pytest.approx(np.floor(0.5 * 1_099.5 / 120.0 / 0.01) * 0.01, abs=1e-12)
    assert trades["entry_price"].iloc[1] == 90.0


def test_infinite_barriers_never_stop_a_trade() -> None:
    rows = [FLAT, (100.0, 150.0, 50.0, 100.0), (100.0, 150.0, 50.0, 100.0)]
    trades = run(rows, {0: {"side": 1, "sl": np.inf, "tp": np.inf}})
    assert trades["exit_reason"].tolist() == ["open"]


def test_kernel_returns_a_status_instead_of_raising_on_length_mismatch() -> None:
    prices = np.full(3, 100.0)
    records, _, _, status = simulate_nb(
        prices, prices, prices, prices[:2], np.zeros(3, np.int8), prices, prices, prices, np.zeros(3, np.int64),
        0.0, 0.0, 1.0, False, NO_ORDER_RULES, NO_FUNDING, np.zeros(1),
    )  # fmt: skip
    assert status == SimulationStatus.length_mismatch
    assert len(records) == 0


def test_entries_are_skipped_once_equity_is_depleted() -> None:
    rows = [FLAT, FLAT, *[(300.0, 300.0, 300.0, 300.0)] * 3]
    bars = make_bars(rows)
    signals = make_signals(bars, {0: {"side": -1, "sl": np.inf}, 2: {"side": 1}})
    result = backtest(bars, signals, fee=0.0, initial_equity=100.0)
    assert result.status == "equity_depleted"
    assert result.trades["side"].tolist() == [-1]


# -- input validation ---------------------------------------------------------------------------------------------


@pytest.fixture
def bars() -> pd.DataFrame:
    return make_bars([FLAT, (100.0, 101.0, 99.0, 100.5), (100.5, 101.0, 100.0, 100.8)])


def test_bars_with_a_nan_price_are_rejected_with_the_row_and_time(bars: pd.DataFrame) -> None:
    bars.iloc[1, 2] = np.nan
    with pytest.raises(DataError, match=r"row 1 \(2024-01-01 00:01:00\+00:00\).*NaN"):
        backtest(bars, make_signals(bars, {}))


def test_bars_whose_high_is_below_the_close_are_rejected(bars: pd.DataFrame) -> None:
    bars.iloc[2, 1] = 100.6
    with pytest.raises(DataError, match="high is below open or close"):
        backtest(bars, make_signals(bars, {}))


def test_unsorted_bars_are_rejected_with_how_to_sort_them(bars: pd.DataFrame) -> None:
    shuffled = bars.iloc[[0, 2, 1]]
    with pytest.raises(DataError, match="sort_index"):
        backtest(shuffled, make_signals(shuffled, {}))


def test_bars_without_a_utc_index_are_rejected(bars: pd.DataFrame) -> None:
    naive = bars.tz_localize(None)
    with pytest.raises(DataError, match="UTC"):
        backtest(naive, make_signals(naive, {}))


def test_a_misspelled_bar_column_gets_a_did_you_mean_hint(bars: pd.DataFrame) -> None:
    renamed = bars.rename(columns={"close": "Close"})
    with pytest.raises(DataError, match="missing column 'close' \\(did you mean 'Close'\\?\\)"):
        backtest(renamed, make_signals(bars, {}))


def test_signals_on_another_index_are_rejected_with_the_first_difference(bars: pd.DataFrame) -> None:
    signals = make_signals(bars, {}).shift(1, freq="1min")
    with pytest.raises(DataError, match="first difference at row 0.*reindex"):
        backtest(bars, signals)


def test_a_non_positive_stop_loss_is_rejected(bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"row 0 .*sl must be > 0"):
        backtest(bars, make_signals(bars, {0: {"side": 1, "sl": 0.0}}))


def test_a_negative_size_is_rejected(bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="size must be finite and >= 0"):
        backtest(bars, make_signals(bars, {1: {"side": -1, "size": -1.0}}))


def test_a_side_outside_minus_one_to_one_is_rejected(bars: pd.DataFrame) -> None:
    signals = make_signals(bars, {}).astype({"side": np.int64})
    signals.iloc[1, 0] = 2
    with pytest.raises(DataError, match="side must be -1, 0 or \\+1"):
        backtest(bars, signals)


def test_an_unknown_signal_column_gets_a_did_you_mean_hint(bars: pd.DataFrame) -> None:
    signals = make_signals(bars, {}).rename(columns={"max_hold": "max_hld"})
    with pytest.raises(DataError, match="unknown column 'max_hld' \\(did you mean 'max_hold'\\?\\)"):
        backtest(bars, signals)


def test_rows_without_a_signal_may_leave_stops_and_hold_undefined(bars: pd.DataFrame) -> None:
    signals = make_signals(bars, {0: {"side": 1}}).astype({"max_hold": np.float64})
    signals.iloc[1:, signals.columns.get_loc("sl")] = np.nan
    signals.iloc[1:, signals.columns.get_loc("max_hold")] = np.nan
    assert len(backtest(bars, signals).trades) == 1


def test_bad_options_raise_config_error_saying_how_to_fix_them(bars: pd.DataFrame) -> None:
    signals = make_signals(bars, {})
    with pytest.raises(ConfigError, match="fee must be"):
        backtest(bars, signals, fee=-0.001)
    with pytest.raises(ConfigError, match="did you mean 'qty'"):
        backtest(bars, signals, size_in="qyt")  # type: ignore[arg-type]
