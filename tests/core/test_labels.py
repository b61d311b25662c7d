"""Triple-barrier labels: agreement with the backtest kernel, no look-ahead, validity, ties, gaps and fees."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.backtest.enums import ExitReason, ExitReasonT
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.features import build_features
from scalpbot.core.labels import (
    LABEL_LONG,
    LABEL_NEITHER,
    LABEL_SHORT,
    barrier_volatility,
    triple_barrier_labels,
)
from scalpbot.errors import ConfigError, DataError

Bar = tuple[float, float, float, float]


def make_bars(rows: list[Bar]) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=len(rows), freq="1min", tz="UTC", name="timestamp")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index)


def one_percent(bars: pd.DataFrame) -> np.ndarray:
    return np.full(len(bars), 0.01)


def trade_of(
    bars: pd.DataFrame, direction: int, sl: float, tp: float, horizon: int, fee: float, slip: float
) -> dict:
    """Backtest one trade decided on the first bar; return its exit reason, exit row and PnL."""
    signals = pd.DataFrame(
        {"side": np.int8(0), "size": 1.0, "sl": sl, "tp": tp, "max_hold": np.int64(horizon)}, index=bars.index
    )
    signals.iloc[0, 0] = direction
    trades = backtest(bars, signals, fee=fee, slippage=slip, size_in="qty").trades
    assert len(trades) == 1
    trade = trades.iloc[0]
    return {
        "reason": ExitReasonT._fields.index(str(trade["exit_reason"])),
        "exit_row": bars.index.get_loc(trade["exit_time"]),
        "won": trade["exit_reason"] == "tp" and trade["pnl"] > 0.0,
    }


@settings(max_examples=60, deadline=None)
@given(
    horizon=st.sampled_from([3, 10, 30]),
    k_sl=st.floats(0.2, 3.0),
    k_tp=st.floats(0.2, 3.0),
    fee=st.sampled_from([0.0, 0.0004, 0.001]),
    slippage=st.sampled_from([0.0, 0.0002]),
    data=st.data(),
)
def test_labels_agree_with_single_trades_in_the_backtest_kernel(
    sample_bars: pd.DataFrame,
    horizon: int,
    k_sl: float,
    k_tp: float,
    fee: float,
    slippage: float,
    data: st.DataObject,
) -> None:
    bars = sample_bars.iloc[:5000]
    labels = triple_barrier_labels(bars, horizon=horizon, k_sl=k_sl, k_tp=k_tp, fee=fee, slippage=slippage)
    sigma = barrier_volatility(bars, horizon=horizon)
    for t in data.draw(st.lists(st.integers(60, len(bars) - horizon - 2), min_size=1, max_size=4), label="t"):
        window = bars.iloc[t : t + horizon + 2]  # decision, entry .. t+H, and the bar of the time exit
        row = labels.iloc[t]
        trades = {
            side: trade_of(window, direction, k_sl * sigma[t], k_tp * sigma[t], horizon, fee, slippage)
            for side, direction in (("long", 1), ("short", -1))
        }
        for side, trade in trades.items():
            assert row[f"{side}_exit"] == trade["reason"]
            expected_bars = horizon if trade["reason"] == ExitReason.time else trade["exit_row"]
            assert row[f"{side}_bars"] == expected_bars
        long_won, short_won = trades["long"]["won"], trades["short"]["won"]
        if long_won and short_won:
            first = row["long_bars"] - row["short_bars"]
            expected = LABEL_NEITHER if first == 0 else (LABEL_LONG if first < 0 else LABEL_SHORT)
        else:
            expected = LABEL_LONG if long_won else LABEL_SHORT if short_won else LABEL_NEITHER
        assert row["label"] == expected


@settings(max_examples=40, deadline=None)
@given(t=st.integers(0, 1500), horizon=st.integers(1, 40), factor=st.floats(0.5, 2.0))
def test_changing_bars_after_t_plus_horizon_never_changes_the_label_of_t(
    sample_bars: pd.DataFrame, t: int, horizon: int, factor: float
) -> None:
    bars = sample_bars.iloc[:1600]
    changed = bars.copy()
    changed.iloc[t + horizon + 1 :, :4] *= factor
    before = triple_barrier_labels(bars, horizon=horizon, k_sl=1.0, k_tp=1.5, fee=0.0004)
    after = triple_barrier_labels(changed, horizon=horizon, k_sl=1.0, k_tp=1.5, fee=0.0004)
    pd.testing.assert_series_equal(before.iloc[t], after.iloc[t])
    changed_after_t = bars.copy()
    changed_after_t.iloc[t + 1 :, :4] *= factor
    sigma = barrier_volatility(bars, horizon=horizon)[: t + 1]
    assert np.array_equal(
        sigma, barrier_volatility(changed_after_t, horizon=horizon)[: t + 1], equal_nan=True
    )


def test_the_last_horizon_rows_are_invalid_and_the_one_before_is_valid(sample_bars: pd.DataFrame) -> None:
    horizon = 30
    labels = triple_barrier_labels(sample_bars.iloc[:3000], horizon=horizon, k_sl=1.0, k_tp=1.0)
    tail = labels.iloc[-horizon:]
    assert (tail["label"] == -1).all()
    assert tail["fwd_vol"].isna().all()
    assert (tail[["long_exit", "short_exit", "long_bars", "short_bars"]] == -1).all().all()
    assert labels["label"].iloc[-horizon - 1] in (LABEL_SHORT, LABEL_NEITHER, LABEL_LONG)
    assert np.isfinite(labels["fwd_vol"].iloc[-horizon - 1])


def test_rows_without_a_volatility_yet_are_invalid_but_keep_their_forward_volatility(
    sample_bars: pd.DataFrame,
) -> None:
    labels = triple_barrier_labels(sample_bars.iloc[:500], horizon=10, k_sl=1.0, k_tp=1.0)
    assert (labels["label"].iloc[:60] == -1).all()
    assert (labels["label"].iloc[60:-10] >= 0).all()
    assert labels["fwd_vol"].iloc[:-10].notna().all()


def test_columns_and_dtypes(sample_bars: pd.DataFrame) -> None:
    labels = triple_barrier_labels(sample_bars.iloc[:200], horizon=5, k_sl=1.0, k_tp=1.0)
    assert labels.dtypes.to_dict() == {
        "label": np.int8,
        "fwd_vol": np.float64,
        "long_exit": np.int8,
        "long_bars": np.int16,
        "short_exit": np.int8,
        "short_bars": np.int16,
    }
    assert labels.index.equals(sample_bars.index[:200])


def test_stop_loss_wins_when_both_barriers_lie_inside_the_entry_bar() -> None:
    bars = make_bars([(100, 100, 100, 100), (100, 101.5, 98.5, 100), (100, 100, 100, 100)])
    row = triple_barrier_labels(bars, horizon=1, k_sl=1.0, k_tp=1.0, vol=one_percent(bars)).iloc[0]
    assert (row["long_exit"], row["short_exit"]) == (ExitReason.sl, ExitReason.sl)
    assert (row["long_bars"], row["short_bars"]) == (1, 1)
    assert row["label"] == LABEL_NEITHER


def test_a_bar_gapping_beyond_take_profit_wins_and_beyond_stop_loss_loses() -> None:
    up = make_bars([(100, 100, 100, 100), (100, 100.5, 99.5, 100), (102, 102, 102, 102)])
    row = triple_barrier_labels(up, horizon=2, k_sl=1.0, k_tp=1.0, vol=one_percent(up)).iloc[0]
    assert (row["long_exit"], row["short_exit"], row["long_bars"]) == (ExitReason.tp, ExitReason.sl, 2)
    assert row["label"] == LABEL_LONG
    down = make_bars([(100, 100, 100, 100), (100, 100.5, 99.5, 100), (98, 98, 98, 98)])
    assert (
        triple_barrier_labels(down, horizon=2, k_sl=1.0, k_tp=1.0, vol=one_percent(down))["label"].iloc[0]
        == 0
    )


def test_a_take_profit_that_does_not_cover_round_trip_fees_is_no_win() -> None:
    bars = make_bars([(100, 100, 100, 100), (100, 101.2, 99.5, 101), (101, 101, 101, 101)])
    fee = 0.006  # 1 % TP against about 1.2 % of fees
    row = triple_barrier_labels(bars, horizon=2, k_sl=1.0, k_tp=1.0, vol=one_percent(bars), fee=fee).iloc[0]
    assert row["long_exit"] == ExitReason.tp
    assert row["label"] == LABEL_NEITHER
    gap = make_bars([(100, 100, 100, 100), (100, 100.5, 99.5, 100), (102, 102, 102, 102)])
    assert (
        triple_barrier_labels(gap, horizon=2, k_sl=1.0, k_tp=1.0, vol=one_percent(gap), fee=fee)[
            "label"
        ].iloc[0]
        == 2
    )


def test_when_both_sides_win_the_earlier_take_profit_labels_and_the_same_bar_is_neither() -> None:
    wide_stops = {"k_sl": 3.0, "k_tp": 1.0}
    earlier_long = make_bars([(100, 100, 100, 100), (100, 101.2, 99.5, 100), (100, 100, 98.8, 99), (99,) * 4])
    labels = triple_barrier_labels(earlier_long, horizon=2, vol=one_percent(earlier_long), **wide_stops)
    assert (labels["long_bars"].iloc[0], labels["short_bars"].iloc[0]) == (1, 2)
    assert labels["label"].iloc[0] == LABEL_LONG
    same_bar = make_bars([(100, 100, 100, 100), (100, 101.2, 98.8, 100), (100,) * 4])
    labels = triple_barrier_labels(same_bar, horizon=1, vol=one_percent(same_bar), **wide_stops)
    assert (labels["long_exit"].iloc[0], labels["short_exit"].iloc[0]) == (ExitReason.tp, ExitReason.tp)
    assert labels["label"].iloc[0] == LABEL_NEITHER


def test_no_barrier_within_the_horizon_is_a_time_exit_and_neither() -> None:
    bars = make_bars([(100, 100, 100, 100), *[(100, 100.5, 99.5, 100)] * 3])
    row = triple_barrier_labels(bars, horizon=3, k_sl=1.0, k_tp=1.0, vol=one_percent(bars)).iloc[0]
    assert (row["long_exit"], row["short_exit"], row["long_bars"], row["short_bars"]) == (
        ExitReason.time,
    ) * 2 + (3, 3)
    assert row["label"] == LABEL_NEITHER


def test_forward_volatility_is_the_realized_volatility_over_the_horizon(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:400]
    horizon = 15
    fwd = triple_barrier_labels(bars, horizon=horizon, k_sl=1.0, k_tp=1.0)["fwd_vol"].to_numpy()
    ret = np.diff(np.log(bars["close"].to_numpy()))  # ret[s - 1] is the return of bar s
    expected = [np.sqrt(np.sum(ret[t : t + horizon] ** 2)) for t in range(len(bars) - horizon)]
    np.testing.assert_allclose(fwd[:-horizon], expected, rtol=1e-10)


def test_barrier_volatility_is_the_rv_60_feature_scaled_to_the_horizon(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:2000]
    sigma = barrier_volatility(bars, horizon=25)
    assert np.isnan(sigma[:60]).all()
    assert np.isfinite(sigma[60:]).all()
    rv = build_features(bars)["rv_60"].to_numpy()
    np.testing.assert_allclose(sigma[1500:] / 5.0, rv[1500:], rtol=1e-14)


def test_bad_options_raise_a_config_error_and_bad_bars_a_data_error(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:100]
    good = {"horizon": 10, "k_sl": 1.0, "k_tp": 1.0}
    for change, message in (
        ({"horizon": 0}, "horizon"),
        ({"horizon": 2.5}, "horizon"),
        ({"k_sl": 0.0}, "k_sl"),
        ({"k_tp": float("nan")}, "k_tp"),
        ({"fee": -0.1}, "fee"),
        ({"slippage": 0.5}, "slippage"),
        ({"vol": np.ones(3)}, "one value per bar"),
    ):
        with pytest.raises(ConfigError, match=message):
            triple_barrier_labels(bars, **{**good, **change})
    with pytest.raises(ConfigError, match="window"):
        barrier_volatility(bars, horizon=10, window=1)
    broken = bars.copy()
    broken.iloc[7, 1] = broken.iloc[7, 2] * 0.5  # high below low
    with pytest.raises(DataError, match="row 7"):
        triple_barrier_labels(broken, **good)
