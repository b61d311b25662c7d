"""Bayesian search over the model's hyper-parameters (Optuna TPE), scored by the validation loss.

Each trial trains the model on the train rows with one set of hyper-parameters - layer widths, dropout,
learning rate - for at most ``trial_epochs`` epochs (early stopping on the validation loss as in the final
fit), and scores the best epoch's total validation loss (class cross-entropy plus the weighted volatility
loss; lower is better). The winner is then fitted with the full ``max_epochs`` by the train job. The test
window is never seen; the validation window both selects the model here and tunes the policy afterwards,
as it already stops the training early.

Deterministic for a seed: the sampler is seeded and each trial trains with the base seed.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from scalpbot.errors import ConfigError, ModelError
from scalpbot.ml.model import ModelHyperParams, train_model

__all__ = ["WIDTH_CHOICES", "ModelSearch", "search_model"]

WIDTH_CHOICES: dict[str, tuple[int, ...]] = {
    "32": (32,),
    "64": (64,),
    "64-64": (64, 64),
    "128-64": (128, 64),
    "128-128": (128, 128),
    "128-64-32": (128, 64, 32),
}
"""The layer stacks a trial may choose (names as Optuna records them)."""

_DROPOUT = (0.0, 0.4)
_LEARNING_RATE = (1e-4, 3e-3)


@dataclass(frozen=True, slots=True)
class ModelSearch:
    """The chosen hyper-parameters and every trial: its parameters, validation loss and epochs run."""

    best: ModelHyperParams
    best_val_loss: float
    trials: tuple[dict[str, Any], ...]

    def summary(self) -> dict[str, Any]:
        """Return a JSON-ready record for the release manifest."""
        return {
            "trials": len(self.trials),
            "best": {
                "widths": list(self.best.widths),
                "dropout": self.best.dropout,
                "learning_rate": self.best.learning_rate,
            },
            "best_val_loss": self.best_val_loss,
            "history": list(self.trials),
        }


def search_model(
    x_train: np.ndarray,
    y_class_train: np.ndarray,
    y_vol_train: np.ndarray,
    x_val: np.ndarray,
    y_class_val: np.ndarray,
    y_vol_val: np.ndarray,
    base: ModelHyperParams,
    *,
    trials: int,
    trial_epochs: int = 10,
) -> ModelSearch:
    """Return the hyper-parameters with the lowest validation loss over ``trials`` TPE trials.

    Arrays as for :func:`scalpbot.ml.model.train_model`. ``base`` supplies everything not searched (batch size,
    patience, loss weights, seed, ``max_epochs`` of the result). A trial whose training diverges scores
    ``inf`` and is recorded; if every trial diverges, ``ModelError``.
    """
    if trials < 1:
        raise ConfigError(f"the model search needs at least 1 trial, got {trials}")
    if trial_epochs < 1:
        raise ConfigError(f"trial_epochs must be >= 1, got {trial_epochs}")
    history: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        hp = dataclasses.replace(
            base,
            widths=WIDTH_CHOICES[trial.suggest_categorical("widths", list(WIDTH_CHOICES))],
            dropout=trial.suggest_float("dropout", *_DROPOUT),
            learning_rate=trial.suggest_float("learning_rate", *_LEARNING_RATE, log=True),
            max_epochs=min(trial_epochs, base.max_epochs),
        )
        record: dict[str, Any] = {
            "widths": list(hp.widths),
            "dropout": hp.dropout,
            "learning_rate": hp.learning_rate,
        }
        try:
            fitted = train_model(x_train, y_class_train, y_vol_train, x_val, y_class_val, y_vol_val, hp)
        except ModelError as e:
            history.append({**record, "val_loss": None, "error": str(e)})
            return float("inf")
        loss = float("inf") if fitted.best_val_loss is None else fitted.best_val_loss
        history.append({**record, "val_loss": loss, "epochs_run": fitted.epochs_run})
        return loss

    sampler = optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=min(5, trials))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.optimize(objective, n_trials=trials)
    best_trial = study.best_trial
    if not np.isfinite(best_trial.value if best_trial.value is not None else float("inf")):
        raise ModelError("every model search trial diverged; lower the learning rates or check the features")
    chosen = dataclasses.replace(
        base,
        widths=WIDTH_CHOICES[str(best_trial.params["widths"])],
        dropout=float(best_trial.params["dropout"]),
        learning_rate=float(best_trial.params["learning_rate"]),
    )
    return ModelSearch(chosen, float(best_trial.value or 0.0), tuple(history))
