"""Order-flow columns pass validation when a source reports them, are refused naming the row when wrong, and are
never invented when it does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalpbot.core.bars import ORDER_FLOW_COLUMNS, validate_bars
from scalpbot.errors import DataError

from support.order_flow import with_order_flow


def _raw(sample_bars: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    return with_order_flow(sample_bars.iloc[:n]).reset_index()


def test_reported_order_flow_is_kept_after_the_ohlcv_columns(sample_bars: pd.DataFrame) -> None:
    raw = _raw(sample_bars)[
        ["taker_buy_volume", "timestamp", "trades", "open", "high", "low", "close", "volume"]
    ]
    bars = validate_bars(raw, "1m", source="src")
    assert list(bars.columns) == ["open", "high", "low", "close", "volume", *ORDER_FLOW_COLUMNS]
    assert (bars.dtypes == "float64").all()
    assert bars["trades"].tolist() == raw["trades"].tolist()


def test_a_source_without_order_flow_gets_no_zero_filled_columns(sample_bars: pd.DataFrame) -> None:
    bars = validate_bars(sample_bars.iloc[:5].reset_index(), "1m", source="src")
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]


def test_an_order_flow_column_empty_in_every_row_is_left_out(sample_bars: pd.DataFrame) -> None:
    raw = _raw(sample_bars).assign(trades=np.nan)
    bars = validate_bars(raw, "1m", source="src")
    assert list(bars.columns) == ["open", "high", "low", "close", "volume", "taker_buy_volume"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r.assign(trades=[3.0, 4.0, 2.5, 1.0, 1.0]),
            r"row 3 \(2024-11-20T00:02:00Z\): trades 2.5 is not a whole number",
        ),
        (
            lambda r: r.assign(trades=[3.0, -1.0, 2.0, 1.0, 1.0]),
            r"row 2 \(2024-11-20T00:01:00Z\): trades -1.0 is negative",
        ),
        (
            lambda r: r.assign(taker_buy_volume=r["volume"] * [0.5, 0.5, 0.5, 1.01, 0.5]),
            r"row 4 \(2024-11-20T00:03:00Z\): taker_buy_volume .* exceeds volume",
        ),
        (
            lambda r: r.assign(taker_buy_volume=[0.1, -0.1, 0.1, 0.1, 0.1]),
            r"row 2 \(2024-11-20T00:01:00Z\): taker_buy_volume -0.1 is negative",
        ),
        (
            lambda r: r.assign(trades=["3", "4", "many", "1", "1"]),
            r"row 3 \(2024-11-20T00:02:00Z\): trades 'many' is not a number",
        ),
    ],
    ids=[
        "fractional-trades",
        "negative-trades",
        "taker-above-volume",
        "negative-taker",
        "text",
    ],
)
def test_invalid_order_flow_raises_an_error_naming_the_row(
    sample_bars: pd.DataFrame, mutate: object, message: str
) -> None:
    assert callable(mutate)
    with pytest.raises(DataError, match=f"^src: {message}"):
        validate_bars(mutate(_raw(sample_bars)), "1m", source="src")


def test_taker_buy_volume_may_equal_the_whole_volume(sample_bars: pd.DataFrame) -> None:
    raw = _raw(sample_bars).assign(taker_buy_volume=lambda r: r["volume"])
    bars = validate_bars(raw, "1m", source="src")
    assert (bars["taker_buy_volume"] == bars["volume"]).all()


def test_an_empty_value_is_a_bar_without_order_flow(sample_bars: pd.DataFrame) -> None:
    raw = _raw(sample_bars).assign(
        trades=[3.0, 4.0, np.nan, 1.0, 1.0], taker_buy_volume=lambda r: r["volume"].where(r.index != 2)
    )
    bars = validate_bars(raw, "1m", source="src")
    assert np.isnan(bars["trades"].iloc[2]) and bars["trades"].notna().sum() == 4
