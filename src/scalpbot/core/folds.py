"""Walk-forward folds over a bar series (pure): consecutive validation folds, purged and embargoed, then a test.

Positions are bar positions ``[start, stop)``. The usable bars ``[warmup, n)`` end with the **test** window
(``test_fraction`` of them), which only the gate sees. Before it, ``validation_fraction`` of the usable bars are
cut into ``n_folds`` consecutive **validation folds**. Fold ``k`` trains on the bars before its validation
window (expanding, or the last ``max_train_bars`` of them: rolling), ending ``horizon + embargo`` bars before
the window opens:

* **purge**: a label of decision bar ``t`` reads bars ``t + 1 .. t + horizon``; the training rows are those
  whose label window ends inside the training span (:func:`label_rows`), and the span ends ``horizon`` bars
  before the embargo (a margin for labels read by a longer horizon than the rows' own);
* **embargo**: ``embargo`` more bars between that and the validation window, so that features and labels of
  the last training rows are not serially entangled with the first validation rows.

Validation label rows stop ``horizon`` bars before their fold's end, so no label window crosses a fold boundary.
The test window is preceded by the same purge and embargo after the last fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalpbot.errors import ConfigError, DataError

__all__ = ["Fold", "WalkForward", "label_rows", "walk_forward"]


@dataclass(frozen=True, slots=True)
class Fold:
    """One walk-forward fold: bar spans ``[start, stop)`` to train on and to validate on."""

    train: tuple[int, int]
    validation: tuple[int, int]


@dataclass(frozen=True, slots=True)
class WalkForward:
    """Folds in time order, the untouched test window, and the purge (``horizon``) and ``embargo`` used."""

    folds: tuple[Fold, ...]
    test: tuple[int, int]
    horizon: int
    embargo: int

    @property
    def validation(self) -> tuple[int, int]:
        """Return the span covered by all validation folds."""
        return self.folds[0].validation[0], self.folds[-1].validation[1]

    @property
    def train(self) -> tuple[int, int]:
        """Return the span the last fold's model trains on (the model the release ships)."""
        return self.folds[-1].train


def label_rows(span: tuple[int, int], horizon: int, n_bars: int) -> np.ndarray:
    """Return a boolean mask of the decision rows in ``span`` whose label window ``t + 1 .. t + horizon`` stays
    inside the span."""
    mask = np.zeros(n_bars, dtype=bool)
    mask[span[0] : max(span[1] - horizon, span[0])] = True
    return mask


def walk_forward(
    n_bars: int,
    *,
    warmup: int,
    horizon: int,
    embargo: int,
    n_folds: int,
    validation_fraction: float,
    test_fraction: float,
    min_window_bars: int,
    max_train_bars: int | None = None,
) -> WalkForward:
    """Return ``n_folds`` purged and embargoed walk-forward folds and the test window over ``n_bars`` bars.

    ``min_window_bars``: fewest bars in each validation fold, the test window and the first fold's training
    span; ``DataError`` (how many bars are needed) otherwise.
    """
    if n_folds < 1:
        raise ConfigError(f"n_folds must be >= 1 validation fold; got {n_folds}")
    if horizon < 1 or embargo < 0:
        raise ConfigError(f"horizon must be >= 1 and embargo >= 0 bars; got {horizon}, {embargo}")
    usable = n_bars - warmup
    test_bars = round(usable * test_fraction)
    fold_bars = round(usable * validation_fraction / n_folds)
    gap = horizon + embargo
    test_start = n_bars - test_bars
    first_validation = test_start - gap - n_folds * fold_bars
    first_train = first_validation - gap - warmup
    if min(test_bars, fold_bars, first_train) < min_window_bars:
        share = min(validation_fraction / n_folds, test_fraction)
        need = warmup + int(min_window_bars / share) + (n_folds + 1) * gap
        raise DataError(
            f"{n_bars} bars are too few for {n_folds} validation fold(s) and a test window (need about {need}); "
            "fetch more history, raise train.days or lower train.folds"
        )
    folds = []
    for k in range(n_folds):
        start = first_validation + k * fold_bars
        stop = start + fold_bars
        train_stop = start - gap
        train_start = warmup if max_train_bars is None else max(warmup, train_stop - max_train_bars)
        folds.append(Fold((train_start, train_stop), (start, stop)))
    return WalkForward(tuple(folds), (test_start, n_bars), horizon, embargo)
