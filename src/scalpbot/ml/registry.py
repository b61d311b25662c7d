"""The model seam: what the jobs need of a model type, and the registry of the types a release can be made of.

A model type (a *kind*) is one module that implements :class:`ModelKind`: fit on labelled training rows with
early stopping on validation rows, predict in-process, fine-tune (or say it cannot), serialize itself to its
own artifact, export ONNX honouring the inference contract, and optionally draw hyper-parameters for the
model search. The train job, the weekly online learning and the evaluation see only this protocol; adding a
kind is its module plus one line in :data:`MODEL_KINDS`.

**The ONNX contract** (:mod:`scalpbot.inference.onnx`, the only thing execution loads): one float32 input
``features`` [batch, n_features] (the feature matrix's columns, then for a :class:`WindowedKind` the raw
trailing window's: :func:`scalpbot.core.window_features.model_inputs`) and two outputs, class probabilities [batch, 3] (0 short wins, 1 neither,
2 long wins) and forward volatility [batch, 1] (> 0, the unit of the label's volatility target).

This module is light: the registry maps names to loaders, and a kind's module (and its libraries: Keras,
torch ...) is imported only when :func:`model_kind` is asked for it. The configuration validates
``train.model`` against :func:`kind_names` without loading anything.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from scalpbot.errors import ConfigError, ModelError

__all__ = [
    "DEFAULT_MODEL_KIND",
    "MODEL_KINDS",
    "LabelledRows",
    "ModelKind",
    "TrainedModel",
    "WindowedKind",
    "input_window",
    "kind_names",
    "lazy_kind",
    "model_kind",
    "unknown_kind",
]

DEFAULT_MODEL_KIND = "mlp"
"""The kind of ``train.model`` by default, and of every release written before manifests recorded one."""


@dataclass(frozen=True, slots=True)
class LabelledRows:
    """Rows to learn from: features [n, n_features], classes [n] in {0, 1, 2}, forward volatility [n] >= 0.

    Rows with invalid labels (NaN, warm-up, unfinished horizons) are dropped by the caller; a kind refuses
    them with :class:`~scalpbot.errors.DataError`.
    """

    x: np.ndarray
    y_class: np.ndarray
    y_vol: np.ndarray
    weight: np.ndarray | None = None
    """Per-row weights of the class loss [n] (mean 1: :mod:`scalpbot.core.sample_weights`); None: all 1."""


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """A fitted (or fine-tuned) model of some kind and a summary of how its training went."""

    model: Any = field(repr=False)
    """The kind's own in-process model object (a ``keras.Model`` for the MLP)."""
    epochs_run: int
    """Passes over the training rows (epochs, iterations, boosting rounds: the kind's unit of work)."""
    best_epoch: int
    """1-based pass whose state the model holds (the last one after fine-tuning)."""
    best_val_loss: float | None
    """Validation loss at ``best_epoch`` (lower is better; the model search ranks by it); None without
    validation rows (fine-tuning)."""
    final_train_loss: float
    train_seconds: float


