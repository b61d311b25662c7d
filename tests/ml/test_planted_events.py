"""The known-answer cases plant their events where the case says, and nowhere a clock feature could find them
(``support.learning_cases``; the learning runs over them are ``test_learning_known_answers.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalpbot.core.policy import StrategyParams

from support.learning_cases import (
    CONFIDENCE_GRID,
    TIME_OF_DAY_STARTS,
    Effect,
    confidence_sweep,
    effect_case,
    events_taken,
    oracle_net,
    plant,
)


def _bars(days: int) -> pd.DataFrame:
    n = days * 1440
    index = pd.date_range("2024-03-01", periods=n, freq="1min", tz="UTC")
    price = 60_000.0 * np.exp(np.cumsum(np.random.default_rng(1).normal(0.0, 5e-4, n)))
    return pd.DataFrame(
        {"open": price, "high": price * 1.0005, "low": price * 0.9995, "close": price, "volume": 3.0},
        index=index,
    )


@pytest.mark.parametrize("shape", ["shock reversion", "volume momentum"])
@given(seed=st.integers(0, 2**32 - 1), days=st.integers(2, 20), per_day=st.sampled_from([1.0, 6.0, 15.0]))
def test_shocks_and_bursts_are_as_many_as_asked_spaced_three_holds_apart_and_inside_the_bars(
    shape: str, seed: int, days: int, per_day: float
) -> None:
    effect = Effect(shape, 0.01, per_day=per_day)
    bars = _bars(days)
    events = plant(bars, effect, np.random.default_rng(seed)).events
    gap = 3 * effect.hold
    assert len(events) == min(int(per_day * days), (len(bars) - gap) // (gap + 1))
    assert (np.diff(events) > gap).all()
    assert events[0] >= gap and events[-1] < len(bars) - gap


@pytest.mark.parametrize("shape", ["shock reversion", "volume momentum"])
def test_shocks_and_bursts_fall_at_any_minute_so_the_clock_cannot_tell_them(shape: str) -> None:
    """Events every 90 minutes from midnight would all sit at minute 0 or 30 of an hour; random ones spread
    over the hour and the day as evenly as chance allows."""
    bars = _bars(40)
    events = plant(bars, Effect(shape, 0.01), np.random.default_rng(0)).events
    minutes = bars.index[events].minute
    hours = bars.index[events].hour
    assert len(events) == 240
    assert len(set(minutes)) >= 50 and np.bincount(minutes, minlength=60).max() <= 12
    assert len(set(hours)) == 24 and np.bincount(hours, minlength=24).max() <= 25


def test_time_of_day_drifts_start_at_their_minutes_every_day() -> None:
    bars = _bars(5)
    effect = Effect("time of day", 0.01, per_day=4.0)
    planted = plant(bars, effect, np.random.default_rng(0))
    starts = bars.index[planted.events + 1]
    assert sorted(set(starts.hour * 60 + starts.minute)) == list(TIME_OF_DAY_STARTS)
    drift = np.log(planted.bars["close"] / bars["close"]).to_numpy()
    first = planted.events[0]
    assert drift[first + effect.hold] - drift[first] == pytest.approx(effect.drift)


@pytest.mark.parametrize("shape", ["shock reversion", "volume momentum"])
def test_a_short_edge_is_the_mirror_image_of_the_long_one_and_its_oracle_sells(shape: str) -> None:
    """Same events, same burst volumes; the shock, the burst's close and the drift change sign. The oracle that
    sells at each event of the short edge earns the drift less the round trip, as the one that buys the long
    edge does: the bars' own moves over the holds, which one earns and the other pays, cancel in their mean."""
    bars = _bars(10)
    up = plant(bars, Effect(shape, 0.01), np.random.default_rng(3))
    down = plant(bars, Effect(shape, 0.01, side=-1), np.random.default_rng(3))
    assert (up.events == down.events).all()
    assert (up.bars["volume"] == down.bars["volume"]).all()
    lifted = np.log(up.bars["close"] / bars["close"]).to_numpy()
    dropped = np.log(down.bars["close"] / bars["close"]).to_numpy()
    np.testing.assert_allclose(dropped, -lifted, atol=1e-12)
    e = up.events[0]
    assert dropped[e + Effect(shape, 0.01).hold] - dropped[e] == pytest.approx(-0.01)
    long_net = oracle_net(up.bars, up.events, 30, fee=0.0005)
    short_net = oracle_net(down.bars, down.events, 30, fee=0.0005, side=-1)
    drift_less_costs = len(up.events) * (0.01 - 2 * 0.0005)
    assert (long_net + short_net) / 2 == pytest.approx(drift_less_costs, rel=0.02)
    assert short_net > drift_less_costs / 2
    assert oracle_net(down.bars, down.events, 30, fee=0.0005) < 0  # buying the short edge loses


