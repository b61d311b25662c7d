"""The ``conv1d`` model kind: a Keras 1-D temporal convolution over the raw trailing window, beside the features.

Input: one row of :func:`scalpbot.core.window_features.model_inputs` with ``hp.window`` bars, the feature
matrix's columns then the window's (``window * 3``, bar-major). Architecture (Keras 3 functional API)::

    features [batch, n_features + window * 3] float32
      → Normalization (adapted on the training rows)
      → SplitColumns → engineered features [batch, n_features] and window [batch, window * 3] → [window, 3]
      window → Conv1D(filters, kernel_size, relu) → Conv1D(filters, kernel_size, relu, stride 2) → Flatten
      → Concatenate with the engineered features
      → the MLP's dense layers and two heads (:func:`scalpbot.ml.model.dense_heads`)

Training, losses, early stopping, artifacts (``model.keras``, fine-tuned where it left off) and the ONNX export
are the MLP's (:mod:`scalpbot.ml.model`), so the export honours the same inference contract: one float32 input
[batch, columns], probabilities [batch, 3] and volatility [batch, 1]. The model search draws the filters, the
kernel size, the dense widths, the dropout and the learning rate; the window stays the configured one (it sets
the input columns the searched models share).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from scalpbot.core.window_features import MAX_WINDOW, WINDOW_CHANNELS
from scalpbot.errors import ConfigError
from scalpbot.ml import model as keras_model
from scalpbot.ml.kinds._keras import KerasArtifacts
from scalpbot.ml.model import ModelHyperParams
from scalpbot.ml.registry import LabelledRows, TrainedModel

__all__ = ["KIND", "Conv1dHyperParams", "Conv1dKind", "SplitColumns"]

_FILTERS = (8, 16, 32)
_KERNELS = (3, 5)
_WIDTHS: dict[str, tuple[int, ...]] = {"32": (32,), "64": (64,), "64-32": (64, 32)}
_DROPOUT = (0.0, 0.4)
_LEARNING_RATE = (1e-4, 3e-3)


@dataclass(frozen=True, slots=True)
class Conv1dHyperParams(ModelHyperParams):
    """The MLP's training hyper-parameters plus the window (bars), the filters and the kernel size (bars)."""

    widths: tuple[int, ...] = (64,)
    window: int = 32
    filters: int = 16
    kernel_size: int = 5

    def __post_init__(self) -> None:
        ModelHyperParams.__post_init__(self)
        problems = []
        if not 1 <= self.window <= MAX_WINDOW:
            problems.append(f"window must be 1 to {MAX_WINDOW} bars, got {self.window}")
        if self.filters < 1:
            problems.append(f"filters must be >= 1, got {self.filters}")
        if self.kernel_size < 1 or 2 * self.kernel_size > self.window + 1:
            problems.append(
                f"kernel_size must be >= 1 and fit twice in the window of {self.window} bars, "
                f"got {self.kernel_size}"
            )
        if problems:
            raise ConfigError("invalid conv1d hyper-parameters: " + "; ".join(problems))


@keras.saving.register_keras_serializable(package="scalpbot", name="SplitColumns")
class SplitColumns(keras.layers.Layer):  # type: ignore[misc]
    """Split [batch, columns] into the first ``head`` columns and the rest (no Python lambda: safe mode loads it)."""

    def __init__(self, head: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.head = int(head)

    def call(self, x: Any) -> list[Any]:
        return [x[:, : self.head], x[:, self.head :]]

    def compute_output_shape(self, shape: tuple[int | None, ...]) -> list[tuple[int | None, ...]]:
        rest = None if shape[1] is None else shape[1] - self.head
        return [(shape[0], self.head), (shape[0], rest)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "head": self.head}


def _build(x_train: np.ndarray, y_vol_train: np.ndarray, hp: Conv1dHyperParams) -> Any:
    layers = keras.layers
    channels = len(WINDOW_CHANNELS)
    n_features = x_train.shape[1] - hp.window * channels
    if n_features < 0:
        raise ConfigError(
            f"conv1d with a window of {hp.window} bars needs at least {hp.window * channels} input columns, "
            f"got {x_train.shape[1]}; build the rows with model_inputs(bars, {hp.window})"
        )
    inputs, h = keras_model.normalized_input(x_train)
    engineered, flat = SplitColumns(n_features, name="split")(h)
    w = layers.Reshape((hp.window, channels), name="window")(flat)
    w = layers.Conv1D(hp.filters, hp.kernel_size, activation="relu", name="conv_0")(w)
    w = layers.Conv1D(hp.filters, hp.kernel_size, strides=2, activation="relu", name="conv_1")(w)
    w = layers.Flatten(name="flatten")(w)
    joined = layers.Concatenate(name="join")([engineered, w]) if n_features else w
    outputs = keras_model.dense_heads(joined, y_vol_train, hp)
    return keras.Model(inputs=inputs, outputs=outputs, name="scalpbot_conv1d")


class Conv1dKind(KerasArtifacts):
    """The temporal convolution over the trailing window with the MLP's heads (see the module docstring)."""

    name = "conv1d"
    artifact = "model.keras"
    cannot_fine_tune: str | None = None

    def hyper_parameters(self, train: Mapping[str, Any]) -> Conv1dHyperParams:
        """Return the defaults with ``train.max_epochs`` and ``train.seed`` (``train.widths`` is the MLP's)."""
        return Conv1dHyperParams(max_epochs=int(train["max_epochs"]), seed=int(train["seed"]))

    def window(self, hp: Conv1dHyperParams) -> int:
        """Return the trailing bars the model reads beside the feature matrix."""
        return hp.window

    def describe(self, hp: Conv1dHyperParams) -> dict[str, Any]:
        """Return the searched and configured hyper-parameters as the manifest records them."""
        return {
            "window": hp.window,
            "filters": hp.filters,
            "kernel_size": hp.kernel_size,
            "widths": list(hp.widths),
            "dropout": hp.dropout,
            "learning_rate": hp.learning_rate,
            "max_epochs": hp.max_epochs,
            "seed": hp.seed,
        }

    def threads(self, n: int) -> None:
        """Set torch's CPU threads."""
        keras_model.configure_threads(n)

    def fit(
        self,
        train: LabelledRows,
        validation: LabelledRows,
        hp: Conv1dHyperParams,
        *,
        show_progress: bool = False,
    ) -> TrainedModel:
        """Train with early stopping on the validation loss (:func:`scalpbot.ml.model.train_model`)."""
        return keras_model.train_model(
            train.x, train.y_class, train.y_vol,
            validation.x, validation.y_class, validation.y_vol,
            hp, show_progress=show_progress, build=_build,
            weight_train=train.weight, weight_val=validation.weight,
        )  # fmt: skip

    def suggest(self, trial: Any, base: Conv1dHyperParams, budget: int | None) -> Conv1dHyperParams:
        """Draw the filters, kernel, widths, dropout and learning rate; cap the epochs at ``budget``."""
        return dataclasses.replace(
            base,
            filters=int(trial.suggest_categorical("filters", list(_FILTERS))),
            kernel_size=int(trial.suggest_categorical("kernel_size", list(_KERNELS))),
            widths=_WIDTHS[str(trial.suggest_categorical("widths", list(_WIDTHS)))],
            dropout=float(trial.suggest_float("dropout", *_DROPOUT)),
            learning_rate=float(trial.suggest_float("learning_rate", *_LEARNING_RATE, log=True)),
            max_epochs=base.max_epochs if budget is None else min(budget, base.max_epochs),
        )


KIND = Conv1dKind()
"""The registered instance (``MODEL_KINDS["conv1d"]``)."""
