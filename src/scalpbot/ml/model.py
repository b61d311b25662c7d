"""The supervised model: train it, fine-tune it, predict with it, and turn it into ``.keras`` and ``.onnx`` bytes.

Architecture (Keras 3 functional API, backend-neutral; torch by default)::

    features [batch, n_features] float32
      → Normalization (mean and variance adapted on the training features, so scaling travels in the model)
      → Dense(width, relu) → Dropout(dropout)        for each width in ``hp.widths``
      ├→ Dense(3, softmax)         "class_probs"  P(0 short wins), P(1 neither), P(2 long wins)   [batch, 3]
      └→ Dense(1) → exp            "vol"          forward volatility, > 0, same unit as the target [batch, 1]

Losses: sparse categorical cross-entropy on the classes (optionally class-balanced) plus ``hp.vol_loss_weight``
times the mean squared error of ``log(vol)`` (:func:`vol_log_mse`). The volatility head is ``exp`` of a linear
output whose bias starts at the mean log target, so it is positive by construction and its loss is scale-free
whatever the unit of the target (a fraction of price per bar, say); the head estimates ``exp(E[log vol])``,
the median for log-normal volatility. Targets below ``VOL_FLOOR`` count as ``VOL_FLOOR`` in the loss.

Inputs are float32; rows with invalid labels (NaN, warm-up rows, unfinished horizons) are the caller's job to
drop: :func:`train_model` and :func:`fine_tune` refuse them with :class:`~scalpbot.errors.DataError`.
Training is deterministic for a given seed, data and thread count: the seed fixes the initial weights, dropout
masks and the shuffling, and torch runs its deterministic algorithms.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from scalpbot.errors import ConfigError, CorruptArtifactError, DataError, ModelError
from scalpbot.ml.registry import TrainedModel

N_CLASSES = 3
"""Classes of the label: 0 short wins, 1 neither, 2 long wins."""

VOL_FLOOR = 1e-6
"""Smallest volatility target the loss distinguishes (log of zero is undefined)."""

INPUT_NAME = "features"
CLASS_OUTPUT = "class_probs"
VOL_OUTPUT = "vol"

__all__ = [
    "N_CLASSES",
    "VOL_FLOOR",
    "ModelHyperParams",
    "TrainedModel",
    "configure_threads",
    "export_onnx",
    "fine_tune",
    "load_keras",
    "predict_keras",
    "save_keras",
    "train_model",
    "vol_log_mse",
]


@dataclass(frozen=True, slots=True)
class ModelHyperParams:
    """Hyper-parameters of the model and its training; the defaults suit ~1M rows of ~30 features."""

    widths: tuple[int, ...] = (64, 64)
    dropout: float = 0.1
    learning_rate: float = 1e-3
    batch_size: int = 1024
    max_epochs: int = 50
    patience: int = 5
    class_weighting: bool = False
    """Weight samples by inverse class frequency (balanced); off keeps the probabilities calibrated."""
    vol_loss_weight: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not self.widths or any(w < 1 for w in self.widths):
            problems.append(f"widths must be one or more positive layer sizes, got {self.widths}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.learning_rate > 0.0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.vol_loss_weight >= 0.0:
            problems.append(f"vol_loss_weight must be >= 0, got {self.vol_loss_weight}")
        if problems:
            raise ConfigError("invalid model hyper-parameters: " + "; ".join(problems))


def vol_log_mse(y_true: Any, y_pred: Any) -> Any:
    """Return the squared error of log volatility per sample, both sides floored at ``VOL_FLOOR``; shape [batch]."""
    ops = keras.ops
    log_true = ops.log(ops.maximum(y_true, VOL_FLOOR))
    log_pred = ops.log(ops.maximum(y_pred, VOL_FLOOR))
    return ops.mean(ops.square(log_true - log_pred), axis=-1)


# Registered by name so that a saved model's loss loads in safe mode (no Python lambdas in the artifact).
keras.saving.register_keras_serializable(package="scalpbot", name="vol_log_mse")(vol_log_mse)


def configure_threads(n: int = 1) -> None:
    """Set the number of CPU threads the backend uses for its kernels (torch only; a no-op otherwise)."""
    if n < 1:
        raise ConfigError(f"thread count must be >= 1, got {n}")
    if keras.config.backend() == "torch":
        import torch

        torch.set_num_threads(n)


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make torch pick deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if keras.config.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def train_model(
    x_train: np.ndarray,
    y_class_train: np.ndarray,
    y_vol_train: np.ndarray,
    x_val: np.ndarray,
    y_class_val: np.ndarray,
    y_vol_val: np.ndarray,
    hp: ModelHyperParams | None = None,
    *,
    show_progress: bool = False,
    build: Callable[[np.ndarray, np.ndarray, Any], Any] | None = None,
    weight_train: np.ndarray | None = None,
    weight_val: np.ndarray | None = None,
) -> TrainedModel:
    """Build and train a model with early stopping on the validation loss; restore the best epoch's weights.

    ``x_*``: [n, n_features] features (cast to float32); ``y_class_*``: [n] labels in {0, 1, 2};
    ``y_vol_*``: [n] forward volatility >= 0. With class weighting on, the validation loss is weighted by the
    training class frequencies too, so early stopping watches the objective being trained. ``show_progress``:
    a bar over the epochs with an ETA on stderr (a terminal only; early stopping may end it sooner).
    ``build(x_train, y_vol_train, hp)``: the uncompiled graph with the two heads (default: the MLP); its
    input, heads, losses and training are this function's. ``weight_*``: [n] weights of each row's class
    loss (multiplying the class weights; None: 1), on the validation rows too, so early stopping watches the
    weighted loss.
    """
    hp = hp or ModelHyperParams()
    x_tr, yc_tr, yv_tr = _checked(x_train, y_class_train, y_vol_train, "training", None)
    x_va, yc_va, yv_va = _checked(x_val, y_class_val, y_vol_val, "validation", x_tr.shape[1])
    _seed_everything(hp.seed)
    model = (build or _build_model)(x_tr, yv_tr, hp)
    _compile(model, hp.learning_rate, hp.vol_loss_weight)
    weights = _class_weights(yc_tr) if hp.class_weighting else None
    rows_tr = _row_weights(weight_train, yc_tr.size, "training")
    rows_va = _row_weights(weight_val, yc_va.size, "validation")
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=hp.patience, restore_best_weights=True
    )
    start = time.perf_counter()
    with _epoch_progress(hp.max_epochs, show_progress) as epochs:
        history = _fit(
            model, x_tr, yc_tr, yv_tr, x_va, yc_va, yv_va, weights, hp, [stopper, *epochs], rows_tr, rows_va
        )
    seconds = time.perf_counter() - start
    return _trained(model, history, seconds)


@contextmanager
def _epoch_progress(max_epochs: int, show: bool) -> Iterator[list[Any]]:
    """Yield the keras callbacks that advance a progress bar per epoch (none when not shown)."""
    if not show:
        yield []
        return
    from scalpbot.adapters.progress import progress_bar

    with progress_bar(max_epochs, "model fit") as advance:

        class _Epochs(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                loss = (logs or {}).get("val_loss")
                advance(1, "model fit" if loss is None else f"model fit, val loss {loss:.4f}")

        yield [_Epochs()]


def _fit(
    model: Any,
    x_tr: np.ndarray,
    yc_tr: np.ndarray,
    yv_tr: np.ndarray,
    x_va: np.ndarray,
    yc_va: np.ndarray,
    yv_va: np.ndarray,
    weights: np.ndarray | None,
    hp: ModelHyperParams,
    callbacks: list[Any],
    rows_tr: np.ndarray | None = None,
    rows_va: np.ndarray | None = None,
) -> Any:
    return model.fit(
        x_tr,
        [yc_tr, yv_tr[:, None]],
        sample_weight=_sample_weights(yc_tr, weights, rows_tr),
        validation_data=(x_va, [yc_va, yv_va[:, None]], _sample_weights(yc_va, weights, rows_va)),
        batch_size=hp.batch_size,
        epochs=hp.max_epochs,
        shuffle=True,
        callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks],
        verbose=0,
    )


def _trained(model: Any, history: Any, seconds: float) -> TrainedModel:
    val_loss = np.asarray(history.history["val_loss"], dtype=np.float64)
    if not np.isfinite(val_loss).any():
        raise ModelError(
            "training diverged (validation loss is NaN); lower learning_rate or check the features"
        )
    best = int(np.nanargmin(val_loss))
    return TrainedModel(
        model=model,
        epochs_run=len(history.history["loss"]),
        best_epoch=best + 1,
        best_val_loss=float(val_loss[best]),
        final_train_loss=float(history.history["loss"][-1]),
        train_seconds=seconds,
    )


def fine_tune(
    model: Any,
    x: np.ndarray,
    y_class: np.ndarray,
    y_vol: np.ndarray,
    *,
    learning_rate: float,
    epochs: int,
    batch_size: int = 1024,
    class_weighting: bool = False,
    seed: int | None = None,
) -> TrainedModel:
    """Continue training a compiled model in place with its optimizer state and a new (small) learning rate.

    ``model`` usually comes from :func:`load_keras`, which restores the optimizer's moments and iteration count.
    The normalization statistics stay those of the original training. Shapes as in :func:`train_model`; pass
    the ``class_weighting`` the model was trained with.
    """
    if getattr(model, "optimizer", None) is None:
        raise ModelError("the model has no optimizer state to continue from; load it with load_keras()")
    if not learning_rate > 0.0 or epochs < 1:
        raise ConfigError(
            f"fine-tuning needs learning_rate > 0 and epochs >= 1, got {learning_rate}, {epochs}"
        )
    x32, yc, yv = _checked(x, y_class, y_vol, "fine-tuning", _n_features(model))
    if seed is not None:
        _seed_everything(seed)
    model.optimizer.learning_rate = learning_rate
    weights = _class_weights(yc) if class_weighting else None
    start = time.perf_counter()
    history = model.fit(
        x32,
        [yc, yv[:, None]],
        sample_weight=_sample_weights(yc, weights),
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        callbacks=[keras.callbacks.TerminateOnNaN()],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    losses = history.history["loss"]
    if not np.isfinite(losses[-1]):
        raise ModelError(
            "fine-tuning diverged (loss is NaN); lower learning_rate and start from the saved model"
        )
    return TrainedModel(
        model=model,
        epochs_run=len(losses),
        best_epoch=len(losses),
        best_val_loss=None,
        final_train_loss=float(losses[-1]),
        train_seconds=seconds,
    )


def predict_keras(model: Any, x: np.ndarray, *, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Return class probabilities [n, 3] and forward volatility [n], both float64, for features [n, n_features]."""
    x32 = _features(x, _n_features(model), "prediction")
    if x32.shape[0] == 0:
        return np.empty((0, N_CLASSES)), np.empty(0)
    probs, vol = model.predict(x32, batch_size=batch_size, verbose=0)
    return np.asarray(probs, dtype=np.float64), np.asarray(vol, dtype=np.float64).reshape(-1)