def test_an_event_counts_as_taken_when_a_trade_was_decided_in_its_drift_and_on_time_on_its_bar() -> None:
    bars = _bars(1)
    events = np.array([100, 400, 700, 1000])
    decided = [100, 430, 431, 705, 1020, 1030, 1200]  # on time, just after the drift, two in one drift, none
    trades = pd.DataFrame({"entry_time": bars.index[np.array(decided) + 1]})
    assert events_taken(bars, trades, events, hold=30) == (3, 1)
    assert events_taken(bars, trades.iloc[:0], events, hold=30) == (0, 0)


def test_the_hindsight_sweep_finds_the_confidence_floor_that_keeps_the_winners_and_drops_the_losers() -> None:
    """Winners at P(long) 0.8, losers at 0.6 and at 0.9: every floor above 0.6 drops the 0.6 losers, only floors
    above 0.8 drop the winners too, and the 0.9 loser trades at every floor up to 0.9. The sweep tries the tuned
    floor and the grid, keeps the lowest of the best floors (the tuned one on a tie) and leaves the rest of the
    policy as tuned."""
    index = pd.date_range("2024-03-01", periods=200, freq="1min", tz="UTC")
    p_long = np.full(200, 0.2)
    payoff = np.zeros(200)
    p_long[[10, 50, 90]], payoff[[10, 50, 90]] = 0.8, 1.0
    p_long[[20, 60, 100, 140]], payoff[[20, 60, 100, 140]] = 0.6, -0.5
    p_long[150], payoff[150] = 0.9, -0.25
    probs = np.column_stack([np.zeros(200), 1.0 - p_long, p_long])
    tuned = StrategyParams(
        entry_threshold=0.1, min_confidence=0.93, sl_mult=0.7, tp_mult=1.5, allow_short=False
    )
    seen: list[tuple[float, float]] = []

    def score(frame: pd.DataFrame) -> float:
        seen.append((float(frame["sl"].max()), float(frame["tp"].max())))
        return float(payoff[frame["side"].to_numpy() == 1].sum())

    floor, best = confidence_sweep(index, probs, np.full(200, 0.002), tuned, score)
    assert (floor, best) == (0.625, 2.75)  # 0.6 < 0.625 <= 0.8: three winners less one 0.9 loser
    assert len(seen) == 1 + len(CONFIDENCE_GRID) and CONFIDENCE_GRID[0] == 0.4 and CONFIDENCE_GRID[-1] == 0.95
    tie = confidence_sweep(index, probs, np.full(200, 0.002), tuned, lambda frame: 0.0)
    assert tie == (0.93, 0.0)  # on a tie, the tuned floor (not in the grid)
    assert seen[1] == (pytest.approx(0.7 * 0.002), pytest.approx(1.5 * 0.002))  # the stops as tuned


def test_an_effect_of_ones_own_is_read_from_its_text_and_a_bad_one_names_the_key() -> None:
    case = effect_case("shape=volume momentum, drift=0.5%, hold=15, per_day=3, side=short, market=swap")
    assert case.effect == Effect("volume momentum", 0.005, hold=15, per_day=3.0, side=-1)
    assert case.market == "swap" and case.above_costs  # 0.5 % >= twice the swap's 0.1 % round trip
    assert case.name == "volume momentum, drift -0.50%, hold 15, 3/day, swap"
    spot = effect_case("shape=time of day,drift=0.003")
    assert spot.effect == Effect("time of day", 0.003, per_day=4.0) and spot.market == "spot"
    assert not spot.above_costs  # under twice the spot's 0.2 % round trip
    for text, named in (
        ("shape=sideways", "shape takes one of"),
        ("shape=time of day,hold=1.5", "hold takes whole bars"),
        ("shape=time of day,drift=-1%", "drift takes a number above 0"),
        ("shape=time of day,drift=lots", "drift takes a number"),
        ("shape=time of day,side=up", "side takes long or short"),
        ("shape=time of day,holdd=15", "'holdd=15' is not key=value"),
    ):
        with pytest.raises(ValueError, match=named):
            effect_case(text)
