"""SyntheticMarketData: deterministic, window-independent, consistent and market-like bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.adapters.clock import FixedClock
from scalpbot.adapters.marketdata.synthetic import EPOCH, SyntheticMarketData
from scalpbot.errors import ConfigError

NOW = datetime(2025, 6, 1, 12, 0, 30, tzinfo=UTC)
DAY = datetime(2024, 3, 4, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
COLUMNS = ["open", "high", "low", "close", "volume"]


def bars(
    since: datetime | None,
    until: datetime | None,
    *,
    seed: int = 7,
    symbol: str = "BTC/USDT",
    timeframe: str = "1m",
    now: datetime = NOW,
    **kw: float,
) -> pd.DataFrame:
    source = SyntheticMarketData(FixedClock(now), seed, **kw)
    chunks = list(source.fetch_bars(symbol, timeframe, since, until))
    if not chunks:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in ["timestamp", *COLUMNS]})
    return pd.concat(chunks, ignore_index=True)


def log_returns(frame: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()))


def autocorrelation(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float(np.mean(x[:-lag] * x[lag:]) / x.var())


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    return bars(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))


def test_same_seed_and_window_give_identical_bars():
    pd.testing.assert_frame_equal(bars(DAY, DAY + timedelta(days=2)), bars(DAY, DAY + timedelta(days=2)))


def test_different_seeds_and_symbols_give_different_paths():
    base = bars(DAY, DAY + timedelta(hours=1))

    assert not np.allclose(base["close"], bars(DAY, DAY + timedelta(hours=1), seed=8)["close"])
    assert not np.allclose(base["close"], bars(DAY, DAY + timedelta(hours=1), symbol="ETH/USDT")["close"])


def test_chunks_have_utc_open_times_one_minute_apart_and_float_columns(month):
    assert str(month["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(month[c].dtype == np.float64 for c in COLUMNS)
    assert month["timestamp"].iloc[0] == pd.Timestamp("2024-03-01T00:00:00Z")
    assert (month["timestamp"].diff().iloc[1:] == MINUTE).all()
    assert len(month) == 31 * 1440


@settings(max_examples=25, deadline=None)
@given(start=st.integers(0, 31 * 1440 - 1), length=st.integers(1, 3 * 1440))
def test_overlapping_windows_give_bit_identical_bars(month, start, length):
    since = datetime(2024, 3, 1, tzinfo=UTC) + start * MINUTE
    length = min(length, 31 * 1440 - start)  # stay inside the month

    window = bars(since, since + length * MINUTE)

    expected = month[(month["timestamp"] >= since) & (month["timestamp"] < since + length * MINUTE)]
    pd.testing.assert_frame_equal(window, expected.reset_index(drop=True))


def test_closed_bars_do_not_change_when_the_clock_moves_on():
    early = bars(DAY, None, now=DAY + timedelta(hours=3, seconds=5))

    later = bars(DAY, DAY + timedelta(hours=3), now=NOW)

    pd.testing.assert_frame_equal(early, later)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    day=st.integers(0, 3000),
    minute=st.integers(0, 1439),
    length=st.integers(1, 2000),
    timeframe=st.sampled_from(["1m", "5m", "1h"]),
    gap_bps=st.sampled_from([0.0, 2.0]),
)
def test_ohlc_is_consistent_for_any_seed_and_window(seed, day, minute, length, timeframe, gap_bps):
    since = EPOCH + timedelta(days=day, minutes=minute)

    frame = bars(since, since + length * MINUTE, seed=seed, timeframe=timeframe, gap_bps=gap_bps)

    o, h, lo, c, v = (frame[col].to_numpy() for col in COLUMNS)
    assert np.isfinite(frame[COLUMNS].to_numpy()).all()
    assert (lo > 0).all() and (v > 0).all()
    assert (lo <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all()


def test_open_is_the_previous_close_even_across_midnight():
    frame = bars(DAY - timedelta(hours=1), DAY + timedelta(days=2, hours=1))

    assert (frame["open"].to_numpy()[1:] == frame["close"].to_numpy()[:-1]).all()


def test_gaps_open_slightly_away_from_the_previous_close_when_asked():
    frame = bars(DAY, DAY + timedelta(hours=6), gap_bps=1.0)

    jumps = np.abs(np.log(frame["open"].to_numpy()[1:] / frame["close"].to_numpy()[:-1]))
    assert 0 < np.median(jumps) < 3e-4


def test_volatility_clusters(month):
    moves = np.abs(log_returns(month))

    assert min(autocorrelation(moves, lag) for lag in (1, 5, 10, 60)) > 0.1


def test_returns_have_fat_tails_and_no_memory_in_sign(month):
    returns = log_returns(month)

    assert pd.Series(returns).kurt() > 5
    assert abs(autocorrelation(returns, 1)) < 0.05


def test_volume_is_positive_and_rises_with_absolute_returns(month):
    volume = month["volume"].to_numpy()[1:]

    assert (volume > 0).all()
    assert np.corrcoef(np.abs(log_returns(month)), volume)[0, 1] > 0.3


def test_volume_follows_the_time_of_day(month):
    hour = month["timestamp"].dt.hour

    assert (
        month.loc[hour.between(14, 15), "volume"].mean()
        > 1.5 * month.loc[hour.between(3, 4), "volume"].mean()
    )


def test_still_forming_bar_is_never_yielded():
    frame = bars(DAY, None, now=DAY + timedelta(minutes=10, seconds=30))

    assert frame["timestamp"].iloc[-1] == pd.Timestamp(DAY + 9 * MINUTE)


def test_bar_that_closes_exactly_now_is_yielded():
    frame = bars(DAY, None, now=DAY + timedelta(minutes=10))

    assert len(frame) == 10


def test_higher_timeframes_aggregate_the_one_minute_bars():
    minutes = bars(DAY, DAY + timedelta(hours=2))

    five = bars(DAY, DAY + timedelta(hours=2), timeframe="5m")

    groups = minutes.groupby(minutes.index // 5)
    assert len(five) == 24
    assert (five["timestamp"].diff().iloc[1:] == 5 * MINUTE).all()
    np.testing.assert_array_equal(five["open"], groups["open"].first())
    np.testing.assert_array_equal(five["high"], groups["high"].max())
    np.testing.assert_array_equal(five["low"], groups["low"].min())
    np.testing.assert_array_equal(five["close"], groups["close"].last())
    np.testing.assert_allclose(five["volume"], groups["volume"].sum())


def test_unaligned_since_starts_at_the_next_bar_open():
    frame = bars(DAY + timedelta(seconds=1), DAY + 5 * MINUTE)

    assert frame["timestamp"].iloc[0] == pd.Timestamp(DAY + MINUTE)


def test_history_starts_at_the_epoch():
    frame = bars(None, EPOCH + 3 * MINUTE)

    assert list(frame["timestamp"]) == [pd.Timestamp(EPOCH + i * MINUTE) for i in range(3)]
    assert bars(EPOCH - timedelta(days=3), EPOCH + 3 * MINUTE).equals(frame)


def test_empty_or_future_windows_yield_nothing():
    assert bars(DAY, DAY).empty
    assert bars(NOW + timedelta(days=1), None).empty


def test_naive_datetimes_are_rejected_with_a_hint():
    source = SyntheticMarketData(FixedClock(NOW), 1)

    with pytest.raises(ConfigError, match="aware UTC datetime"):
        source.fetch_bars("BTC/USDT", "1m", datetime(2024, 1, 1), None)


@pytest.mark.parametrize(
    ("seed", "options"),
    [(-1, {}), (1, {"start_price": 0.0}), (1, {"minute_volatility": -0.1}), (1, {"gap_bps": -1.0})],
)
def test_invalid_parameters_are_config_errors(seed, options):
    with pytest.raises(ConfigError):
        SyntheticMarketData(FixedClock(NOW), seed, **options)
