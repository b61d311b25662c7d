"""The one codec: signals, fills and positions round-trip through JSON exactly, and bad input is refused."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalpbot.core.execution import Fill, Position, Signal
from scalpbot.state.codec import (
    fill_from_dict,
    fill_to_dict,
    position_from_dict,
    position_to_dict,
    signal_from_dict,
    signal_to_dict,
)

T0 = pd.Timestamp("2024-03-01 10:00", tz="UTC")
prices = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False)
distances = st.one_of(st.just(math.inf), st.floats(min_value=1e-6, max_value=0.5))


def through_json(data: dict[str, object]) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(json.dumps(data, allow_nan=False))
    return loaded


@given(st.sampled_from([-1, 0, 1]), st.floats(0.0, 1.0), distances, distances, st.integers(0, 10_000))
def test_a_signal_round_trips_with_infinite_distances(
    side: int, size: float, sl: float, tp: float, hold: int
) -> None:
    signal = Signal(T0, side, size, sl, tp, hold)
    assert signal_from_dict(through_json(signal_to_dict(signal))) == signal


def test_a_signal_without_distances_keeps_them_unknown() -> None:
    back = signal_from_dict(through_json(signal_to_dict(Signal(T0, 0, math.nan, math.nan, math.inf, 0))))
    assert math.isnan(back.size) and math.isnan(back.sl) and back.tp == math.inf


@given(prices, prices, st.one_of(st.none(), st.floats(-1e6, 1e6)), st.one_of(st.none(), st.just("sbentry")))
def test_a_fill_round_trips(qty: float, price: float, pnl: float | None, entry: str | None) -> None:
    fill = Fill("sbexit", T0 + pd.Timedelta(minutes=3), -1, qty, price, 0.25, "tp", pnl, entry)
    assert fill_from_dict(through_json(fill_to_dict(fill))) == fill


@given(prices, prices, st.one_of(st.just(math.inf), prices), st.integers(0, 500))
def test_a_position_round_trips(qty: float, entry: float, tp_price: float, hold: int) -> None:
    position = Position(1, qty, entry, T0, entry * 0.99, tp_price, hold, "sbentry")
    assert position_from_dict(through_json(position_to_dict(position))) == position


def test_a_position_whose_stop_is_missing_on_the_venue_keeps_it_missing() -> None:
    position = Position(-1, 0.1, 100.0, T0, math.nan, 90.0, 0, "sbentry")
    data = through_json(position_to_dict(position))
    assert data["sl_price"] is None and math.isnan(position_from_dict(data).sl_price)


@pytest.mark.parametrize(
    ("field", "value"),
    [("qty", "many"), ("qty", True), ("time", "yesterday"), ("time", "2024-03-01T10:00:00")],
)
def test_a_malformed_fill_is_a_value_error(field: str, value: object) -> None:
    data = fill_to_dict(Fill("sbx", T0, 1, 0.1, 100.0, 0.1, "entry"))
    with pytest.raises(ValueError):  # noqa: PT011  (each case has its own message)
        fill_from_dict({**data, field: value})


def test_a_nan_quantity_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="NaN"):
        position_to_dict(Position(1, math.nan, 100.0, T0, 99.0, 101.0, 0, "sbentry"))
