"""The feature matrix: trailing-window parity to the bit, no look-ahead, finite after warm-up, stable names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.adapters.marketdata.files import read_bar_file
from scalpbot.core.bars import validate_bars
from scalpbot.core.features import (
    FEATURE_NAMES,
    FEATURE_SPEC_VERSION,
    FEATURE_WARMUP,
    FEATURE_WINDOW,
    ONE_HOT_GROUPS,
    build_features,
)
from scalpbot.errors import DataError

GAPPY_FILE = Path(__file__).parents[1] / "fixtures" / "XMR_BTC-1m.csv"
SETTINGS = settings(max_examples=60, deadline=None)

# Changing a feature? Bump FEATURE_SPEC_VERSION, then update these two.
EXPECTED_VERSION = "5"
EXPECTED_NAMES = (
    "ret_1",
    "ret_5",
    "ret_15",
    "ret_60",
    "ret_240",
    "rv_15",
    "rv_60",
    "rv_240",
    "hl_vol_60",
    "atr_14",
    "rsi_14",
    "ema_dist_15",
    "ema_dist_60",
    "ema_dist_240",
    "range_pos_60",
    "range_pos_240",
    "volume_z_60",
    "volume_z_240",
    "body",
    "upper_wick",
    "lower_wick",
    "bar_range",
    "tod_sin",
    "tod_cos",
    "dow_sin",
    "dow_cos",
    "log_span_60",
    "shock_1",
    "shock_5",
    "vol_regime",
    "spike_age_30",
    "spike_z_30",
    "spike_shock_30",
    "spike_ret_30",
    "tf5_now",
    "tf5_prev",
    "tf15_now",
    "tf15_prev",
    "tf60_now",
    "tf60_prev",
    "tod2_sin",
    "tod2_cos",
    "tod4_sin",
    "tod4_cos",
    "moh_sin",
    "moh_cos",
    *(f"hour_{h}" for h in range(24)),
    *(f"minute_{m}" for m in range(60)),
)


@pytest.fixture(scope="module")
def sample_features(sample_bars: pd.DataFrame) -> np.ndarray:
    return build_features(sample_bars).to_numpy()


@pytest.fixture(scope="module")
def gappy_bars() -> pd.DataFrame:
    return validate_bars(read_bar_file(GAPPY_FILE), "1m", source="XMR_BTC")


def synthetic_bars(n: int, *, seed: int = 7, volume: float | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 5e-4, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 5e-4, n))
    vol = rng.lognormal(2.0, 1.0, n) if volume is None else np.full(n, volume)
    index = pd.date_range("2024-03-01", periods=n, freq="1min", tz="UTC", name="timestamp")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": vol}, index=index)


def assert_finite_after_warmup(features: pd.DataFrame) -> None:
    values = features.to_numpy()
    assert np.isnan(values[:FEATURE_WARMUP]).all()
    after = values[FEATURE_WARMUP:]
    bad_columns = [
        name for name, ok in zip(FEATURE_NAMES, np.isfinite(after).all(axis=0), strict=True) if not ok
    ]
    assert not bad_columns


@SETTINGS
@given(data=st.data())
def test_last_row_of_a_trailing_window_equals_the_full_history_row_bit_for_bit(
    sample_bars: pd.DataFrame, sample_features: np.ndarray, data: st.DataObject
) -> None:
    end = data.draw(st.integers(FEATURE_WINDOW, len(sample_bars)), label="end")
    extra = data.draw(st.sampled_from([0, 0, 1, 3, 17, 500]), label="extra bars before the window")
    start = max(end - FEATURE_WINDOW - extra, 0)
    window = build_features(sample_bars.iloc[start:end])
    assert window.index[-1] == sample_bars.index[end - 1]
    assert np.array_equal(window.to_numpy()[-1], sample_features[end - 1])


def test_every_row_after_warmup_is_independent_of_where_the_series_starts(
    sample_bars: pd.DataFrame, sample_features: np.ndarray
) -> None:
    for start in (1, 2, 3, 5, 1234, 30_001):
        late = build_features(sample_bars.iloc[start : start + 8000]).to_numpy()
        assert np.array_equal(late[FEATURE_WARMUP:], sample_features[start + FEATURE_WARMUP : start + 8000])


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_trailing_window_parity_holds_on_a_gappy_series(
    gappy_bars: pd.DataFrame, data: st.DataObject
) -> None:
    full = build_features(gappy_bars).to_numpy()
    end = data.draw(st.integers(FEATURE_WINDOW, len(gappy_bars)), label="end")
    window = build_features(gappy_bars.iloc[end - FEATURE_WINDOW : end]).to_numpy()
    assert np.array_equal(window[-1], full[end - 1])


@SETTINGS
@given(
    k=st.integers(0, 2998),
    price_factor=st.floats(0.5, 2.0),
    volume_factor=st.floats(0.0, 10.0),
    shift_minutes=st.integers(0, 10_000),
)
def test_changing_later_bars_never_changes_earlier_rows(
    sample_bars: pd.DataFrame, k: int, price_factor: float, volume_factor: float, shift_minutes: int
) -> None:
    bars = sample_bars.iloc[:3000]
    changed = bars.copy()
    changed.iloc[k + 1 :, :4] *= price_factor
    changed.iloc[k + 1 :, 4] *= volume_factor
    later = changed.index[k + 1 :] + pd.Timedelta(minutes=shift_minutes)
    changed.index = changed.index[: k + 1].append(later).rename("timestamp")
    before = build_features(bars).to_numpy()[: k + 1]
    after = build_features(changed).to_numpy()[: k + 1]
    assert np.array_equal(before, after, equal_nan=True)


def test_rows_are_finite_after_warmup_on_real_bars(sample_features: np.ndarray) -> None:
    assert np.isnan(sample_features[:FEATURE_WARMUP]).all()
    assert np.isfinite(sample_features[FEATURE_WARMUP:]).all()


def test_rows_are_finite_after_warmup_on_a_gappy_series(gappy_bars: pd.DataFrame) -> None:
    features = build_features(gappy_bars)
    assert_finite_after_warmup(features)
    assert (features["log_span_60"].iloc[FEATURE_WARMUP:] > 0.0).any()


def test_rows_are_finite_after_warmup_on_flat_bars_and_zero_volume() -> None:
    n = FEATURE_WINDOW + 300
    index = pd.date_range("2024-03-01", periods=n, freq="1min", tz="UTC", name="timestamp")
    flat = pd.DataFrame({c: np.full(n, 0.0299) for c in ("open", "high", "low", "close")}, index=index)
    flat["volume"] = 0.0
    features = build_features(flat)
    assert_finite_after_warmup(features)
    moving = [
        "ret_1",
        "rv_60",
        "atr_14",
        "rsi_14",
        "ema_dist_240",
        "range_pos_60",
        "volume_z_60",
        "bar_range",
    ]
    assert (
        np.abs(features[moving].iloc[FEATURE_WARMUP:].to_numpy()).max() < 1e-9
    )  # EMA weights sum to 1 +- ulps


def test_rows_are_finite_when_a_move_is_followed_by_a_flat_stretch() -> None:
    bars = synthetic_bars(FEATURE_WINDOW + 600)
    last = bars["close"].iloc[FEATURE_WINDOW]
    bars.iloc[FEATURE_WINDOW + 1 :, :4] = last
    bars.iloc[FEATURE_WINDOW + 1 :, 4] = 0.0
    assert_finite_after_warmup(build_features(bars))


def rescaled(bars: pd.DataFrame, price: float, volume: float) -> pd.DataFrame:
    """The same market quoted in another price unit and its volume counted in another unit."""
    out = bars.copy()
    out[["open", "high", "low", "close"]] *= price
    out["volume"] *= volume
    return out


@settings(max_examples=12, deadline=None)
@given(price=st.integers(-30, 30), volume=st.integers(-30, 30))
def test_the_features_have_no_unit_of_price_or_volume_bit_for_bit_for_powers_of_two(
    sample_bars: pd.DataFrame, price: int, volume: int
) -> None:
    bars = sample_bars.iloc[:2_500]
    same = build_features(rescaled(bars, 2.0**price, 2.0**volume)).to_numpy()
    assert same.tobytes() == build_features(bars).to_numpy().tobytes()


@pytest.mark.parametrize(("price", "volume"), [(1e-6, 1e6), (37.5, 1e-4), (1.0, 1e3)])
def test_the_features_have_no_unit_of_price_or_volume(
    sample_bars: pd.DataFrame, price: float, volume: float
) -> None:
    # a coin priced a millionth of BTC with volumes a million times larger reads as the same market
    bars = sample_bars.iloc[:2_500]
    np.testing.assert_allclose(
        build_features(rescaled(bars, price, volume)).to_numpy()[FEATURE_WARMUP:],
        build_features(bars).to_numpy()[FEATURE_WARMUP:],
        rtol=1e-9,
        atol=1e-9,
    )


def test_rows_are_finite_with_volumes_at_the_bottom_of_floating_point() -> None:
    bars = synthetic_bars(FEATURE_WINDOW + 300)
    bars["volume"] = np.where(np.arange(len(bars)) % 2 == 0, 4e-323, 0.0)  # a tenth of the mean is 0.0
    assert_finite_after_warmup(build_features(bars))


def test_constant_volume_has_a_zero_volume_score() -> None:
    features = build_features(synthetic_bars(FEATURE_WINDOW + 50, volume=3.7))
    assert np.abs(features[["volume_z_60", "volume_z_240"]].iloc[FEATURE_WARMUP:].to_numpy()).max() < 1e-6


def test_the_first_complete_row_needs_exactly_the_feature_window() -> None:
    bars = synthetic_bars(FEATURE_WINDOW)
    assert np.isfinite(build_features(bars).to_numpy()[-1]).all()
    assert np.isnan(build_features(bars.iloc[1:]).to_numpy()).all()


def test_feature_names_count_order_and_dtype_are_stable(sample_bars: pd.DataFrame) -> None:
    features = build_features(sample_bars.iloc[:1200])
    assert FEATURE_SPEC_VERSION == EXPECTED_VERSION
    assert EXPECTED_NAMES == FEATURE_NAMES
    assert tuple(features.columns) == FEATURE_NAMES
    assert (features.dtypes == np.float64).all()
    assert features.index.equals(sample_bars.index[:1200])
    assert FEATURE_WINDOW == FEATURE_WARMUP + 1


def ewm(values: np.ndarray, alpha: float, length: int) -> float:
    weights = (1.0 - alpha) ** np.arange(length)
    return float(np.dot(weights, values[::-1][:length]) / weights.sum())


def test_each_feature_computes_what_its_docstring_says(sample_bars: pd.DataFrame) -> None:
    t = 20_000
    row = build_features(sample_bars.iloc[: t + 1]).iloc[-1]
    o, h, lo, c, v = (
        sample_bars[name].to_numpy()[: t + 1] for name in ("open", "high", "low", "close", "volume")
    )
    ret = np.diff(np.log(c))
    true_range = np.maximum(h[1:], c[:-1]) - np.minimum(lo[1:], c[:-1])
    atr = ewm(true_range, 1 / 14, 112)
    up, down = ewm(np.maximum(np.diff(c), 0), 1 / 14, 112), ewm(np.maximum(-np.diff(c), 0), 1 / 14, 112)
    # the relative volume: log1p of each bar's volume over a tenth of the mean of the 240 bars ending with it
    log_volume = np.full(t + 1, np.nan)
    for j in range(239, t + 1):
        log_volume[j] = np.log1p(v[j] / (0.1 * v[j - 239 : j + 1].mean()))
    expected = {
        **{f"ret_{lag}": np.log(c[-1] / c[-1 - lag]) for lag in (1, 5, 15, 60, 240)},
        **{f"rv_{w}": np.sqrt(np.mean(ret[-w:] ** 2)) for w in (15, 60, 240)},
        "hl_vol_60": np.sqrt(np.mean(np.log(h[-60:] / lo[-60:]) ** 2) / (4 * np.log(2))),
        "atr_14": atr / c[-1],
        "rsi_14": (up - down) / (up + down),
        **{f"ema_dist_{s}": (c[-1] - ewm(c, 2 / (s + 1), 4 * s)) / atr for s in (15, 60, 240)},
        **{
            f"range_pos_{w}": 2 * (c[-1] - lo[-w:].min()) / (h[-w:].max() - lo[-w:].min()) - 1
            for w in (60, 240)
        },
        **{
            f"volume_z_{w}": (log_volume[-1] - log_volume[-w:].mean()) / log_volume[-w:].std()
            for w in (60, 240)
        },
        "body": (c[-1] - o[-1]) / atr,
        "upper_wick": (h[-1] - max(o[-1], c[-1])) / atr,
        "lower_wick": (min(o[-1], c[-1]) - lo[-1]) / atr,
        "bar_range": (h[-1] - lo[-1]) / atr,
        "log_span_60": 0.0,
        **{
            f"shock_{k}": np.log(c[-1] / c[-1 - k]) / (np.sqrt(np.mean(ret[-60:] ** 2)) * np.sqrt(k))
            for k in (1, 5)
        },
        "vol_regime": np.log(np.sqrt(np.mean(ret[-15:] ** 2)) / np.sqrt(np.mean(ret[-240:] ** 2))),
    }
    # The last volume spike: the highest volume_z_60 of the last 30 bars, each bar's z over its own window.
    z = [
        (log_volume[j] - log_volume[j - 59 : j + 1].mean()) / log_volume[j - 59 : j + 1].std()
        for j in range(t - 29, t + 1)
    ]
    age = 29 - max(range(30), key=lambda k: (z[k], k))  # the latest bar on a tie
    spike = t - age
    rv_at = np.sqrt(np.mean(ret[spike - 60 : spike] ** 2))
    expected |= {
        "spike_age_30": age / 30,
        "spike_z_30": z[29 - age],
        "spike_shock_30": np.log(c[spike] / c[spike - 1]) / rv_at,
        "spike_ret_30": np.log(c[-1] / c[spike]),
    }
    # Multi-timeframe context: the clock-aligned 5m/15m/1h bars built by pandas from the same 1m bars.
    stamp = sample_bars.index[t]
    for minutes in (5, 15, 60):
        rule = f"{minutes}min"
        now = sample_bars.loc[stamp.floor(rule) : stamp]
        before = sample_bars.loc[
            stamp.floor(rule) - pd.Timedelta(rule) : stamp.floor(rule) - pd.Timedelta("1min")
        ]
        expected[f"tf{minutes}_now"] = np.log(now["close"].iloc[-1] / now["open"].iloc[0])
        expected[f"tf{minutes}_prev"] = np.log(before["close"].iloc[-1] / before["open"].iloc[0])
    minute = stamp.hour * 60 + stamp.minute
    for name, k in (("tod2", 2), ("tod4", 4), ("moh", 24)):
        expected[f"{name}_sin"] = np.sin(2 * np.pi * k * minute / 1440)
        expected[f"{name}_cos"] = np.cos(2 * np.pi * k * minute / 1440)
    assert expected["moh_sin"] == pytest.approx(np.sin(2 * np.pi * stamp.minute / 60))
    for h in range(24):
        expected[f"hour_{h}"] = float(h == stamp.hour)
    for m in range(60):
        expected[f"minute_{m}"] = float(m == stamp.minute)
    assert set(FEATURE_NAMES) - set(expected) == {"tod_sin", "tod_cos", "dow_sin", "dow_cos"}  # tested below
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_feature_values_match_the_spec_version(sample_features: np.ndarray) -> None:
    # Row 20000 of the sample (2024-12-03 21:20 UTC). Changed on purpose? Bump FEATURE_SPEC_VERSION.
    pinned = {
        "ret_1": 0.0004403838630639465,
        "ret_240": 0.00747063236792951,
        "rv_60": 0.0004902193965637259,
        "hl_vol_60": 0.0004220086528053892,
        "atr_14": 0.0006863902441938816,
        "rsi_14": 0.5048153761426423,
        "ema_dist_240": 8.23094204281377,
        "range_pos_240": 0.9665986672106655,
        "volume_z_60": 1.492824110634944,
        "upper_wick": 0.27952589585411836,
        "tod_sin": -0.6427876096865396,
        "dow_cos": 0.6234898018587336,
        "shock_1": 0.8983403475074428,
        "vol_regime": -0.10785559503423434,
        "spike_age_30": 0.13333333333333333,
        "spike_z_30": 3.536310938847602,
        "spike_shock_30": -0.320497559852897,
        "spike_ret_30": 0.001934883323667923,
        "tf15_prev": 0.002641593326233407,
        "tf60_now": 0.004075975747300131,
        "tod4_sin": -0.34202014332566866,
        "hour_21": 1.0,
        "minute_20": 1.0,
        "minute_21": 0.0,
    }
    row = dict(zip(FEATURE_NAMES, sample_features[20_000], strict=True))
    assert {name: row[name] for name in pinned} == pytest.approx(pinned, rel=1e-12)


def test_time_of_day_and_weekday_encode_the_bar_open_time() -> None:
    bars = synthetic_bars(FEATURE_WINDOW)
    bars.index = pd.date_range(
        end="2024-03-04T06:00:00Z", periods=FEATURE_WINDOW, freq="1min", name="timestamp"
    )
    row = build_features(bars).iloc[-1]  # opened on a Monday, a quarter into the UTC day
    assert row["tod_sin"] == pytest.approx(1.0)
    assert row["tod_cos"] == pytest.approx(0.0, abs=1e-12)
    assert (row["dow_sin"], row["dow_cos"]) == (0.0, 1.0)


def test_the_hour_and_minute_columns_single_out_the_bars_open_time_one_hot() -> None:
    bars = synthetic_bars(FEATURE_WINDOW + 3 * 1440)
    bars.index = pd.date_range(end="2024-03-04T13:29:00Z", periods=len(bars), freq="1min", name="timestamp")
    features = build_features(bars).iloc[FEATURE_WARMUP:]
    hours = features[list(ONE_HOT_GROUPS["hour"])].to_numpy()
    minutes = features[list(ONE_HOT_GROUPS["minute"])].to_numpy()
    assert (hours.sum(axis=1) == 1.0).all() and (minutes.sum(axis=1) == 1.0).all()
    assert (np.argmax(hours, axis=1) == features.index.hour).all()
    assert (np.argmax(minutes, axis=1) == features.index.minute).all()
    last = features.iloc[-1]  # opened 13:29 UTC: the bar before a half-hour release at 13:30
    assert last["hour_13"] == last["minute_29"] == 1.0
    assert last["minute_28"] == last["minute_30"] == last["hour_12"] == 0.0
    assert set(ONE_HOT_GROUPS["hour"]) | set(ONE_HOT_GROUPS["minute"]) <= set(FEATURE_NAMES)


def test_an_invalid_bar_frame_raises_a_data_error_naming_the_problem() -> None:
    bars = synthetic_bars(10)
    with pytest.raises(DataError, match="missing column"):
        build_features(bars.drop(columns="volume"))
    with pytest.raises(DataError, match="UTC DatetimeIndex"):
        build_features(bars.tz_localize(None))
    broken = bars.copy()
    broken.iloc[4, 2] = -1.0
    with pytest.raises(DataError, match="row 4"):
        build_features(broken)
    broken = bars.copy()
    broken.iloc[6, 4] = np.nan
    with pytest.raises(DataError, match="row 6.*volume"):
        build_features(broken)


def test_a_volume_spike_is_carried_to_the_bars_after_it_for_thirty_bars() -> None:
    bars = synthetic_bars(FEATURE_WINDOW + 40)
    volume = bars["volume"].to_numpy().copy()
    close = bars["close"].to_numpy()
    spike = FEATURE_WINDOW + 2
    volume[spike] *= 50.0
    bars["volume"] = volume
    features = build_features(bars)
    for later in (0, 7, 29):
        row = features.iloc[spike + later]
        assert row["spike_age_30"] == pytest.approx(later / 30)
        assert row["spike_z_30"] == features["volume_z_60"].iloc[spike]
        assert row["spike_shock_30"] == features["shock_1"].iloc[spike]
        assert row["spike_ret_30"] == pytest.approx(np.log(close[spike + later] / close[spike]))
    assert features["spike_z_30"].iloc[spike + 30] < features["volume_z_60"].iloc[spike]  # out of the window
