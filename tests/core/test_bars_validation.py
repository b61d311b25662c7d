"""Bar validation names the first bad row; gaps and spikes are found, never filled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.adapters.marketdata.files import read_bar_file
from scalpbot.core.bars import find_gaps, find_spikes, validate_bars
from scalpbot.errors import DataError

from support.files import FIXTURES


def _raw(sample_bars: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    return sample_bars.iloc[:n].reset_index()


def test_real_sample_is_valid_and_canonical(sample_bars: pd.DataFrame) -> None:
    assert len(sample_bars) == 60_480
    assert str(sample_bars.index.dtype) == "datetime64[ns, UTC]"
    assert list(sample_bars.columns) == ["open", "high", "low", "close", "volume"]
    assert (sample_bars.dtypes == "float64").all()


def test_iso_strings_with_z_parse_as_utc(sample_bars: pd.DataFrame) -> None:
    raw = _raw(sample_bars)
    raw["timestamp"] = raw["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    bars = validate_bars(raw, "1m", source="t")
    assert bars.index.equals(sample_bars.index[:20])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.iloc[[0, 1, 3, 2, 4]], "row 4 (2024-11-20T00:02:00Z): timestamp is earlier than"),
        (lambda r: r.iloc[[0, 1, 2, 2, 3]], "row 4 (2024-11-20T00:02:00Z): timestamp repeats"),
        (lambda r: r.assign(high=r["low"] - 1.0), "row 1 (2024-11-20T00:00:00Z): inconsistent bar"),
        (
            lambda r: r.assign(close=[1.0, np.nan, 1.0, 1.0, 1.0]),
            "row 2 (2024-11-20T00:01:00Z): close is missing",
        ),
        (
            lambda r: r.assign(volume=[1.0, 1.0, -2.0, 1.0, 1.0]),
            "row 3 (2024-11-20T00:02:00Z): volume -2.0 is negative",
        ),
        (lambda r: r.drop(columns=["volume"]), "missing column(s) volume"),
        (
            lambda r: r.assign(open=["1", "2", "x", "4", "5"]),
            "row 3 (2024-11-20T00:02:00Z): open 'x' is not a number",
        ),
        (lambda r: r.assign(timestamp=r["timestamp"] + pd.Timedelta(seconds=30)), "not aligned to the 1m"),
        (lambda r: r.assign(open=0.0), "row 1 (2024-11-20T00:00:00Z): open 0.0 must be positive"),
        (
            lambda r: r.assign(timestamp=r["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")),
            "row 1: timestamp '2024-11-20 00:00:00' has no time zone",
        ),
    ],
    ids=[
        "unsorted",
        "duplicate",
        "high-below-low",
        "nan",
        "negative-volume",
        "missing-column",
        "not-numeric",
        "unaligned",
        "zero-price",
        "naive-time",
    ],
)
def test_invalid_bars_raise_an_error_naming_the_first_bad_row(
    sample_bars: pd.DataFrame, mutate: object, message: str
) -> None:
    raw = _raw(sample_bars, 5)
    assert callable(mutate)
    with pytest.raises(DataError, match="^src: .*") as info:
        validate_bars(mutate(raw), "1m", source="src")
    assert message in str(info.value)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=48), st.integers(min_value=0, max_value=10_000))
def test_any_swap_of_neighbours_is_reported_at_the_later_row(position: int, offset: int) -> None:
    times = pd.date_range("2024-01-01", periods=50, freq="1min", tz="UTC") + pd.Timedelta(minutes=offset)
    raw = pd.DataFrame(
        {"timestamp": times, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0}
    )
    order = list(range(50))
    order[position], order[position + 1] = order[position + 1], order[position]
    with pytest.raises(DataError, match=f"row {position + 2} "):
        validate_bars(raw.iloc[order], "1m", source="s")


def test_gaps_in_a_real_gappy_series_match_its_documented_count() -> None:
    bars = validate_bars(read_bar_file(FIXTURES / "XMR_BTC-1m.csv"), "1m", source="xmr")
    gaps = find_gaps(bars.index, "1m")
    assert len(bars) == 12_519
    assert (len(gaps), sum(g.missing for g in gaps)) == (1_416, 1_878)
    assert all(g.before - g.after == pd.Timedelta(minutes=g.missing + 1) for g in gaps)


def test_a_bad_tick_is_reported_as_a_spike_and_calm_bars_are_not(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:3000].copy()
    calm = find_spikes(bars.iloc[:2000])
    at = bars.index[2500]
    bars.loc[at, ["high", "close"]] = bars.loc[at, "close"] * 1.08
    spikes = find_spikes(bars)
    assert at in {s.time for s in spikes}
    assert all(s.time not in bars.index[:2000] or s in calm for s in spikes)


def test_flat_thin_market_bars_are_not_spikes() -> None:
    times = pd.date_range("2024-01-01", periods=500, freq="1min", tz="UTC")
    close = np.full(500, 0.03)
    close[::50] = 0.0301
    bars = pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=times
    )
    assert find_spikes(bars) == []
