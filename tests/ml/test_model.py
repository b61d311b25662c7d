"""The Keras model on small synthetic data: it learns, it is deterministic, and its artifacts round-trip exactly."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from scalpbot.errors import ConfigError, CorruptArtifactError, DataError
from scalpbot.inference.onnx import OnnxModel
from scalpbot.ml.model import (
    ModelHyperParams,
    TrainedModel,
    configure_threads,
    export_onnx,
    fine_tune,
    load_keras,
    predict_keras,
    save_keras,
    train_model,
)

from support.model_data import N_FEATURES, Data, synthetic

# torch tensors' __array__ lacks numpy 2's copy keyword; Keras converts weights through it (harmless).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]

HP = ModelHyperParams(widths=(32, 32), dropout=0.1, batch_size=256, max_epochs=20, patience=3, seed=7)


def weights_of(model: Any) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    configure_threads(1)


@pytest.fixture(scope="module")
def train() -> Data:
    return synthetic(3_000, seed=1)


@pytest.fixture(scope="module")
def val() -> Data:
    return synthetic(1_000, seed=2)


@pytest.fixture(scope="module")
def trained(train: Data, val: Data) -> TrainedModel:
    return train_model(*train, *val, HP)


def test_model_learns_the_class_and_volatility_signal(trained: TrainedModel, val: Data) -> None:
    x, y_class, y_vol = val
    probs, vol = predict_keras(trained.model, x)
    assert np.mean(probs.argmax(axis=1) == y_class) > 0.75  # the majority class is about 0.38
    assert np.corrcoef(np.log(vol), np.log(y_vol))[0, 1] > 0.8


def test_probabilities_sum_to_one_and_volatility_is_positive(trained: TrainedModel, val: Data) -> None:
    probs, vol = predict_keras(trained.model, val[0])
    assert probs.shape == (len(val[0]), 3)
    assert vol.shape == (len(val[0]),)
    assert probs.dtype == np.float64
    assert vol.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (probs >= 0).all()
    assert (vol > 0).all()


def test_summary_reports_the_restored_best_epoch(trained: TrainedModel, val: Data) -> None:
    x, y_class, y_vol = val
    assert 1 <= trained.best_epoch <= trained.epochs_run <= HP.max_epochs
    assert trained.train_seconds > 0
    assert trained.best_val_loss is not None
    evaluated = trained.model.evaluate(
        x, [y_class, y_vol[:, None]], batch_size=HP.batch_size, verbose=0, return_dict=True
    )
    assert evaluated["loss"] == pytest.approx(trained.best_val_loss, rel=1e-5)


def test_onnx_and_keras_outputs_agree_on_both_heads(trained: TrainedModel, val: Data) -> None:
    onnx_model = OnnxModel.from_bytes(export_onnx(trained.model))
    assert onnx_model.n_features == N_FEATURES
    for x in (val[0], val[0][:1]):
        keras_probs, keras_vol = predict_keras(trained.model, x)
        onnx_probs, onnx_vol = onnx_model.predict(x)
        assert onnx_probs.shape == keras_probs.shape
        assert onnx_vol.shape == keras_vol.shape
        np.testing.assert_allclose(onnx_probs, keras_probs, rtol=0, atol=1e-5)
        np.testing.assert_allclose(onnx_vol, keras_vol, rtol=1e-5, atol=1e-7)


def test_keras_round_trip_keeps_predictions_and_optimizer_state(trained: TrainedModel, val: Data) -> None:
    loaded = load_keras(save_keras(trained.model))
    for before, after in zip(
        predict_keras(trained.model, val[0]), predict_keras(loaded, val[0]), strict=True
    ):
        np.testing.assert_array_equal(after, before)
    assert int(loaded.optimizer.iterations) == int(trained.model.optimizer.iterations) > 0
    for before, after in zip(trained.model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


def test_same_seed_and_data_give_identical_weights(train: Data, val: Data) -> None:
    hp = ModelHyperParams(widths=(16,), batch_size=256, max_epochs=3, patience=3, seed=11)
    first = train_model(*train, *val, hp)
    second = train_model(*train, *val, hp)
    for a, b in zip(weights_of(first.model), weights_of(second.model), strict=True):
        np.testing.assert_array_equal(a, b)
    other = train_model(*train, *val, ModelHyperParams(widths=(16,), batch_size=256, max_epochs=3, seed=12))
    kernel = [m.get_layer("dense_0").get_weights()[0] for m in (first.model, other.model)]
    assert not np.array_equal(kernel[0], kernel[1])


def test_early_stopping_stops_before_max_epochs_without_signal() -> None:
    hp = ModelHyperParams(widths=(32, 32), batch_size=256, max_epochs=100, patience=2, seed=3)
    result = train_model(*synthetic(2_000, 4, signal=False), *synthetic(1_000, 5, signal=False), hp)
    assert result.epochs_run < hp.max_epochs
    assert result.best_epoch == result.epochs_run - hp.patience


def test_fine_tune_changes_weights_and_continues_optimizer_iterations(trained: TrainedModel) -> None:
    loaded = load_keras(save_keras(trained.model))
    before = weights_of(loaded)
    iterations = int(loaded.optimizer.iterations)
    x, y_class, y_vol = synthetic(1_000, seed=9)
    result = fine_tune(loaded, x, y_class, y_vol, learning_rate=1e-4, epochs=2, batch_size=250, seed=0)
    assert result.model is loaded
    assert result.epochs_run == 2
    assert result.best_val_loss is None
    assert math.isfinite(result.final_train_loss)
    assert int(loaded.optimizer.iterations) == iterations + 2 * 4
    assert float(loaded.optimizer.learning_rate) == pytest.approx(1e-4)
    changed = [not np.array_equal(a, b) for a, b in zip(before, weights_of(loaded), strict=True)]
    assert any(changed)
    assert np.array_equal(before[0], weights_of(loaded)[0])  # normalization mean stays that of the training


def test_class_weighting_trains_with_balanced_weights(train: Data, val: Data) -> None:
    hp = ModelHyperParams(widths=(16,), batch_size=256, max_epochs=2, class_weighting=True, seed=5)
    result = train_model(*train, *val, hp)
    probs, _ = predict_keras(result.model, val[0])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_row_weights_decide_what_the_class_head_learns(train: Data, val: Data) -> None:
    """Rows of weight 0 teach nothing: with every long-wins row (class 2) weighted 0 in training and in
    validation, the model learns that a long win is rare; with weights 1 it learns as unweighted."""
    y_class = train[1]
    hp = ModelHyperParams(widths=(16,), batch_size=256, max_epochs=8, seed=5)
    weight = np.where(y_class == 2, 0.0, 1.0)
    weight_val = np.where(val[1] == 2, 0.0, 1.0)
    muted = train_model(*train, *val, hp, weight_train=weight, weight_val=weight_val)
    plain = train_model(*train, *val, hp)
    ones = train_model(*train, *val, hp, weight_train=np.ones(len(y_class)), weight_val=np.ones(len(val[1])))
    muted_probs, _ = predict_keras(muted.model, val[0])
    plain_probs, _ = predict_keras(plain.model, val[0])
    ones_probs, _ = predict_keras(ones.model, val[0])
    long_wins = val[1] == 2
    assert plain_probs[long_wins, 2].mean() > 0.35
    assert muted_probs[long_wins, 2].mean() < 0.5 * plain_probs[long_wins, 2].mean()
    np.testing.assert_allclose(ones_probs, plain_probs, atol=1e-5)


@pytest.mark.parametrize("bad", [np.ones(5), np.full(3_000, -1.0), np.full(3_000, np.nan)])
def test_row_weights_of_the_wrong_length_or_negative_are_refused(
    train: Data, val: Data, bad: np.ndarray
) -> None:
    with pytest.raises(DataError, match="training row weights must be 3000 finite values >= 0"):
        train_model(*train, *val, HP, weight_train=bad)


def test_garbage_bytes_raise_corrupt_artifact_error() -> None:
    with pytest.raises(CorruptArtifactError, match=r"model\.keras .* cannot be loaded"):
        load_keras(b"garbage")
    with pytest.raises(CorruptArtifactError, match="empty"):
        load_keras(b"")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("y_class", np.nan, r"y_class is not in \{0, 1, 2\} in 1 row\(s\), first at row 7"),
        ("y_class", 3, "y_class is not in"),
        ("y_vol", -1.0, "y_vol is negative or not finite"),
        ("x", np.inf, "features are NaN or infinite"),
    ],
)
def test_invalid_rows_are_refused_with_a_message_saying_to_drop_them(
    train: Data, val: Data, column: str, value: float, message: str
) -> None:
    x, y_class, y_vol = (a.astype(np.float64) for a in train)
    {"x": x[:, 0], "y_class": y_class, "y_vol": y_vol}[column][7] = value
    with pytest.raises(DataError, match=message):
        train_model(x, y_class, y_vol, *val, HP)


def test_wrong_feature_count_is_refused(trained: TrainedModel) -> None:
    with pytest.raises(DataError, match="have 11 columns; the model expects 12"):
        predict_keras(trained.model, np.zeros((2, 11), dtype=np.float32))


def test_invalid_hyper_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\).*patience must be >= 1"):
        ModelHyperParams(dropout=1.5, patience=0)
