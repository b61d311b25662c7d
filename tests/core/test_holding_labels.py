"""Holding-period labels: agreement with the backtest kernel's time stop, no look-ahead, costs, spot, and why
they exist (a drift's label that does not fade when the market gets wilder)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.holding_labels import holding_labels
from scalpbot.core.labels import LABEL_LONG, LABEL_NEITHER, LABEL_SHORT, triple_barrier_labels
from scalpbot.errors import ConfigError, DataError


def continuous(bars: pd.DataFrame) -> pd.DataFrame:
    """Return ``bars`` with every bar opening at the previous close (the kernel's time stop at the next open
    then fills at the label's exit price)."""
    out = bars[["open", "high", "low", "close"]].copy()
    out["open"] = np.concatenate(([out["close"].iloc[0]], out["close"].to_numpy()[:-1]))
    out["high"] = out[["open", "high", "close"]].max(axis=1)
    out["low"] = out[["open", "low", "close"]].min(axis=1)
    return out


@settings(max_examples=25, deadline=None)
@given(
    horizon=st.integers(1, 60),
    fee=st.sampled_from([0.0, 0.0004, 0.001]),
    slippage=st.sampled_from([0.0, 0.0001, 0.0005]),
    data=st.data(),
)
def test_a_holding_label_is_the_net_return_of_the_kernels_trade_held_to_its_time_stop(
    sample_bars: pd.DataFrame, horizon: int, fee: float, slippage: float, data: st.DataObject
) -> None:
    bars = continuous(sample_bars.iloc[:3000])
    labels = holding_labels(bars, horizon=horizon, fee=fee, slippage=slippage)
    for t in data.draw(st.lists(st.integers(0, len(bars) - horizon - 2), min_size=1, max_size=4), label="t"):
        window = bars.iloc[t : t + horizon + 2]
        returns = {}
        for name, direction in (("long", 1), ("short", -1)):
            signals = pd.DataFrame(
                {"side": np.int8(0), "size": 1.0, "sl": np.inf, "tp": np.inf, "max_hold": np.int64(horizon)},
                index=window.index,
            )
            signals.iloc[0, 0] = direction
            trade = backtest(window, signals, fee=fee, slippage=slippage, size_in="qty").trades.iloc[0]
            assert trade["exit_reason"] == "time"
            returns[name] = trade["pnl"] / (trade["entry_price"] * trade["qty"])
            assert labels[f"{name}_return"].iloc[t] == pytest.approx(returns[name], rel=1e-9, abs=1e-12)
        expected = (
            LABEL_LONG if returns["long"] > 0 else LABEL_SHORT if returns["short"] > 0 else LABEL_NEITHER
        )
        assert labels["label"].iloc[t] == expected


@settings(max_examples=30, deadline=None)
@given(t=st.integers(0, 1500), horizon=st.integers(1, 40), factor=st.floats(0.5, 2.0))
def test_changing_bars_after_t_plus_horizon_never_changes_the_holding_label_of_t(
    sample_bars: pd.DataFrame, t: int, horizon: int, factor: float
) -> None:
    bars = sample_bars.iloc[:1600]
    changed = bars.copy()
    changed.iloc[t + horizon + 1 :, :4] *= factor
    before = holding_labels(bars, horizon=horizon, fee=0.0004)
    after = holding_labels(changed, horizon=horizon, fee=0.0004)
    pd.testing.assert_series_equal(before.iloc[t], after.iloc[t])


def test_the_last_horizon_rows_are_invalid_and_every_other_row_is_labelled(sample_bars: pd.DataFrame) -> None:
    labels = holding_labels(sample_bars.iloc[:500], horizon=10)
    assert (labels["label"].iloc[-10:] == -1).all()
    assert labels[["long_return", "short_return", "fwd_vol"]].iloc[-10:].isna().all().all()
    assert labels["label"].iloc[:-10].isin([LABEL_SHORT, LABEL_NEITHER, LABEL_LONG]).all()


def _ramp(step: float, n: int = 8) -> pd.DataFrame:
    close = 100.0 * (1.0 + step) ** np.arange(1, n + 1)
    open_ = np.concatenate(([100.0], close[:-1]))
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close), "close": close},
        index=index,
    )


