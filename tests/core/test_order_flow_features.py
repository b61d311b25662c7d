"""Order-flow features: trailing-window parity to the bit with the new columns, NaN only where a bar lacks order
flow, values as documented, and the OHLCV feature set unchanged, byte for byte, whether or not the bars carry
order flow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.feature_set import (
    OHLCV_FEATURES,
    ORDER_FLOW_FEATURES,
    FeatureSet,
    choose_feature_set,
)
from scalpbot.core.features import FEATURE_NAMES, FEATURE_WARMUP, FEATURE_WINDOW, build_features
from scalpbot.core.order_flow import ORDER_FLOW_FEATURE_NAMES, build_order_flow_features
from scalpbot.errors import DataError, ModelError

from support.order_flow import with_order_flow

N = 6000


@pytest.fixture(scope="module")
def flow_bars(sample_bars: pd.DataFrame) -> pd.DataFrame:
    return with_order_flow(sample_bars.iloc[:N])


@pytest.fixture(scope="module")
def flow_features(flow_bars: pd.DataFrame) -> np.ndarray:
    return ORDER_FLOW_FEATURES.build(flow_bars).to_numpy()


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_last_row_of_a_trailing_window_equals_the_full_history_row_with_order_flow(
    flow_bars: pd.DataFrame, flow_features: np.ndarray, data: st.DataObject
) -> None:
    end = data.draw(st.integers(FEATURE_WINDOW, len(flow_bars)), label="end")
    extra = data.draw(st.sampled_from([0, 0, 1, 3, 17, 500]), label="extra bars before the window")
    window = ORDER_FLOW_FEATURES.build(flow_bars.iloc[max(end - FEATURE_WINDOW - extra, 0) : end])
    assert window.index[-1] == flow_bars.index[end - 1]
    assert np.array_equal(window.to_numpy()[-1], flow_features[end - 1])


def test_every_row_after_warmup_is_independent_of_where_the_series_starts(
    flow_bars: pd.DataFrame, flow_features: np.ndarray
) -> None:
    for start in (1, 2, 5, 1234):
        late = ORDER_FLOW_FEATURES.build(flow_bars.iloc[start:]).to_numpy()
        assert np.array_equal(late[FEATURE_WARMUP:], flow_features[start + FEATURE_WARMUP :])


def test_the_order_flow_set_is_the_ohlcv_features_then_the_order_flow_ones(
    flow_bars: pd.DataFrame, flow_features: np.ndarray
) -> None:
    assert ORDER_FLOW_FEATURES.names == (*FEATURE_NAMES, *ORDER_FLOW_FEATURE_NAMES)
    assert ORDER_FLOW_FEATURE_NAMES == (
        "taker_imbalance_1",
        "taker_imbalance_5",
        "taker_imbalance_15",
        "taker_imbalance_60",
        "trades_z_60",
        "trades_z_240",
        "trade_size_z_60",
        "trade_size_z_240",
    )
    base = len(FEATURE_NAMES)
    assert np.array_equal(flow_features[:, :base], build_features(flow_bars).to_numpy(), equal_nan=True)
    assert np.isnan(flow_features[:FEATURE_WARMUP]).all()
    assert np.isfinite(flow_features[FEATURE_WARMUP:]).all()


def test_the_ohlcv_set_is_unchanged_byte_for_byte_whether_or_not_bars_carry_order_flow(
    sample_bars: pd.DataFrame, flow_bars: pd.DataFrame
) -> None:
    plain = build_features(sample_bars.iloc[:N])
    for bars in (sample_bars.iloc[:N], flow_bars):
        features = OHLCV_FEATURES.build(bars)
        assert tuple(features.columns) == FEATURE_NAMES == OHLCV_FEATURES.names
        assert features.to_numpy().tobytes() == plain.to_numpy().tobytes()
    assert OHLCV_FEATURES.bar_columns == ()
    assert OHLCV_FEATURES.missing_inputs(sample_bars.iloc[:10]) is None


def test_each_order_flow_feature_computes_what_its_docstring_says(flow_bars: pd.DataFrame) -> None:
    flow = build_order_flow_features(flow_bars)
    t = 3000
    v = flow_bars["volume"].to_numpy()
    taker = flow_bars["taker_buy_volume"].to_numpy()
    trades = flow_bars["trades"].to_numpy()
    assert flow["taker_imbalance_1"].iloc[t] == pytest.approx(2 * taker[t] / v[t] - 1, rel=1e-12)
    span = slice(t - 14, t + 1)
    expected = (2 * taker[span].sum() - v[span].sum()) / v[span].sum()
    assert flow["taker_imbalance_15"].iloc[t] == pytest.approx(expected, rel=1e-9)
    window = np.log1p(trades[t - 59 : t + 1])
    assert flow["trades_z_60"].iloc[t] == pytest.approx((window[-1] - window.mean()) / window.std(), rel=1e-9)
    relative = [np.log1p(v[j] / (0.1 * v[j - 239 : j + 1].mean())) for j in range(t - 239, t + 1)]
    size = np.array(relative) - np.log1p(trades[t - 239 : t + 1])
    assert flow["trade_size_z_240"].iloc[t] == pytest.approx((size[-1] - size.mean()) / size.std(), rel=1e-9)
    imbalance = flow.filter(like="taker_imbalance").to_numpy()[FEATURE_WARMUP:]
    assert (np.abs(imbalance) <= 1.0).all()


def test_a_window_that_traded_nothing_has_no_imbalance(flow_bars: pd.DataFrame) -> None:
    quiet = flow_bars.iloc[:2000].copy()
    quiet.iloc[1500:, quiet.columns.get_loc("volume")] = 0.0
    quiet.iloc[1500:, quiet.columns.get_loc("taker_buy_volume")] = 0.0
    quiet.iloc[1500:, quiet.columns.get_loc("trades")] = 0.0
    flow = build_order_flow_features(quiet)
    assert (flow["taker_imbalance_60"].iloc[1600:] == 0.0).all()
    assert np.isfinite(flow.iloc[FEATURE_WARMUP:].to_numpy()).all()


def test_bars_without_order_flow_make_only_the_rows_whose_windows_reach_them_nan(
    flow_bars: pd.DataFrame,
) -> None:
    mixed = flow_bars.copy()
    mixed.iloc[2000:2010, mixed.columns.get_loc("trades")] = np.nan
    mixed.iloc[2000:2010, mixed.columns.get_loc("taker_buy_volume")] = np.nan
    flow = build_order_flow_features(mixed).to_numpy()
    assert np.isfinite(flow[FEATURE_WARMUP:2000]).all()
    assert np.isnan(flow[2000:2010]).all()
    assert np.isfinite(flow[2009 + 240 :]).all()
    assert np.array_equal(flow[2009 + 240 :], build_order_flow_features(flow_bars).to_numpy()[2009 + 240 :])
    assert "has no trades" in str(ORDER_FLOW_FEATURES.missing_inputs(mixed))


def test_bars_without_the_columns_are_refused_naming_them(sample_bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="no trades, taker_buy_volume column"):
        ORDER_FLOW_FEATURES.build(sample_bars.iloc[:2000])
    with pytest.raises(
        ModelError, match=r"release r1 reads order flow .* no trades, taker_buy_volume .*Fetch"
    ):
        ORDER_FLOW_FEATURES.require(sample_bars.iloc[:10], release="r1", series="okx BTC/USDT 1m")


def test_training_takes_order_flow_when_every_bar_has_it_unless_told_otherwise(
    sample_bars: pd.DataFrame, flow_bars: pd.DataFrame
) -> None:
    assert choose_feature_set(flow_bars, "auto", series="s") == ORDER_FLOW_FEATURES
    assert choose_feature_set(flow_bars, "off", series="s") == OHLCV_FEATURES
    assert choose_feature_set(sample_bars.iloc[:100], "auto", series="s") == OHLCV_FEATURES
    partly = flow_bars.copy()
    partly.iloc[0, partly.columns.get_loc("trades")] = np.nan
    assert choose_feature_set(partly, "auto", series="s") == OHLCV_FEATURES
    with pytest.raises(DataError, match="train.order_flow is 'on' but the bar of 2024-11-20T00:00:00"):
        choose_feature_set(partly, "on", series="s")


def test_a_manifest_names_its_feature_set_and_reads_back(flow_bars: pd.DataFrame) -> None:
    for chosen in (OHLCV_FEATURES, ORDER_FLOW_FEATURES):
        assert FeatureSet.from_manifest({"feature_set": chosen.to_manifest()}, "r") == chosen
    assert FeatureSet.from_manifest({}, "old") == OHLCV_FEATURES  # written before the field
    assert ORDER_FLOW_FEATURES.to_manifest() == {
        "name": "ohlcv+order_flow",
        "bar_columns": ["trades", "taker_buy_volume"],
        "order_flow_spec_version": "2",
    }
    stale = {"feature_set": {**ORDER_FLOW_FEATURES.to_manifest(), "order_flow_spec_version": "0"}}
    with pytest.raises(ModelError, match="order-flow feature spec '0'.*train a new release"):
        FeatureSet.from_manifest(stale, "r")


@pytest.mark.parametrize("volume", [2.0**-24, 2.0**17, 1e-5, 3e4])
def test_the_order_flow_features_have_no_unit_of_volume(
    flow_bars: pd.DataFrame, flow_features: np.ndarray, volume: float
) -> None:
    # the volume and the taker-buy volume counted in another unit (the number of trades has none)
    bars = flow_bars.copy()
    bars[["volume", "taker_buy_volume"]] *= volume
    rescaled = ORDER_FLOW_FEATURES.build(bars).to_numpy()
    if np.log2(volume).is_integer():
        assert rescaled.tobytes() == flow_features.tobytes()
    np.testing.assert_allclose(
        rescaled[FEATURE_WARMUP:], flow_features[FEATURE_WARMUP:], rtol=1e-9, atol=1e-9
    )