def save_keras(model: Any) -> bytes:
    """Serialize a model, its compile config and optimizer state to ``.keras`` (zip) bytes."""
    with tempfile.TemporaryDirectory(prefix="scalpbot-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes()


def load_keras(data: bytes) -> Any:
    """Load a compiled ``keras.Model`` from ``.keras`` bytes in safe mode (no Python code is executed)."""
    if not data:
        raise CorruptArtifactError("model.keras is empty; the artifact was not written completely")
    with tempfile.TemporaryDirectory(prefix="scalpbot-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(data)
        try:
            model = keras.saving.load_model(path, compile=True, safe_mode=True)
        except Exception as e:  # zip, JSON, HDF5 and Keras errors alike mean the same thing here
            raise CorruptArtifactError(
                f"model.keras ({len(data)} bytes) cannot be loaded: {type(e).__name__}: {e}; "
                "the artifact is damaged or was not written by save_keras()"
            ) from e
    if len(model.inputs) != 1 or len(model.outputs) != 2:
        raise ModelError(
            f"model.keras has {len(model.inputs)} input(s) and {len(model.outputs)} output(s); "
            "expected 1 input (features) and 2 outputs (class_probs, vol)"
        )
    return model


def export_onnx(model: Any) -> bytes:
    """Export the inference graph to ONNX bytes: input "features" [batch, n_features] float32, outputs by position."""
    with tempfile.TemporaryDirectory(prefix="scalpbot-onnx-") as tmp, warnings.catch_warnings():
        # The tracer warns about constants; the graph has no data-dependent control flow.
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        model.export(str(path), format="onnx", verbose=False)
        return path.read_bytes()


def _build_model(x_train: np.ndarray, y_vol_train: np.ndarray, hp: ModelHyperParams) -> Any:
    inputs, h = normalized_input(x_train)
    return keras.Model(inputs=inputs, outputs=dense_heads(h, y_vol_train, hp), name="scalpbot_mlp")


def normalized_input(x_train: np.ndarray) -> tuple[Any, Any]:
    """Return the ``features`` input [batch, columns] and its normalization, adapted on ``x_train``."""
    normalize = keras.layers.Normalization(axis=-1, name="normalize")
    normalize.adapt(x_train)
    inputs = keras.Input(shape=(x_train.shape[1],), dtype="float32", name=INPUT_NAME)
    return inputs, normalize(inputs)


def dense_heads(h: Any, y_vol_train: np.ndarray, hp: ModelHyperParams) -> list[Any]:
    """Return the two heads (class probabilities, volatility) on ``hp.widths`` dense layers over ``h``."""
    layers = keras.layers
    for i, width in enumerate(hp.widths):
        h = layers.Dense(width, activation="relu", name=f"dense_{i}")(h)
        if hp.dropout > 0.0:
            h = layers.Dropout(hp.dropout, name=f"dropout_{i}")(h)
    probs = layers.Dense(N_CLASSES, activation="softmax", name=CLASS_OUTPUT)(h)
    log_vol_mean = float(np.mean(np.log(np.maximum(y_vol_train, VOL_FLOOR))))
    log_vol = layers.Dense(1, bias_initializer=keras.initializers.Constant(log_vol_mean), name="log_vol")(h)
    vol = layers.Activation("exponential", name=VOL_OUTPUT)(log_vol)
    return [probs, vol]


def _compile(model: Any, learning_rate: float, vol_loss_weight: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=1.0),
        loss=["sparse_categorical_crossentropy", vol_log_mse],
        loss_weights=[1.0, vol_loss_weight],
    )


def _class_weights(y_class: np.ndarray) -> np.ndarray:
    """Return balanced weights per class, n / (3 · count); absent classes get 0."""
    counts = np.bincount(y_class, minlength=N_CLASSES).astype(np.float64)
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, y_class.size / (N_CLASSES * counts), 0.0)
    return weights.astype(np.float32)


