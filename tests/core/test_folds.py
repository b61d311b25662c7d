"""Walk-forward folds: time-ordered, purged of label overlap, embargoed, and the test window untouched."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalpbot.core.folds import label_rows, walk_forward
from scalpbot.errors import DataError


def _label_windows(mask: np.ndarray, horizon: int) -> list[tuple[int, int]]:
    """Return the bars ``[t + 1, t + horizon]`` each labelled row ``t`` of ``mask`` reads."""
    return [(t + 1, t + horizon) for t in np.flatnonzero(mask)]


@settings(max_examples=80, deadline=None)
@given(
    n_bars=st.integers(20_000, 200_000),
    horizon=st.integers(1, 240),
    embargo=st.integers(0, 240),
    n_folds=st.integers(1, 6),
    validation_fraction=st.floats(0.1, 0.5),
    test_fraction=st.floats(0.1, 0.3),
    rolling=st.one_of(st.none(), st.integers(2_000, 50_000)),
)
def test_no_label_window_crosses_a_fold_boundary_and_each_fold_is_embargoed(
    n_bars: int,
    horizon: int,
    embargo: int,
    n_folds: int,
    validation_fraction: float,
    test_fraction: float,
    rolling: int | None,
) -> None:
    try:
        wf = walk_forward(
            n_bars, warmup=959, horizon=horizon, embargo=embargo, n_folds=n_folds,
            validation_fraction=validation_fraction, test_fraction=test_fraction, min_window_bars=500,
            max_train_bars=rolling,
        )  # fmt: skip
    except DataError:
        return
    assert len(wf.folds) == n_folds
    assert wf.test[1] == n_bars and wf.folds[-1].validation[1] + horizon + embargo == wf.test[0]
    for k, fold in enumerate(wf.folds):
        train = label_rows(fold.train, horizon, n_bars)
        validation = label_rows(fold.validation, horizon, n_bars)
        assert train.any() and validation.any()
        assert fold.train[0] >= 959
        if rolling is not None:
            assert fold.train[1] - fold.train[0] <= rolling
        # Purge and embargo: the last training label reads nothing within `embargo` bars of the fold.
        last_read = max(end for _, end in _label_windows(train, horizon))
        assert last_read < fold.validation[0] - embargo
        # Validation labels stay inside their fold, which ends where the next one starts.
        assert all(
            fold.validation[0] < a and b < fold.validation[1] for a, b in _label_windows(validation, horizon)
        )
        if k + 1 < n_folds:
            assert fold.validation[1] == wf.folds[k + 1].validation[0]
        # Nothing any fold trains or validates on reads the test window.
        assert max(end for _, end in _label_windows(validation, horizon)) < wf.test[0]


def test_folds_expand_forward_in_time_and_the_shipped_model_trains_on_the_last_span() -> None:
    wf = walk_forward(
        100_000, warmup=959, horizon=30, embargo=60, n_folds=3, validation_fraction=0.3, test_fraction=0.2,
        min_window_bars=1440,
    )  # fmt: skip
    starts = [f.train[0] for f in wf.folds]
    ends = [f.train[1] for f in wf.folds]
    assert starts == [959] * 3 and ends == sorted(ends)
    assert [f.train[1] + 90 for f in wf.folds] == [f.validation[0] for f in wf.folds]
    assert wf.train == wf.folds[-1].train
    assert wf.validation == (wf.folds[0].validation[0], wf.folds[-1].validation[1])


def test_too_few_bars_are_refused_with_how_many_are_needed() -> None:
    with pytest.raises(DataError, match=r"too few for 3 validation fold\(s\).*need about"):
        walk_forward(
            8_000, warmup=959, horizon=30, embargo=60, n_folds=3, validation_fraction=0.3, test_fraction=0.2,
            min_window_bars=1440,
        )  # fmt: skip
