"""Order flow is stored with the bars that carry it, absent for the ones that do not, and a mixed series reads
back with NaN exactly where a bar came without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalpbot.adapters.store.folder import FolderStore
from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.core.bars import ORDER_FLOW_COLUMNS
from scalpbot.state.bar_codec import decode_bars, encode_bars
from scalpbot.state.dataset import BarDataset, SeriesId

from support.order_flow import with_order_flow
from support.stores import Crash, RecordingStore

SERIES = SeriesId("binance", "BTC/USDT", "1m")
OHLCV = ["open", "high", "low", "close", "volume"]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_bars_with_order_flow_read_back_exactly(sample_bars: pd.DataFrame, fmt: str) -> None:
    bars = with_order_flow(sample_bars.iloc[:3000])
    dataset = BarDataset(MemoryStore(), "csv" if fmt == "csv" else "parquet")
    dataset.append(SERIES, bars)
    pd.testing.assert_frame_equal(dataset.read(SERIES), bars, check_freq=False)
    pd.testing.assert_frame_equal(
        dataset.read_tail(SERIES, bars.index[-1], 2000), bars.iloc[-2000:], check_freq=False
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_partition_without_order_flow_has_no_such_columns(sample_bars: pd.DataFrame, fmt: str) -> None:
    data = encode_bars(sample_bars.iloc[:100], "csv" if fmt == "csv" else "parquet")
    decoded = decode_bars(data, "csv" if fmt == "csv" else "parquet", key="k")
    assert list(decoded.columns) == OHLCV
    if fmt == "csv":
        assert data.decode().splitlines()[0] == "timestamp,open,high,low,close,volume"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_order_flow_appended_to_a_day_stored_without_it_is_nan_for_the_older_bars(
    sample_bars: pd.DataFrame, fmt: str
) -> None:
    dataset = BarDataset(MemoryStore(), "csv" if fmt == "csv" else "parquet")
    dataset.append(SERIES, sample_bars.iloc[:1000])
    later = with_order_flow(sample_bars.iloc[1000:3000])
    report = dataset.append(SERIES, later)
    assert report.added == 2000
    stored = dataset.read(SERIES)
    assert list(stored.columns) == [*OHLCV, *ORDER_FLOW_COLUMNS]
    assert stored[list(ORDER_FLOW_COLUMNS)].iloc[:1000].isna().all().all()
    pd.testing.assert_frame_equal(stored.iloc[1000:], later, check_freq=False)
    pd.testing.assert_frame_equal(stored[OHLCV], sample_bars.iloc[:3000], check_freq=False)
    # a day read alone that holds no order flow has no such columns
    assert list(dataset.read(SERIES, sample_bars.index[0], sample_bars.index[999]).columns) == OHLCV


def test_bars_without_order_flow_appended_after_bars_with_it_are_nan_there(sample_bars: pd.DataFrame) -> None:
    dataset = BarDataset(MemoryStore())
    dataset.append(SERIES, with_order_flow(sample_bars.iloc[:1000]))
    dataset.append(SERIES, sample_bars.iloc[1000:1200])
    stored = dataset.read(SERIES)
    assert stored["trades"].iloc[:1000].notna().all()
    assert stored["trades"].iloc[1000:].isna().all()
    assert np.isnan(dataset.read_tail(SERIES, stored.index[-1], 300)["taker_buy_volume"].iloc[-200:]).all()
    # a window of bars none of which reports order flow has no such columns
    assert list(dataset.read_tail(SERIES, stored.index[-1], 10).columns) == OHLCV


def test_a_stored_bar_keeps_its_values_when_order_flow_arrives_for_it_later(
    sample_bars: pd.DataFrame,
) -> None:
    dataset = BarDataset(MemoryStore())
    dataset.append(SERIES, sample_bars.iloc[:500])
    report = dataset.append(SERIES, with_order_flow(sample_bars.iloc[:500]))
    assert (report.added, report.already_stored, report.conflicts) == (0, 500, 0)
    assert list(dataset.read(SERIES).columns) == OHLCV


@pytest.mark.parametrize("crash_after", [0, 1, 2])
def test_a_run_with_order_flow_killed_between_writes_leaves_the_stored_days_as_they_were(
    tmp_path: Path, sample_bars: pd.DataFrame, crash_after: int
) -> None:
    folder = FolderStore(tmp_path / "store")
    BarDataset(folder).append(SERIES, sample_bars.iloc[: 2 * 1440 + 100])
    before = BarDataset(folder).read(SERIES)
    bars = with_order_flow(sample_bars.iloc[: 6 * 1440])
    with pytest.raises(Crash):
        BarDataset(RecordingStore(folder, fail_after_writes=crash_after)).append(SERIES, bars)
    survived = BarDataset(folder).read(SERIES)
    pd.testing.assert_frame_equal(survived[OHLCV].iloc[: len(before)], before, check_freq=False)
    BarDataset(folder).append(SERIES, bars)
    final = BarDataset(folder).read(SERIES)
    pd.testing.assert_frame_equal(final[OHLCV], sample_bars.iloc[: 6 * 1440], check_freq=False)
    pd.testing.assert_frame_equal(final.iloc[len(before) :], bars.iloc[len(before) :], check_freq=False)
