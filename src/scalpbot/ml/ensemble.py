"""Ensembles over seeds: ``size`` models of one kind, seeds ``hp.seed .. hp.seed + size - 1``, averaged.

:class:`EnsembleKind` wraps any registered kind whose hyper-parameters are a dataclass with a ``seed`` and is a
:class:`~scalpbot.ml.registry.ModelKind` itself, so the train job, the model search and the online learning use
it as they use the kind: its model is the tuple of members, its prediction the members' mean probabilities and
mean volatility, its ONNX export one graph that averages the members' graphs
(:func:`scalpbot.ml.onnx_graph.average_graphs`) and its artifact a zip of the members' own artifacts. The
manifest keeps the member kind's name (``model_kind``) and the size (``ensemble``).
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from scalpbot.errors import ConfigError, CorruptArtifactError
from scalpbot.ml.registry import LabelledRows, ModelKind, TrainedModel, input_window, model_kind

__all__ = ["EnsembleKind", "release_kind"]

ENSEMBLE_ARTIFACT = "ensemble.zip"


class EnsembleKind:
    """``size`` models of ``member`` with consecutive seeds, averaged (see the module docstring)."""

    def __init__(self, member: ModelKind, size: int) -> None:
        """Wrap ``member``; ``size`` >= 2 (an ensemble of one is the kind itself)."""
        if size < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {size}; use the kind itself")
        self.member = member
        self.size = size

    @property
    def name(self) -> str:
        """Return the member kind's name (the manifest's ``model_kind``)."""
        return self.member.name

    @property
    def artifact(self) -> str:
        """Return ``ensemble.zip``: the members' artifacts as ``member-0``, ``member-1`` ..."""
        return ENSEMBLE_ARTIFACT

    @property
    def cannot_fine_tune(self) -> str | None:
        """Return the member kind's reason, if it cannot be fine-tuned."""
        return self.member.cannot_fine_tune

    def hyper_parameters(self, train: Mapping[str, Any]) -> Any:
        """Return the member kind's hyper-parameters (member ``i`` trains with ``seed + i``)."""
        return self.member.hyper_parameters(train)

    def describe(self, hp: Any) -> dict[str, Any]:
        """Return the member kind's record."""
        return self.member.describe(hp)

    def window(self, hp: Any) -> int:
        """Return the member kind's trailing window."""
        return input_window(self.member, hp)

    def threads(self, n: int) -> None:
        """Limit the member kind's threads."""
        self.member.threads(n)

    def seeded(self, hp: Any, i: int) -> Any:
        """Return member ``i``'s hyper-parameters: ``hp`` with seed ``hp.seed + i``."""
        if not dataclasses.is_dataclass(hp) or not hasattr(hp, "seed"):
            raise ConfigError(
                f"model kind {self.member.name!r} has no seed in its hyper-parameters; set train.ensemble = 1"
            )
        return dataclasses.replace(hp, seed=int(hp.seed) + i)  # type: ignore[type-var]

    def fit(
        self, train: LabelledRows, validation: LabelledRows, hp: Any, *, show_progress: bool = False
    ) -> TrainedModel:
        """Fit every member; the validation loss is the members' mean, the passes their sum."""
        return self.combine(
            [
                self.member.fit(train, validation, self.seeded(hp, i), show_progress=show_progress and i == 0)
                for i in range(self.size)
            ]
        )

    @staticmethod
    def combine(fits: list[TrainedModel]) -> TrainedModel:
        """Return the ensemble of the members' fits (in member order): the validation loss is their mean, the
        passes their sum."""
        losses = [f.best_val_loss for f in fits if f.best_val_loss is not None]
        return TrainedModel(
            model=tuple(f.model for f in fits),
            epochs_run=sum(f.epochs_run for f in fits),
            best_epoch=max(f.best_epoch for f in fits),
            best_val_loss=float(np.mean(losses)) if len(losses) == len(fits) else None,
            final_train_loss=float(np.mean([f.final_train_loss for f in fits])),
            train_seconds=sum(f.train_seconds for f in fits),
        )

    def predict(self, model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the members' mean probabilities [n, 3] and mean volatility [n]."""
        outputs = [self.member.predict(m, x) for m in model]
        return np.mean([p for p, _ in outputs], axis=0), np.mean([v for _, v in outputs], axis=0)

    def fine_tune(
        self, model: Any, rows: LabelledRows, *, learning_rate: float, epochs: int, seed: int | None = None
    ) -> TrainedModel:
        """Fine-tune every member on ``rows`` (member ``i`` with ``seed + i``)."""
        fits = [
            self.member.fine_tune(
                m, rows, learning_rate=learning_rate, epochs=epochs, seed=None if seed is None else seed + i
            )
            for i, m in enumerate(model)
        ]
        return TrainedModel(
            model=tuple(f.model for f in fits),
            epochs_run=sum(f.epochs_run for f in fits),
            best_epoch=max(f.best_epoch for f in fits),
            best_val_loss=None,
            final_train_loss=float(np.mean([f.final_train_loss for f in fits])),
            train_seconds=sum(f.train_seconds for f in fits),
        )

    def save(self, model: Any) -> bytes:
        """Return a zip of the members' artifacts (stored uncompressed, deterministic timestamps)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for i, m in enumerate(model):
                archive.writestr(zipfile.ZipInfo(f"member-{i}", (1980, 1, 1, 0, 0, 0)), self.member.save(m))
        return buffer.getvalue()

    def load(self, data: bytes) -> Any:
        """Return the members saved in ``data``; ``CorruptArtifactError`` when it is not such an archive."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = sorted(archive.namelist(), key=lambda n: int(n.rsplit("-", 1)[-1]))
                blobs = [archive.read(name) for name in names]
        except (zipfile.BadZipFile, ValueError, KeyError) as e:
            raise CorruptArtifactError(
                f"{ENSEMBLE_ARTIFACT} ({len(data)} bytes) cannot be read: {e}; the artifact is damaged"
            ) from e
        if len(blobs) != self.size:
            raise CorruptArtifactError(
                f"{ENSEMBLE_ARTIFACT} holds {len(blobs)} members, expected {self.size}"
            )
        return tuple(self.member.load(b) for b in blobs)

    def export_onnx(self, model: Any) -> bytes:
        """Return one ONNX graph averaging the members' exports."""
        from scalpbot.ml.onnx_graph import average_graphs

        return average_graphs([self.member.export_onnx(m) for m in model])

    def suggest(self, trial: Any, base: Any, budget: int | None) -> Any | None:
        """Return the member kind's draw (the search fits one member per trial: pass the member kind)."""
        return self.member.suggest(trial, base, budget)


def release_kind(name: str, ensemble: int = 1) -> ModelKind:
    """Return the kind a release of ``model_kind`` ``name`` and ``ensemble`` members was trained with."""
    kind = model_kind(name)
    return kind if ensemble <= 1 else EnsembleKind(kind, ensemble)
