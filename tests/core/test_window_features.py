"""The trailing window a temporal model reads: start-independent to the bit, no look-ahead, the documented layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.feature_set import ORDER_FLOW_FEATURES
from scalpbot.core.features import FEATURE_NAMES, FEATURE_WINDOW, build_features
from scalpbot.core.window_features import (
    MAX_WINDOW,
    WINDOW_CHANNELS,
    model_input_count,
    model_inputs,
    trailing_window,
)
from scalpbot.errors import ConfigError, DataError

from support.order_flow import with_order_flow

WINDOW = 32


@pytest.fixture(scope="module")
def sample_window(sample_bars: pd.DataFrame) -> np.ndarray:
    return trailing_window(sample_bars, WINDOW)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_the_last_row_of_any_trailing_slice_equals_the_full_history_row_bit_for_bit(
    sample_bars: pd.DataFrame, sample_window: np.ndarray, data: st.DataObject
) -> None:
    end = data.draw(st.integers(WINDOW + 1, len(sample_bars)), label="end")
    start = data.draw(st.integers(0, end - WINDOW - 1), label="start")
    row = trailing_window(sample_bars.iloc[start:end], WINDOW)[-1]
    assert np.isfinite(row).all()
    np.testing.assert_array_equal(row, sample_window[end - 1])


def test_a_row_does_not_change_when_later_bars_change(
    sample_bars: pd.DataFrame, sample_window: np.ndarray
) -> None:
    t = 5_000
    later = sample_bars.copy()
    later.iloc[t + 1 :, :] = later.iloc[t + 1 :, :].to_numpy()[::-1]  # any future at all
    np.testing.assert_array_equal(trailing_window(later, WINDOW)[: t + 1], sample_window[: t + 1])


def test_columns_are_bar_major_with_the_newest_bar_last_in_the_window_scale(
    sample_bars: pd.DataFrame, sample_window: np.ndarray
) -> None:
    assert np.isnan(sample_window[:WINDOW]).all() and np.isfinite(sample_window[WINDOW:]).all()
    t = 7_777
    close = sample_bars["close"].to_numpy()
    returns = np.log(close[t - WINDOW + 1 : t + 1] / close[t - WINDOW : t])
    scale = np.sqrt(np.mean(returns**2))
    bars = sample_window[t].reshape(WINDOW, len(WINDOW_CHANNELS))
    np.testing.assert_allclose(bars[:, 0], returns / scale, rtol=1e-12)
    high, low = sample_bars["high"].to_numpy(), sample_bars["low"].to_numpy()
    np.testing.assert_allclose(bars[-1, 1], np.log(high[t] / low[t]) / scale, rtol=1e-12)
    volume = sample_bars["volume"].to_numpy()[t - WINDOW + 1 : t + 1]
    log_volume = np.log1p(volume / (0.1 * volume.mean()))  # in no unit: over a tenth of the window's mean
    np.testing.assert_allclose(bars[:, 2], (log_volume - log_volume.mean()) / log_volume.std(), rtol=1e-9)


def test_model_inputs_are_the_feature_matrix_then_the_window_and_a_window_of_zero_is_the_features_alone(
    sample_bars: pd.DataFrame, sample_window: np.ndarray
) -> None:
    bars = sample_bars.iloc[:3_000]
    features = build_features(bars).to_numpy(dtype=np.float64)
    alone = model_inputs(bars)
    assert alone.dtype == np.float64 and alone.tobytes() == features.tobytes()
    both = model_inputs(bars, WINDOW)
    assert both.shape == (3_000, model_input_count(WINDOW)) == (3_000, len(FEATURE_NAMES) + 3 * WINDOW)
    np.testing.assert_array_equal(both[:, : len(FEATURE_NAMES)], features)
    np.testing.assert_array_equal(both[:, len(FEATURE_NAMES) :], sample_window[:3_000])
    # Wherever the feature matrix is complete, so is the window: the execute job's bars are enough.
    assert MAX_WINDOW < FEATURE_WINDOW
    assert np.isfinite(trailing_window(bars, MAX_WINDOW)[np.isfinite(features).all(axis=1)]).all()


def test_a_feature_set_with_order_flow_puts_its_columns_first_and_the_window_after_them(
    sample_bars: pd.DataFrame, sample_window: np.ndarray
) -> None:
    bars = with_order_flow(sample_bars.iloc[:3_000])
    features = ORDER_FLOW_FEATURES.build(bars).to_numpy(dtype=np.float64)
    width = len(ORDER_FLOW_FEATURES.names)
    assert width > len(FEATURE_NAMES)
    alone = model_inputs(bars, 0, ORDER_FLOW_FEATURES)
    assert alone.tobytes() == features.tobytes()
    both = model_inputs(bars, WINDOW, ORDER_FLOW_FEATURES)
    assert (
        both.shape == (3_000, model_input_count(WINDOW, ORDER_FLOW_FEATURES)) == (3_000, width + 3 * WINDOW)
    )
    assert both[:, :width].tobytes() == features.tobytes()
    np.testing.assert_array_equal(both[:, width:], sample_window[:3_000])
    with pytest.raises(DataError):  # bars without order flow cannot feed a release that reads it
        model_inputs(sample_bars.iloc[:3_000], WINDOW, ORDER_FLOW_FEATURES)


@pytest.mark.parametrize("window", [0, MAX_WINDOW + 1])
def test_a_window_outside_its_range_is_refused_with_the_range(sample_bars: pd.DataFrame, window: int) -> None:
    with pytest.raises(
        ConfigError, match=f"the trailing window must be 1 to {MAX_WINDOW} bars; got {window}"
    ):
        trailing_window(sample_bars.iloc[:100], window)


@pytest.mark.parametrize(("price", "volume"), [(2.0**-20, 2.0**20), (1e-6, 1e6), (37.5, 1e-4)])
def test_the_window_has_no_unit_of_price_or_volume(
    sample_bars: pd.DataFrame, sample_window: np.ndarray, price: float, volume: float
) -> None:
    # bit for bit when the units differ by a power of two; to rounding otherwise
    bars = sample_bars.iloc[:2_000].copy()
    bars[["open", "high", "low", "close"]] *= price
    bars["volume"] *= volume
    rescaled = trailing_window(bars, WINDOW)
    if np.log2(price).is_integer() and np.log2(volume).is_integer():
        assert rescaled.tobytes() == sample_window[:2_000].tobytes()
    np.testing.assert_allclose(rescaled[WINDOW:], sample_window[WINDOW:2_000], rtol=1e-9, atol=1e-9)
