"""Bayesian search over a model kind's hyper-parameters (Optuna TPE), scored by the validation loss.

Each trial fits the kind (:class:`~scalpbot.ml.registry.ModelKind`) on the train rows with the
hyper-parameters it draws (:meth:`~scalpbot.ml.registry.ModelKind.suggest`: the MLP's layer widths, dropout and
learning rate), for at most ``trial_epochs`` passes (early stopping on the validation loss as in the final
fit), and scores the best pass's validation loss (lower is better). The winner is then fitted with its full
passes by the train job. The test window is never seen; the validation window both selects the model here
and tunes the policy afterwards, as it already stops the training early.

Deterministic for a seed: the sampler is seeded and each trial trains with the base seed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from scalpbot.errors import ConfigError, ModelError
from scalpbot.ml.registry import DEFAULT_MODEL_KIND, LabelledRows, ModelKind, model_kind

__all__ = ["ModelSearch", "search_model"]


@dataclass(frozen=True, slots=True)
class ModelSearch:
    """The chosen hyper-parameters and every trial: its parameters, validation loss and passes run."""

    best: Any
    """The kind's hyper-parameters with the winner's searched values and the base's full passes."""
    best_val_loss: float
    best_record: dict[str, Any]
    """The searched hyper-parameters of the winner as the kind records them (``widths``, ``dropout`` ...)."""
    trials: tuple[dict[str, Any], ...]

    def summary(self) -> dict[str, Any]:
        """Return a JSON-ready record for the release manifest."""
        return {
            "trials": len(self.trials),
            "best": dict(self.best_record),
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
    base: Any,
    *,
    trials: int,
    trial_epochs: int = 10,
    kind: ModelKind | None = None,
    weights: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> ModelSearch:
    """Return the hyper-parameters of ``kind`` (default: the MLP) with the lowest validation loss over ``trials``.

    Arrays as :class:`~scalpbot.ml.registry.LabelledRows` holds them. ``base`` supplies everything not
    searched (batch size, patience, loss weights, seed, the passes of the result). A trial whose training
    diverges scores ``inf`` and is recorded; if every trial diverges, ``ModelError``. A kind with nothing to
    search is a ``ConfigError`` (set ``train.model_trials`` to 0). ``weights``: the training and validation
    rows' class-loss weights (:attr:`~scalpbot.ml.registry.LabelledRows.weight`).
    """
    if trials < 1:
        raise ConfigError(f"the model search needs at least 1 trial, got {trials}")
    if trial_epochs < 1:
        raise ConfigError(f"trial_epochs must be >= 1, got {trial_epochs}")
    kind = kind or model_kind(DEFAULT_MODEL_KIND)
    train = LabelledRows(x_train, y_class_train, y_vol_train, weights[0])
    validation = LabelledRows(x_val, y_class_val, y_vol_val, weights[1])
    history: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        hp = kind.suggest(trial, base, trial_epochs)
        if hp is None:
            raise ConfigError(
                f"model kind {kind.name!r} has no hyper-parameters to search; set train.model_trials = 0"
            )
        record = _searched(kind, hp, trial.params)
        try:
            fitted = kind.fit(train, validation, hp)
        except ModelError as e:
            history.append({**record, "val_loss": None, "error": str(e)})
            return float("inf")
        loss = float("inf") if fitted.best_val_loss is None else fitted.best_val_loss
        history.append({**record, "val_loss": loss, "epochs_run": fitted.epochs_run})
        return loss

    sampler = optuna.samplers.TPESampler(seed=_seed(base), n_startup_trials=min(5, trials))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.optimize(objective, n_trials=trials)
    best_trial = study.best_trial
    if not np.isfinite(best_trial.value if best_trial.value is not None else float("inf")):
        raise ModelError("every model search trial diverged; lower the learning rates or check the features")
    chosen = kind.suggest(optuna.trial.FixedTrial(best_trial.params), base, None)
    record = _searched(kind, chosen, best_trial.params)
    return ModelSearch(chosen, float(best_trial.value or 0.0), record, tuple(history))


def _searched(kind: ModelKind, hp: Any, drawn: dict[str, Any]) -> dict[str, Any]:
    """Return the drawn hyper-parameters as the kind records them (an MLP's widths as a list of layers)."""
    described = kind.describe(hp)
    return {name: described.get(name, value) for name, value in drawn.items()}


def _seed(base: Any) -> int:
    seed = getattr(base, "seed", 0)
    return int(seed) if seed is not None else 0
