"""The ``mlp`` model kind: the Keras MLP of :mod:`scalpbot.ml.model` behind the :class:`ModelKind` protocol.

Its artifact is ``model.keras`` (weights, compile config and optimizer state, so it fine-tunes where it left
off); its ONNX export is the Keras graph. The model search draws the layer widths, the dropout and the
learning rate (log scale).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from scalpbot.ml import model as keras_mlp
from scalpbot.ml.kinds._keras import KerasArtifacts
from scalpbot.ml.model import ModelHyperParams
from scalpbot.ml.registry import LabelledRows, TrainedModel

__all__ = ["KIND", "WIDTH_CHOICES", "MlpKind"]

WIDTH_CHOICES: dict[str, tuple[int, ...]] = {
    "32": (32,),
    "64": (64,),
    "64-64": (64, 64),
    "128-64": (128, 64),
    "128-128": (128, 128),
    "128-64-32": (128, 64, 32),
}
"""The layer stacks a model search trial may choose (names as Optuna records them)."""

_DROPOUT = (0.0, 0.4)
_LEARNING_RATE = (1e-4, 3e-3)


class MlpKind(KerasArtifacts):
    """The Keras MLP with a class-probability head and a volatility head (see :mod:`scalpbot.ml.model`)."""

    name = "mlp"
    artifact = "model.keras"
    cannot_fine_tune: str | None = None

    def hyper_parameters(self, train: Mapping[str, Any]) -> ModelHyperParams:
        """Return the MLP's hyper-parameters from ``train.widths``, ``train.max_epochs`` and ``train.seed``."""
        return ModelHyperParams(
            widths=tuple(int(w) for w in train["widths"]),
            max_epochs=int(train["max_epochs"]),
            seed=int(train["seed"]),
        )

    def describe(self, hp: ModelHyperParams) -> dict[str, Any]:
        """Return the searched and configured hyper-parameters as the manifest records them."""
        return {
            "widths": list(hp.widths),
            "dropout": hp.dropout,
            "learning_rate": hp.learning_rate,
            "max_epochs": hp.max_epochs,
            "seed": hp.seed,
        }

    def threads(self, n: int) -> None:
        """Set torch's CPU threads."""
        keras_mlp.configure_threads(n)

    def fit(
        self,
        train: LabelledRows,
        validation: LabelledRows,
        hp: ModelHyperParams,
        *,
        show_progress: bool = False,
    ) -> TrainedModel:
        """Train with early stopping on the validation loss (:func:`scalpbot.ml.model.train_model`)."""
        return keras_mlp.train_model(
            train.x, train.y_class, train.y_vol,
            validation.x, validation.y_class, validation.y_vol,
            hp, show_progress=show_progress, weight_train=train.weight, weight_val=validation.weight,
        )  # fmt: skip

    def suggest(self, trial: Any, base: ModelHyperParams, budget: int | None) -> ModelHyperParams:
        """Draw the widths, dropout and learning rate; cap the epochs at ``budget``."""
        return dataclasses.replace(
            base,
            widths=WIDTH_CHOICES[str(trial.suggest_categorical("widths", list(WIDTH_CHOICES)))],
            dropout=float(trial.suggest_float("dropout", *_DROPOUT)),
            learning_rate=float(trial.suggest_float("learning_rate", *_LEARNING_RATE, log=True)),
            max_epochs=base.max_epochs if budget is None else min(budget, base.max_epochs),
        )


KIND = MlpKind()
"""The registered instance (``MODEL_KINDS["mlp"]``)."""
