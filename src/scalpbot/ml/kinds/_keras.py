"""What every Keras model kind does alike: predict, fine-tune, save, load and export through :mod:`scalpbot.ml.model`."""

from __future__ import annotations

from typing import Any

import numpy as np

from scalpbot.ml import model as keras_model
from scalpbot.ml.registry import LabelledRows, TrainedModel


class KerasArtifacts:
    """The :class:`~scalpbot.ml.registry.ModelKind` methods a Keras kind shares (its own: fit, suggest, describe)."""

    def predict(self, model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return probabilities [n, 3] and volatility [n] from the Keras model."""
        return keras_model.predict_keras(model, x)

    def fine_tune(
        self, model: Any, rows: LabelledRows, *, learning_rate: float, epochs: int, seed: int | None = None
    ) -> TrainedModel:
        """Continue training with the restored optimizer state (:func:`scalpbot.ml.model.fine_tune`)."""
        return keras_model.fine_tune(
            model, rows.x, rows.y_class, rows.y_vol, learning_rate=learning_rate, epochs=epochs, seed=seed
        )

    def save(self, model: Any) -> bytes:
        """Return ``model.keras`` bytes."""
        return keras_model.save_keras(model)

    def load(self, data: bytes) -> Any:
        """Load ``model.keras`` bytes in safe mode (a kind's custom layers are registered by its module)."""
        return keras_model.load_keras(data)

    def export_onnx(self, model: Any) -> bytes:
        """Export the Keras graph to ONNX."""
        return keras_model.export_onnx(model)
