"""The dataset is append-only, idempotent, incremental and survives a run killed at any write."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scalpbot.adapters.store.folder import FolderStore
from scalpbot.adapters.store.memory import MemoryStore
from scalpbot.errors import ConfigError, CorruptArtifactError
from scalpbot.state.dataset import BarDataset, SeriesId

from support.files import snapshot
from support.stores import Crash, RecordingStore

SERIES = SeriesId("binance", "BTC/USDT", "1m")


def test_partitions_follow_the_documented_layout(sample_bars: pd.DataFrame) -> None:
    dataset = BarDataset(MemoryStore())
    dataset.append(SERIES, sample_bars.iloc[:2000])
    assert list(dataset.partitions(SERIES).values()) == [
        "data/binance/BTC_USDT/1m/2024-11-20.parquet",
        "data/binance/BTC_USDT/1m/2024-11-21.parquet",
    ]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_stored_bars_read_back_exactly(sample_bars: pd.DataFrame, fmt: str) -> None:
    dataset = BarDataset(MemoryStore(), "csv" if fmt == "csv" else "parquet")
    dataset.append(SERIES, sample_bars.iloc[:5000])
    pd.testing.assert_frame_equal(dataset.read(SERIES), sample_bars.iloc[:5000], check_freq=False)


def test_appending_the_same_bars_again_writes_nothing(tmp_path: Path, sample_bars: pd.DataFrame) -> None:
    store = RecordingStore(FolderStore(tmp_path / "store"))
    dataset = BarDataset(store)
    dataset.append(SERIES, sample_bars.iloc[:4000])
    before = snapshot(tmp_path / "store")
    store.writes.clear()
    report = dataset.append(SERIES, sample_bars.iloc[1000:3000])
    assert (report.added, report.already_stored, report.partitions_written) == (0, 2000, ())
    assert store.writes == []
    assert snapshot(tmp_path / "store") == before


def test_an_overlapping_later_window_adds_only_new_bars_and_touches_only_their_days(
    sample_bars: pd.DataFrame,
) -> None:
    store = RecordingStore(MemoryStore())
    dataset = BarDataset(store)
    dataset.append(SERIES, sample_bars.iloc[: 10 * 1440])
    store.writes.clear()
    store.reads.clear()
    report = dataset.append(SERIES, sample_bars.iloc[10 * 1440 - 300 : 11 * 1440 + 60])
    assert report.added == 1440 + 60
    assert report.already_stored == 300
    assert store.writes == [
        "data/binance/BTC_USDT/1m/2024-11-30.parquet",
        "data/binance/BTC_USDT/1m/2024-12-01.parquet",
    ]
    assert set(store.reads) == {"data/binance/BTC_USDT/1m/2024-11-29.parquet"}
    pd.testing.assert_frame_equal(dataset.read(SERIES), sample_bars.iloc[: 11 * 1440 + 60], check_freq=False)


def test_a_differing_copy_of_a_stored_bar_is_a_conflict_and_the_stored_bar_stays(
    sample_bars: pd.DataFrame,
) -> None:
    dataset = BarDataset(MemoryStore())
    dataset.append(SERIES, sample_bars.iloc[:100])
    revised = sample_bars.iloc[50:150].copy()
    revised.iloc[0, revised.columns.get_loc("close")] = (revised["high"].iloc[0] + revised["low"].iloc[0]) / 2
    report = dataset.append(SERIES, revised)
    assert (report.added, report.conflicts, report.first_conflict) == (50, 1, sample_bars.index[50])
    pd.testing.assert_frame_equal(dataset.read(SERIES), sample_bars.iloc[:150], check_freq=False)


def test_gaps_between_stored_and_new_bars_are_reported(sample_bars: pd.DataFrame) -> None:
    dataset = BarDataset(MemoryStore())
    dataset.append(SERIES, sample_bars.iloc[:100])
    report = dataset.append(SERIES, sample_bars.iloc[130:200])
    assert [(g.after, g.before, g.missing) for g in report.gaps] == [
        (sample_bars.index[99], sample_bars.index[130], 30)
    ]
    assert dataset.summary(SERIES).missing_bars == 30


@pytest.mark.parametrize("crash_after", [0, 1, 3, 7])
def test_a_run_killed_between_writes_leaves_a_readable_dataset_that_the_next_run_completes(
    tmp_path: Path, sample_bars: pd.DataFrame, crash_after: int
) -> None:
    folder = FolderStore(tmp_path / "store")
    BarDataset(folder).append(SERIES, sample_bars.iloc[: 3 * 1440])
    before = BarDataset(folder).read(SERIES)
    with pytest.raises(Crash):
        BarDataset(RecordingStore(folder, fail_after_writes=crash_after)).append(
            SERIES, sample_bars.iloc[: 12 * 1440]
        )
    survived = BarDataset(folder).read(SERIES)
    assert survived.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(survived.iloc[: len(before)], before, check_freq=False)
    assert len(survived) == (3 + crash_after) * 1440
    BarDataset(folder).append(SERIES, sample_bars.iloc[: 12 * 1440])
    pd.testing.assert_frame_equal(
        BarDataset(folder).read(SERIES), sample_bars.iloc[: 12 * 1440], check_freq=False
    )


def test_a_corrupted_partition_is_refused_with_its_key(sample_bars: pd.DataFrame) -> None:
    store = MemoryStore()
    dataset = BarDataset(store)
    dataset.append(SERIES, sample_bars.iloc[:100])
    store.put("data/binance/BTC_USDT/1m/2024-11-20.parquet", b"PAR1 not really")
    with pytest.raises(CorruptArtifactError, match=r"2024-11-20\.parquet cannot be read"):
        dataset.read(SERIES)


def test_a_series_stored_in_another_format_is_named_in_the_error(sample_bars: pd.DataFrame) -> None:
    store = MemoryStore()
    BarDataset(store, "csv").append(SERIES, sample_bars.iloc[:100])
    with pytest.raises(ConfigError, match="stored as csv but data.format is 'parquet'"):
        BarDataset(store, "parquet").append(SERIES, sample_bars.iloc[100:200])


def test_read_returns_the_half_open_window(sample_bars: pd.DataFrame) -> None:
    dataset = BarDataset(MemoryStore())
    dataset.append(SERIES, sample_bars.iloc[:5000])
    start, end = sample_bars.index[1000], sample_bars.index[4000]
    pd.testing.assert_frame_equal(
        dataset.read(SERIES, start, end), sample_bars.iloc[1000:4000], check_freq=False
    )


def test_an_overlapping_window_reports_no_gap_where_bars_are_already_stored(
    sample_bars: pd.DataFrame,
) -> None:
    dataset = BarDataset(MemoryStore())
    dataset.append(SERIES, sample_bars.iloc[: 5 * 1440])
    report = dataset.append(SERIES, sample_bars.iloc[2 * 1440 : 7 * 1440])
    assert report.added == 2 * 1440
    assert report.gaps == ()
