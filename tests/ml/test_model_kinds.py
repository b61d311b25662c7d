"""The temporal convolution and the ensembles over seeds: they learn, and one ONNX graph predicts what Keras does."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pytest

from scalpbot.errors import ConfigError, CorruptArtifactError
from scalpbot.inference.onnx import OnnxModel
from scalpbot.ml.ensemble import ENSEMBLE_ARTIFACT, EnsembleKind, release_kind
from scalpbot.ml.kinds.conv1d import Conv1dHyperParams
from scalpbot.ml.model import ModelHyperParams, configure_threads
from scalpbot.ml.registry import MODEL_KINDS, LabelledRows, ModelKind, input_window, model_kind

from support.model_data import N_FEATURES, synthetic

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

WINDOW = 16


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    configure_threads(1)


def windowed(n: int, seed: int) -> LabelledRows:
    """Return rows of 12 noise features and a 16-bar window whose bar 12 return channel decides the class."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, N_FEATURES))
    window = rng.normal(size=(n, WINDOW, 3))
    score = window[:, 12, 0] + 0.3 * rng.normal(size=n)
    y = np.where(score > 0.5, 2, np.where(score < -0.5, 0, 1))
    vol = 2e-3 * np.exp(0.3 * window[:, -1, 1])
    x = np.hstack([features, window.reshape(n, -1)]).astype(np.float32)
    return LabelledRows(x, y, vol)


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(y.size), y], 1e-12, 1.0))))


def check_onnx_equals_keras(kind: ModelKind, model: Any, x: np.ndarray) -> None:
    probs, vol = kind.predict(model, x)
    onnx = OnnxModel.from_bytes(kind.export_onnx(model))
    assert onnx.n_features == x.shape[1]
    onnx_probs, onnx_vol = onnx.predict(x)
    np.testing.assert_allclose(onnx_probs, probs, atol=1e-5)
    np.testing.assert_allclose(onnx_vol, vol, rtol=1e-5)


def test_conv1d_is_registered_and_learns_a_signal_only_the_window_holds() -> None:
    kind = model_kind("conv1d")
    assert "conv1d" in MODEL_KINDS and isinstance(kind, ModelKind)
    hp = Conv1dHyperParams(window=WINDOW, filters=8, kernel_size=3, batch_size=256, max_epochs=15, seed=3)
    assert input_window(kind, hp) == WINDOW and input_window(model_kind("mlp"), ModelHyperParams()) == 0
    fitted = kind.fit(windowed(4_000, 1), windowed(1_000, 2), hp)
    test = windowed(1_000, 3)
    probs, _ = kind.predict(fitted.model, test.x)
    assert log_loss(probs, test.y_class) < np.log(3) - 0.2
    check_onnx_equals_keras(kind, fitted.model, test.x)
    loaded = kind.load(kind.save(fitted.model))
    np.testing.assert_array_equal(kind.predict(loaded, test.x)[0], probs)
    # Fine-tuning continues from the saved optimizer state, as the MLP's does.
    tuned = kind.fine_tune(loaded, windowed(500, 4), learning_rate=1e-4, epochs=1, seed=1)
    assert tuned.epochs_run == 1 and tuned.best_val_loss is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window": 0}, "window must be 1 to"),
        ({"window": 8, "kernel_size": 5}, "kernel_size must be >= 1 and fit twice in the window of 8 bars"),
        ({"filters": 0}, "filters must be >= 1"),
        ({"dropout": 1.0}, "dropout must be in"),
    ],
)
def test_conv1d_hyper_parameters_are_checked_with_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Conv1dHyperParams(**change)


def test_an_ensemble_averages_members_with_consecutive_seeds_in_one_onnx_graph() -> None:
    kind = release_kind("mlp", 3)
    assert isinstance(kind, EnsembleKind) and isinstance(kind, ModelKind)
    assert (kind.name, kind.artifact, kind.size) == ("mlp", ENSEMBLE_ARTIFACT, 3)
    assert release_kind("mlp", 1) is model_kind("mlp")
    hp = ModelHyperParams(widths=(16,), batch_size=256, max_epochs=4, seed=5)
    train, validation = LabelledRows(*synthetic(2_000, seed=1)), LabelledRows(*synthetic(500, seed=2))
    fitted = kind.fit(train, validation, hp)
    members = fitted.model
    assert len(members) == 3
    x = synthetic(300, seed=3)[0]
    mlp = model_kind("mlp")
    outputs = [mlp.predict(m, x) for m in members]
    assert not np.allclose(outputs[0][0], outputs[1][0])  # different seeds, different members
    # Member i is the model a single fit with seed 5 + i makes.
    single = mlp.fit(train, validation, ModelHyperParams(widths=(16,), batch_size=256, max_epochs=4, seed=6))
    np.testing.assert_allclose(mlp.predict(single.model, x)[0], outputs[1][0], atol=1e-6)
    probs, vol = kind.predict(members, x)
    np.testing.assert_allclose(probs, np.mean([p for p, _ in outputs], axis=0))
    np.testing.assert_allclose(vol, np.mean([v for _, v in outputs], axis=0))
    check_onnx_equals_keras(kind, members, x)
    loaded = kind.load(kind.save(members))
    np.testing.assert_array_equal(kind.predict(loaded, x)[0], probs)
    with zipfile.ZipFile(io.BytesIO(kind.save(members))) as archive:
        assert archive.namelist() == ["member-0", "member-1", "member-2"]
    with pytest.raises(CorruptArtifactError, match="ensemble.zip"):
        kind.load(b"not a zip")
    with pytest.raises(CorruptArtifactError, match="holds 3 members, expected 2"):
        EnsembleKind(mlp, 2).load(kind.save(members))


def test_an_ensemble_of_conv1d_models_exports_one_graph_of_the_window_inputs() -> None:
    kind = release_kind("conv1d", 2)
    hp = Conv1dHyperParams(window=WINDOW, filters=4, kernel_size=3, batch_size=256, max_epochs=2, seed=1)
    assert input_window(kind, hp) == WINDOW
    fitted = kind.fit(windowed(1_500, 1), windowed(400, 2), hp)
    check_onnx_equals_keras(kind, fitted.model, windowed(200, 3).x)


def test_an_ensemble_of_one_member_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 2 members"):
        EnsembleKind(model_kind("mlp"), 1)