@runtime_checkable
class ModelKind(Protocol):
    """A model type the train job can fit, the online learning can fine-tune and execution can trade (via ONNX).

    ``hp`` is the kind's own hyper-parameter object; ``model`` its own in-process model.
    """

    @property
    def name(self) -> str:
        """Return the registry name (``train.model``; the manifest's ``model_kind``)."""
        ...

    @property
    def artifact(self) -> str:
        """Return the file name of the kind's own artifact in a release (``model.keras`` for the MLP)."""
        ...

    @property
    def cannot_fine_tune(self) -> str | None:
        """Return None when :meth:`fine_tune` works, else why the kind cannot be fine-tuned (one line)."""
        ...

    def hyper_parameters(self, train: Mapping[str, Any]) -> Any:
        """Return the hyper-parameters for the ``[train]`` settings (as a mapping); ``ConfigError`` if invalid."""
        ...

    def describe(self, hp: Any) -> dict[str, Any]:
        """Return the hyper-parameters as a JSON-ready record (the manifest's ``hyperparams``)."""
        ...

    def threads(self, n: int) -> None:
        """Limit the CPU threads the kind's library computes with (deterministic, shares the machine)."""
        ...

    def fit(
        self, train: LabelledRows, validation: LabelledRows, hp: Any, *, show_progress: bool = False
    ) -> TrainedModel:
        """Fit a model on ``train``, stopping early on ``validation``; deterministic for ``hp``'s seed.

        ``ModelError`` when training diverges; ``show_progress``: a progress bar on a terminal's stderr.
        """
        ...

    def predict(self, model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return class probabilities [n, 3] and forward volatility [n], float64, for features [n, n_features]."""
        ...

    def fine_tune(
        self, model: Any, rows: LabelledRows, *, learning_rate: float, epochs: int, seed: int | None = None
    ) -> TrainedModel:
        """Continue training a loaded model on new rows with a small learning rate.

        Only when :attr:`cannot_fine_tune` is None; otherwise ``ModelError``.
        """
        ...

    def save(self, model: Any) -> bytes:
        """Return the model as the bytes of :attr:`artifact` (all :meth:`load` and :meth:`fine_tune` need)."""
        ...

    def load(self, data: bytes) -> Any:
        """Return the model saved in ``data``; ``CorruptArtifactError`` when the bytes are not such an artifact."""
        ...

    def export_onnx(self, model: Any) -> bytes:
        """Return the inference graph as ONNX bytes honouring the contract in the module docstring."""
        ...

    def suggest(self, trial: Any, base: Any, budget: int | None) -> Any | None:
        """Return the hyper-parameters an Optuna ``trial`` draws around ``base``; None: nothing to search.

        ``budget``: at most this many passes per trial (None: ``base``'s own, for the final fit). Called
        with an ``optuna.trial.FixedTrial`` of the winner's parameters to rebuild them.
        """
        ...


@runtime_checkable
class WindowedKind(Protocol):
    """A kind that reads the raw trailing window beside the feature matrix (:mod:`scalpbot.core.window_features`).

    Its rows are ``model_inputs(bars, window(hp))``; a kind without this method reads the feature matrix alone.
    """

    def window(self, hp: Any) -> int:
        """Return the trailing bars the model with ``hp`` reads (0: none)."""
        ...


def input_window(kind: ModelKind, hp: Any) -> int:
    """Return the trailing-window bars ``kind`` with ``hp`` reads: the manifest's ``window_bars``."""
    return int(kind.window(hp)) if isinstance(kind, WindowedKind) else 0


KindLoader = Callable[[], ModelKind]
"""Return the kind, importing its module (and its libraries) on first use."""


def lazy_kind(module: str, attribute: str = "KIND") -> KindLoader:
    """Return a loader of ``module.attribute`` (imported on first call), checked to implement :class:`ModelKind`."""

    def load() -> ModelKind:
        kind = getattr(importlib.import_module(module), attribute)
        if not isinstance(kind, ModelKind):
            raise ModelError(f"{module}.{attribute} does not implement ModelKind")
        return kind

    return load


MODEL_KINDS: dict[str, KindLoader] = {
    "mlp": lazy_kind("scalpbot.ml.kinds.mlp"),
    "conv1d": lazy_kind("scalpbot.ml.kinds.conv1d"),
}
"""Every model kind by its ``train.model`` name. Adding a model type: its module and one line here."""


def kind_names() -> list[str]:
    """Return the registered kind names, sorted."""
    return sorted(MODEL_KINDS)


def model_kind(name: str) -> ModelKind:
    """Return the registered kind ``name``; ``ConfigError`` with a did-you-mean hint for an unknown name."""
    loader = MODEL_KINDS.get(name)
    if loader is None:
        raise ConfigError(unknown_kind(name))
    kind = loader()
    if kind.name != name:
        raise ModelError(f"model kind {name!r} is registered with a kind named {kind.name!r}")
    return kind


def unknown_kind(name: str) -> str:
    """Return the one-line message for an unregistered kind: the known ones and the closest match."""
    names = kind_names()
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f" (did you mean '{match[0]}'?)" if match else ""
    return f"unknown model kind '{name}'{hint}; known kinds: {', '.join(names)}"
