"""The model search: it picks the trial with the lowest validation loss, deterministically, within its grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scalpbot.errors import ConfigError
from scalpbot.ml.kinds.mlp import WIDTH_CHOICES
from scalpbot.ml.model import ModelHyperParams, configure_threads, train_model
from scalpbot.ml.model_search import search_model

from support.model_data import synthetic

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

BASE = ModelHyperParams(widths=(16,), batch_size=256, max_epochs=30, patience=2, seed=3)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    configure_threads(1)


def test_the_search_keeps_the_trial_with_the_lowest_validation_loss() -> None:
    train, val = synthetic(2_000, seed=1), synthetic(800, seed=2)
    search = search_model(*train, *val, BASE, trials=4, trial_epochs=3)
    losses = [t["val_loss"] for t in search.trials]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert search.best_val_loss == min(losses)
    best = search.trials[int(np.argmin(losses))]
    assert list(search.best.widths) == best["widths"] and tuple(best["widths"]) in WIDTH_CHOICES.values()
    assert (search.best.dropout, search.best.learning_rate) == (best["dropout"], best["learning_rate"])
    # Everything not searched comes from the base, including the epochs of the final fit.
    assert (
        dataclasses.replace(
            search.best, widths=BASE.widths, dropout=BASE.dropout, learning_rate=BASE.learning_rate
        )
        == BASE
    )
    assert all(t["epochs_run"] <= 3 for t in search.trials)
    # The winner's score is reproducible: the same hyper-parameters, the same epochs, the same loss.
    again = train_model(*train, *val, dataclasses.replace(search.best, max_epochs=3))
    assert again.best_val_loss == pytest.approx(search.best_val_loss, rel=1e-6)
    summary = search.summary()
    assert summary["trials"] == 4 and summary["best"]["widths"] == list(search.best.widths)


def test_the_search_is_deterministic_for_a_seed() -> None:
    train, val = synthetic(1_000, seed=4), synthetic(400, seed=5)
    first = search_model(*train, *val, BASE, trials=2, trial_epochs=2)
    second = search_model(*train, *val, BASE, trials=2, trial_epochs=2)
    assert first.trials == second.trials and first.best == second.best


def test_a_search_without_trials_is_refused() -> None:
    data = synthetic(100, seed=1)
    with pytest.raises(ConfigError, match="at least 1 trial"):
        search_model(*data, *data, BASE, trials=0)
