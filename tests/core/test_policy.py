"""The policy: predictions to decisions, one bar and vectorized alike; params and bounds as validated values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.policy import (
    Decision,
    ParamBounds,
    StrategyParams,
    decide,
    decide_arrays,
    signals_frame,
)
from scalpbot.errors import ConfigError, DataError

probability = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 1.0, math.nan, math.inf]))
volatility = st.one_of(st.floats(1e-5, 0.05), st.sampled_from([0.0, -0.001, math.nan, math.inf]))
params_strategy = st.builds(
    StrategyParams,
    entry_threshold=st.floats(0.0, 1.0),
    min_confidence=st.floats(0.0, 1.0),
    sl_mult=st.floats(0.01, 10.0),
    tp_mult=st.floats(0.01, 10.0),
    min_stop=st.floats(1e-5, 0.001),
    max_stop=st.floats(0.001, 0.5),
    risk_per_trade=st.floats(1e-4, 0.2),
    max_position=st.floats(0.01, 100.0),
    max_hold=st.integers(0, 500),
    full_size_edge=st.floats(0.0, 1.0),
    allow_short=st.booleans(),
)


def probs_row(p_short: float, p_neither: float, p_long: float) -> np.ndarray:
    return np.array([p_short, p_neither, p_long])


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(probability, probability, probability, volatility), min_size=1, max_size=30),
    params=params_strategy,
)
def test_decide_equals_decide_arrays_to_the_bit(
    rows: list[tuple[float, float, float, float]], params: StrategyParams
) -> None:
    probs = np.array([row[:3] for row in rows])
    vol = np.array([row[3] for row in rows])
    side, size, sl, tp, max_hold = decide_arrays(probs, vol, params)
    assert side.dtype == np.int8
    assert max_hold.dtype == np.int64
    for t in range(len(rows)):
        one = decide(probs[t], float(vol[t]), params)
        assert (one.side, one.size, one.sl, one.tp) == (side[t], size[t], sl[t], tp[t])
        assert max_hold[t] == params.max_hold


@settings(max_examples=200, deadline=None)
@given(p=st.tuples(probability, probability, probability), vol=volatility, params=params_strategy)
def test_side_follows_the_sign_of_the_edge_and_the_entry_rules(
    p: tuple[float, float, float], vol: float, params: StrategyParams
) -> None:
    decision = decide(probs_row(*p), vol, params)
    p_short, _, p_long = p
    edge = p_long - p_short
    if decision.side == 0:
        assert (decision.size, decision.sl, decision.tp) == (0.0, 0.0, 0.0)
        return
    assert all(math.isfinite(x) for x in (*p, vol)) and vol > 0.0
    assert decision.side == (1 if edge > 0 else -1)
    assert abs(edge) >= params.entry_threshold
    assert max(p_long, p_short) >= params.min_confidence
    assert params.allow_short or decision.side == 1
    assert params.min_stop <= decision.sl <= params.max_stop
    assert params.min_stop <= decision.tp <= params.max_stop
    assert 0.0 < decision.size <= params.max_position
    # the loss at the stop never exceeds the risk budget
    assert decision.size * decision.sl <= params.risk_per_trade * (1 + 1e-12)


def test_size_is_risk_over_stop_distance_at_full_edge() -> None:
    params = StrategyParams(
        entry_threshold=0.1,
        sl_mult=1.0,
        tp_mult=2.0,
        risk_per_trade=0.005,
        max_position=10.0,
        full_size_edge=0.3,
    )
    decision = decide(probs_row(0.1, 0.3, 0.6), 0.002, params)
    assert decision == Decision(side=1, size=0.005 / 0.002, sl=0.002, tp=0.004)


def test_size_scales_linearly_with_edge_below_full_size_edge() -> None:
    params = StrategyParams(entry_threshold=0.05, risk_per_trade=0.004, max_position=10.0, full_size_edge=0.4)
    decision = decide(probs_row(0.3, 0.3, 0.4), 0.002, params)  # edge 0.1 = a quarter of 0.4
    assert decision.size == pytest.approx(0.004 / 0.002 * 0.25)


def test_size_is_capped_by_max_position() -> None:
    params = StrategyParams(risk_per_trade=0.01, max_position=1.5, full_size_edge=0.0)
    assert decide(probs_row(0.0, 0.2, 0.8), 0.001, params).size == 1.5


def test_stops_respect_floor_and_cap() -> None:
    params = StrategyParams(sl_mult=1.0, tp_mult=100.0, min_stop=0.001, max_stop=0.02)
    decision = decide(probs_row(0.0, 0.5, 0.5), 0.0001, params)
    assert (decision.sl, decision.tp) == (0.001, 0.01)
    assert decide(probs_row(0.0, 0.5, 0.5), 0.001, params).tp == 0.02


def test_no_entry_under_threshold_or_confidence() -> None:
    params = StrategyParams(entry_threshold=0.2, min_confidence=0.5)
    assert decide(probs_row(0.3, 0.21, 0.49), 0.002, params).side == 0  # edge 0.19
    assert decide(probs_row(0.2, 0.35, 0.45), 0.002, params).side == 0  # edge 0.25, p_win 0.45
    assert decide(probs_row(0.2, 0.3, 0.5), 0.002, params).side == 1
    assert decide(probs_row(0.55, 0.3, 0.15), 0.002, params).side == -1


def test_no_short_when_shorts_are_not_allowed() -> None:
    assert decide(probs_row(0.8, 0.1, 0.1), 0.002, StrategyParams(allow_short=False)).side == 0


@pytest.mark.parametrize("vol", [0.0, -0.002, math.nan, math.inf])
def test_no_trade_without_a_finite_positive_volatility(vol: float) -> None:
    assert decide(probs_row(0.0, 0.0, 1.0), vol, StrategyParams()) == Decision(0, 0.0, 0.0, 0.0)


def test_no_trade_on_non_finite_probabilities() -> None:
    assert decide(probs_row(0.0, math.nan, 1.0), 0.002, StrategyParams()).side == 0


def test_decide_rejects_probabilities_of_the_wrong_shape() -> None:
    with pytest.raises(DataError, match=r"shape \(3,\)"):
        decide(np.array([0.5, 0.5]), 0.002, StrategyParams())
    with pytest.raises(DataError, match=r"\(n, 3\)"):
        decide_arrays(np.zeros((4, 2)), np.zeros(4), StrategyParams())
    with pytest.raises(DataError, match="vol must have shape"):
        decide_arrays(np.zeros((4, 3)), np.zeros(5), StrategyParams())


def test_signals_frame_has_the_backtest_columns_on_the_bar_index() -> None:
    index = pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC")
    probs = np.array([[0.1, 0.3, 0.6], [0.3, 0.4, 0.3], [0.7, 0.2, 0.1]])
    frame = signals_frame(index, probs, np.full(3, 0.002), StrategyParams(max_hold=7))
    assert list(frame.columns) == ["side", "size", "sl", "tp", "max_hold"]
    assert frame.index.equals(index)
    assert frame["side"].tolist() == [1, 0, -1]
    assert frame["max_hold"].tolist() == [7, 7, 7]
    with pytest.raises(DataError, match="one per bar"):
        signals_frame(index[:2], probs, np.full(3, 0.002), StrategyParams())


def test_params_round_trip_through_json() -> None:
    params = StrategyParams(entry_threshold=0.25, sl_mult=1.7, max_hold=45, allow_short=False)
    assert StrategyParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    bounds = ParamBounds({"sl_mult": (0.5, 3.0), "max_hold": (10, 60)}, base=params)
    restored = ParamBounds.from_dict(json.loads(json.dumps(bounds.to_dict())))
    assert restored.ranges == bounds.ranges
    assert restored.base == params


def test_unknown_param_key_is_rejected_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="did you mean 'entry_threshold'"):
        StrategyParams.from_dict({"entry_treshold": 0.2})
    with pytest.raises(ConfigError, match="did you mean 'ranges'"):
        ParamBounds.from_dict({"range": {}})
    with pytest.raises(ConfigError, match="did you mean 'sl_mult'"):
        ParamBounds({"sl_mul": (1.0, 2.0)})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"risk_per_trade": 0.0}, "risk_per_trade must be"),
        ({"entry_threshold": 1.5}, "entry_threshold must be"),
        ({"max_hold": 2.5}, "whole number"),
        ({"sl_mult": True}, "must be a number"),
        ({"min_stop": 0.01, "max_stop": 0.005}, "must not exceed max_stop"),
        ({"allow_short": "yes"}, "true or false"),
    ],
)
def test_invalid_params_are_rejected_with_how_to_fix(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StrategyParams.from_dict(changes)


def test_bounds_clip_and_apply_values_within_ranges() -> None:
    bounds = ParamBounds({"entry_threshold": (0.1, 0.3), "max_hold": (10, 20), "sl_mult": (1.0, 1.0)})
    assert bounds.names == ("entry_threshold", "sl_mult", "max_hold")
    assert bounds.low.tolist() == [0.1, 1.0, 10.0]
    params = bounds.with_values({"entry_threshold": 0.9, "max_hold": 12.6})
    assert (params.entry_threshold, params.max_hold) == (0.3, 13)
    assert bounds.contains(params)
    clipped = bounds.clip(StrategyParams(entry_threshold=0.05, max_hold=99, sl_mult=2.0))
    assert (clipped.entry_threshold, clipped.max_hold, clipped.sl_mult) == (0.1, 20, 1.0)
    with pytest.raises(ConfigError, match="exceeds high"):
        ParamBounds({"tp_mult": (3.0, 1.0)})
    with pytest.raises(ConfigError, match="cannot be tuned"):
        ParamBounds({"allow_short": (0, 1)})


def test_bounds_including_a_policy_start_from_it_and_widen_only_what_it_lies_outside() -> None:
    default = ParamBounds.default()
    inside = StrategyParams(sl_mult=1.2, max_hold=45)
    assert default.including(inside) == ParamBounds(default.ranges, base=inside)
    outside = StrategyParams(sl_mult=0.25, tp_mult=8.0, max_hold=600, entry_threshold=0.3)
    widened = default.including(outside)
    assert widened.base == outside and widened.contains(outside) and widened.clip(outside) == outside
    assert widened.ranges == {
        **default.ranges,
        "sl_mult": (0.25, default.ranges["sl_mult"][1]),
        "tp_mult": (default.ranges["tp_mult"][0], 8.0),
        "max_hold": (default.ranges["max_hold"][0], 600),
    }


def test_default_bounds_contain_valid_params_at_both_ends() -> None:
    bounds = ParamBounds.default()
    low = bounds.with_values(dict(zip(bounds.names, bounds.low, strict=True)))
    high = bounds.with_values(dict(zip(bounds.names, bounds.high, strict=True)))
    assert bounds.contains(low) and bounds.contains(high)