def _row_weights(weight: np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    """Return ``weight`` as float32 [n]; ``DataError`` unless it is finite and >= 0 with one value per row."""
    if weight is None:
        return None
    w = np.asarray(weight, dtype=np.float32)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise DataError(f"{name} row weights must be {n} finite values >= 0, got shape {w.shape}")
    return w


def _sample_weights(
    y_class: np.ndarray, class_weights: np.ndarray | None, rows: np.ndarray | None = None
) -> list[np.ndarray] | None:
    """Return per-output sample weights: class weights times row weights on the class head, ones on the
    volatility head (None when neither is set)."""
    if rows is not None:
        per_class = (
            np.ones(y_class.size, dtype=np.float32) if class_weights is None else class_weights[y_class]
        )
        return [(per_class * rows).astype(np.float32), np.ones(y_class.size, dtype=np.float32)]
    if class_weights is None:
        return None
    return [class_weights[y_class], np.ones(y_class.size, dtype=np.float32)]


def _n_features(model: Any) -> int:
    return int(model.inputs[0].shape[-1])


def _features(x: np.ndarray, n_features: int | None, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(
            f"{what} features must be a 2-D numeric array [rows, features], got {x.dtype} {x.shape}"
        )
    if n_features is not None and x.shape[1] != n_features:
        raise DataError(f"{what} features have {x.shape[1]} columns; the model expects {n_features}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _checked(
    x: np.ndarray, y_class: np.ndarray, y_vol: np.ndarray, what: str, n_features: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return float32 features, int32 labels and float32 volatility, or raise DataError saying what to drop."""
    x32 = _features(x, n_features, what)
    yc = np.asarray(y_class)
    yv = np.asarray(y_vol, dtype=np.float64)
    n = x32.shape[0]
    if n == 0:
        raise DataError(f"{what} data has no rows")
    if yc.shape != (n,) or yv.shape != (n,):
        raise DataError(
            f"{what} labels must be 1-D with {n} rows, got y_class {yc.shape} and y_vol {yv.shape}"
        )
    _first_bad(~np.isfinite(x32).all(axis=1), f"{what} features are NaN or infinite", "drop those rows")
    _first_bad(
        ~np.isin(yc, np.arange(N_CLASSES)), f"{what} y_class is not in {{0, 1, 2}}", "drop unlabeled rows"
    )
    _first_bad(
        ~(yv >= 0.0) | ~np.isfinite(yv), f"{what} y_vol is negative or not finite", "drop unlabeled rows"
    )
    return x32, yc.astype(np.int32), yv.astype(np.float32)


def _first_bad(bad: np.ndarray, problem: str, fix: str) -> None:
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(f"{problem} in {rows.size} row(s), first at row {rows[0]}; {fix} before training")
