"""Permutation importance: a one-hot group (hour, minute) is one feature, shuffled with whole rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scalpbot.config import TrainSettings
from scalpbot.core.feature_set import OHLCV_FEATURES
from scalpbot.core.features import FEATURE_NAMES, ONE_HOT_GROUPS
from scalpbot.core.venue import default_venue
from scalpbot.jobs.learning import LabelConfig, labelled_rows
from scalpbot.jobs.train_evaluation import feature_importance, importance_units
from scalpbot.jobs.train_steps import Fitted, Prepared, split_folds
from scalpbot.state.dataset import SeriesId

MINUTES = [FEATURE_NAMES.index(name) for name in ONE_HOT_GROUPS["minute"]]
HOURS = [FEATURE_NAMES.index(name) for name in ONE_HOT_GROUPS["hour"]]


class MinuteReader:
    """A model kind whose model reads the minute of the hour only: ``long wins`` at minutes 0-29, ``short wins``
    at 30-59; it records whether every row it was given had exactly one minute and one hour set."""

    def __init__(self) -> None:
        self.rows_with_one_minute_and_hour = True

    def predict(self, model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        minutes, hours = x[:, MINUTES], x[:, HOURS]
        self.rows_with_one_minute_and_hour &= bool(
            (minutes.sum(axis=1) == 1.0).all() and (hours.sum(axis=1) == 1.0).all()
        )
        first_half = minutes[:, :30].sum(axis=1)
        probs = np.stack([0.1 + 0.8 * (1 - first_half), np.full(len(x), 0.1), 0.1 + 0.8 * first_half], axis=1)
        return probs.astype(np.float32), np.full(len(x), 0.002, dtype=np.float32)


def test_the_clock_groups_are_one_feature_each_in_the_order_of_their_first_column() -> None:
    units = importance_units(FEATURE_NAMES)
    names = [name for name, _ in units]
    assert names[: names.index("hour")] == list(FEATURE_NAMES[: FEATURE_NAMES.index("hour_0")])
    assert names[-2:] == ["hour", "minute"] and len(names) == len(FEATURE_NAMES) - 24 - 60 + 2
    assert dict(units)["hour"] == HOURS and dict(units)["minute"] == MINUTES
    assert sorted(j for _, columns in units for j in columns) == list(range(len(FEATURE_NAMES)))


def test_shuffling_the_minute_moves_its_rows_whole_and_scores_the_minute_alone(
    sample_bars: pd.DataFrame,
) -> None:
    # A known answer: the price rises through the first half of every hour and falls through the second, so
    # the labels follow the minute of the hour, which the model reads.
    index = sample_bars.index[:20_000]
    rng = np.random.default_rng(5)
    drift = np.where(index.minute < 30, 5e-4, -5e-4) + rng.normal(0.0, 1e-4, index.size)
    close = 100.0 * np.exp(np.cumsum(drift))
    open_ = np.concatenate(([100.0], close[:-1]))
    bars = pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) * 1.0001, "low": np.minimum(open_, close) * 0.9999,
         "close": close, "volume": 1.0},
        index=index,
    )  # fmt: skip
    features = OHLCV_FEATURES.build(bars).to_numpy()
    label = LabelConfig(horizon=10, k_sl=1.0, k_tp=1.0, fee=0.0)
    y, _, usable = labelled_rows(bars, features, label)
    early = usable & (index.minute < 20)
    assert (y[early] == 2).mean() > 0.9  # long wins from the early minutes of the hour
    prepared = Prepared(
        SeriesId("binance", "BTC/USDT", "1m"), bars, default_venue("binance", "BTC/USDT"), features,
        split_folds(len(bars), TrainSettings(), label.horizon), (label,), "key", 1,
    )  # fmt: skip
    kind = MinuteReader()
    fitted = Fitted(label, ("fold 1", "fold 2", "fold 3"), (), np.empty(0), np.empty(0), None)
    importance = feature_importance(prepared, fitted, kind, seed=3)  # type: ignore[arg-type]
    assert kind.rows_with_one_minute_and_hour
    assert next(iter(importance)) == "minute" and importance["minute"] > 0.1
    assert all(value == 0.0 for name, value in importance.items() if name != "minute")
