"""The fast evaluator that tuning uses scores params exactly as the public backtest does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalpbot.core.backtest.frame import backtest
from scalpbot.core.evaluation import PolicyEvaluator, PolicyWindow, day_end_positions
from scalpbot.core.metrics import daily_returns
from scalpbot.core.policy import StrategyParams, signals_frame
from scalpbot.errors import ConfigError, DataError


def noisy_predictions(close: np.ndarray, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Return probabilities from a noisy view of the next 10 bars' return and a trailing realized vol."""
    log_close = np.log(close)
    forward = np.zeros_like(log_close)
    forward[:-10] = log_close[10:] - log_close[:-10]
    vol = pd.Series(np.diff(log_close, prepend=log_close[0])).rolling(30).std().to_numpy() * np.sqrt(10)
    score = np.nan_to_num(forward / vol) * 0.5 + np.random.default_rng(seed).normal(0, 1, close.shape[0])
    p_long = 1 / (1 + np.exp(2.0 - score))
    p_short = 1 / (1 + np.exp(2.0 + score))
    return np.column_stack([p_short, 1 - p_long - p_short, p_long]), vol


@pytest.fixture(scope="module")
def window_and_bars(sample_bars: pd.DataFrame) -> tuple[PolicyWindow, pd.DataFrame, np.ndarray, np.ndarray]:
    bars = sample_bars.iloc[:20_000]
    probs, vol = noisy_predictions(bars["close"].to_numpy())
    return PolicyWindow.from_frame(bars, probs, vol), bars, probs, vol


@pytest.mark.parametrize(
    "params",
    [
        StrategyParams(),
        StrategyParams(entry_threshold=0.4, sl_mult=2.0, tp_mult=3.0, max_hold=0),
        StrategyParams(entry_threshold=0.2, allow_short=False, max_hold=5, max_position=3.0),
    ],
)
def test_evaluator_matches_backtest_of_the_signal_frame(
    window_and_bars: tuple[PolicyWindow, pd.DataFrame, np.ndarray, np.ndarray], params: StrategyParams
) -> None:
    window, bars, probs, vol = window_and_bars
    slippage = 0.0001
    result = backtest(bars, signals_frame(bars.index, probs, vol, params), fee=0.0005, slippage=slippage)
    evaluation = PolicyEvaluator(window, fee=0.0005, slippage=slippage)(params)
    assert evaluation.trades == result.metrics["trades"]
    assert evaluation.trades > 0
    np.testing.assert_allclose(evaluation.daily_returns, daily_returns(result.equity), rtol=1e-12, atol=1e-15)
    assert evaluation.sharpe == pytest.approx(result.metrics["sharpe"], rel=1e-9)
    assert evaluation.total_return == pytest.approx(result.metrics["total_return"], rel=1e-9)


def test_evaluator_reuses_buffers_without_leaking_between_params(
    window_and_bars: tuple[PolicyWindow, pd.DataFrame, np.ndarray, np.ndarray],
) -> None:
    window = window_and_bars[0]
    evaluator = PolicyEvaluator(window)
    wide, narrow = StrategyParams(entry_threshold=0.05, max_hold=3), StrategyParams(entry_threshold=0.5)
    first = evaluator(narrow)
    evaluator(wide)
    again = evaluator(narrow)
    assert again.trades == first.trades
    np.testing.assert_array_equal(again.daily_returns, first.daily_returns)
    assert again.daily_returns is not first.daily_returns


def test_day_ends_are_the_last_bar_of_each_utc_day() -> None:
    index = pd.DatetimeIndex(
        ["2024-01-01 23:58", "2024-01-01 23:59", "2024-01-02 00:00", "2024-01-04 12:00"], tz="UTC"
    )
    assert day_end_positions(index).tolist() == [1, 2, 3]


def test_window_rejects_bad_bars_and_mismatched_predictions(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:100]
    probs, vol = np.full((100, 3), 1 / 3), np.full(100, 0.002)
    with pytest.raises(DataError, match="one per bar"):
        PolicyWindow.from_frame(bars, probs[:99], vol[:99])
    broken = bars.copy()
    broken.loc[broken.index[5], "high"] = broken["low"].iloc[5] * 0.5
    with pytest.raises(DataError, match="row 5"):
        PolicyWindow.from_frame(broken, probs, vol)
    with pytest.raises(DataError, match="UTC"):
        PolicyWindow.from_frame(bars.tz_convert("Europe/Paris"), probs, vol)
    with pytest.raises(ConfigError, match="fee"):
        PolicyEvaluator(PolicyWindow.from_frame(bars, probs, vol), fee=-0.1)


def test_window_slices_share_memory_and_fingerprint_by_content(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:3000]
    probs, vol = np.full((3000, 3), 1 / 3), np.full(3000, 0.002)
    window = PolicyWindow.from_frame(bars, probs, vol)
    part = window.slice(1000, 2000)
    assert len(part) == 1000
    assert np.shares_memory(part.close, window.close)
    assert (
        part.fingerprint()
        == PolicyWindow.from_frame(bars.iloc[1000:2000], probs[1000:2000], vol[1000:2000]).fingerprint()
    )
    assert part.fingerprint() != window.slice(1001, 2001).fingerprint()


@pytest.mark.parametrize("period", ["1D", "1h"])
def test_the_exposure_is_each_periods_sum_of_the_notional_shares_held_bar_by_bar(
    window_and_bars: tuple[PolicyWindow, pd.DataFrame, np.ndarray, np.ndarray], period: str
) -> None:
    _, bars, probs, vol = window_and_bars
    window = PolicyWindow.from_frame(bars, probs, vol, period=period)
    params = StrategyParams(entry_threshold=0.2, max_hold=7, max_position=2.0, sl_mult=0.7, tp_mult=1.0)
    result = backtest(bars, signals_frame(bars.index, probs, vol, params), fee=0.0005)
    evaluation = PolicyEvaluator(window, fee=0.0005, track_exposure=True)(params)
    assert PolicyEvaluator(window, fee=0.0005)(params).exposure is None
    reasons = set(result.trades["exit_reason"])
    assert {"sl", "tp", "time"} <= reasons  # every way out is counted
    held = np.zeros(len(bars))
    for trade in result.trades.itertuples():
        entry, exit_ = bars.index.get_loc(trade.entry_time), bars.index.get_loc(trade.exit_time)
        before = result.equity.iloc[entry - 1] if entry else 1.0
        last = (
            exit_ if trade.exit_reason in ("sl", "tp", "open") else exit_ - 1
        )  # a time exit fills at the open
        held[entry : last + 1] += trade.side * trade.qty * trade.entry_price / before
    expected = pd.Series(held, index=bars.index).groupby(bars.index.floor(period)).sum().to_numpy()
    assert evaluation.exposure is not None
    np.testing.assert_allclose(evaluation.exposure, expected, rtol=1e-12, atol=1e-12)
    assert evaluation.exposure.max() <= 2.0 * (1440 if period == "1D" else 60) + 1e-9


def test_the_mean_bar_return_is_what_a_random_bar_earns() -> None:
    from scalpbot.core.evaluation import mean_bar_return

    close = np.array([100.0, 101.0, 99.99, 100.0])
    index = pd.date_range("2024-01-01", periods=4, freq="1min", tz="UTC")
    bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close}, index=index)
    window = PolicyWindow.from_frame(bars, np.tile([0.3, 0.4, 0.3], (4, 1)), np.full(4, 0.002))
    assert mean_bar_return(window) == pytest.approx(np.mean([0.01, -0.01, 100.0 / 99.99 - 1.0]), rel=1e-12)
