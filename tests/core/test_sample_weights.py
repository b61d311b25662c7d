"""Return-attribution sample weights (``scalpbot.core.sample_weights``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalpbot.core.sample_weights import label_moves, mean_one
from scalpbot.errors import ConfigError


def _bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 1e-4, n))
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": 1.0,
        },
        index=index,
    )


def test_a_rows_move_runs_from_the_next_open_to_the_close_at_the_horizon() -> None:
    bars = _bars(50)
    moves = label_moves(bars, 5)
    o, c = bars["open"].to_numpy(), bars["close"].to_numpy()
    assert moves[0] == pytest.approx(abs(np.log(c[5] / o[1])))
    assert moves[44] == pytest.approx(abs(np.log(c[49] / o[45])))
    assert np.isnan(moves[45:]).all() and np.isfinite(moves[:45]).all()
    assert np.isnan(label_moves(bars.iloc[:5], 5)).all()
    exits = np.full(50, 5)
    exits[0], exits[1], exits[2] = 2, 0, 6  # a barrier at t + 2; out of 1 .. horizon: no move
    barrier = label_moves(bars, 5, exits)
    assert barrier[0] == pytest.approx(abs(np.log(c[2] / o[1])))
    assert np.isnan(barrier[1]) and np.isnan(barrier[2])
    np.testing.assert_array_equal(barrier[3:], moves[3:])


@given(t=st.integers(0, 180), horizon=st.integers(1, 19))
def test_a_rows_move_reads_no_bar_outside_its_label_window(t: int, horizon: int) -> None:
    bars = _bars(200, seed=t)
    moved = bars.copy()
    moved.iloc[: t + 1] *= 1.3  # the decision bar and before
    moved.iloc[t + horizon + 1 :] *= 0.7  # after the window
    assert label_moves(moved, horizon)[t] == pytest.approx(label_moves(bars, horizon)[t], rel=1e-12)


def test_weights_scale_to_a_mean_of_one_and_a_horizon_of_no_bar_is_refused() -> None:
    w = mean_one(np.array([0.0, 1.0, 3.0]))
    assert w.dtype == np.float32 and w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(w, [0.0, 0.75, 2.25])
    np.testing.assert_array_equal(mean_one(np.zeros(4)), np.ones(4))
    with pytest.raises(ConfigError):
        label_moves(_bars(10), 0)