def test_a_win_must_pay_the_round_trip_and_clear_the_smallest_move() -> None:
    up = _ramp(0.001)  # +0.1 % a bar: +0.3 % over 3 bars after the entry bar's open
    assert holding_labels(up, horizon=3)["label"].iloc[0] == LABEL_LONG
    # the round trip eats it: 2 x (0.1 % + 0.05 %) > 0.3 %
    assert holding_labels(up, horizon=3, fee=0.001, slippage=0.0005)["label"].iloc[0] == LABEL_NEITHER
    assert holding_labels(up, horizon=3, min_move=0.004)["label"].iloc[0] == LABEL_NEITHER
    down = _ramp(-0.001)
    assert holding_labels(down, horizon=3)["label"].iloc[0] == LABEL_SHORT
    assert holding_labels(down, horizon=3, shorts=False)["label"].iloc[0] == LABEL_NEITHER


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"horizon": 0}, "horizon"), ({"fee": -0.1}, "fee"), ({"slippage": float("nan")}, "slippage"),
     ({"min_move": 0.5}, "min_move")],
)  # fmt: skip
def test_bad_arguments_are_refused_with_the_field_named(
    sample_bars: pd.DataFrame, changes: dict[str, float], field: str
) -> None:
    arguments: dict[str, float] = {"horizon": 10, **changes}
    with pytest.raises(ConfigError, match=field):
        holding_labels(sample_bars.iloc[:100], **arguments)  # type: ignore[arg-type]
    broken = sample_bars.iloc[:100].copy()
    broken.iloc[5, 1] = broken.iloc[5, 2] / 2  # high under low
    with pytest.raises(DataError, match="row 5"):
        holding_labels(broken, horizon=10)


def test_a_drifts_holding_label_fades_less_than_its_barrier_label_when_the_noise_triples() -> None:
    """The same +1 % drift over 30 bars, after 500 random events in calm noise and in three times that noise:
    the share of events labelled a long win falls for both labels, and by more for the barrier label, whose
    barriers widen with the recent volatility (measured: 99 % -> 70 % against 100 % -> 84 %)."""
    rng = np.random.default_rng(7)
    shares: dict[tuple[str, float], float] = {}
    for noise in (0.0005, 0.0015):
        n, events = 60_000, np.arange(200, 59_800, 118)
        step = rng.normal(0.0, noise, n)
        for e in events:
            step[e + 1 : e + 31] += 0.01 / 30
        close = 30_000.0 * np.exp(np.cumsum(step))
        open_ = np.concatenate(([30_000.0], close[:-1]))
        index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="timestamp")
        bars = pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close),
                "low": np.minimum(open_, close),
                "close": close,
            },
            index=index,
        )
        barrier = triple_barrier_labels(bars, horizon=30, k_sl=1.0, k_tp=1.0, fee=0.001)["label"].to_numpy()
        holding = holding_labels(bars, horizon=30, fee=0.001)["label"].to_numpy()
        shares[("barrier", noise)] = float(np.mean(barrier[events] == LABEL_LONG))
        shares[("holding", noise)] = float(np.mean(holding[events] == LABEL_LONG))
    assert shares[("holding", 0.0005)] > 0.95 and shares[("barrier", 0.0005)] > 0.8
    barrier_fall = shares[("barrier", 0.0005)] - shares[("barrier", 0.0015)]
    holding_fall = shares[("holding", 0.0005)] - shares[("holding", 0.0015)]
    assert shares[("holding", 0.0015)] > 0.8 > shares[("barrier", 0.0015)]
    assert holding_fall < 0.6 * barrier_fall, shares
