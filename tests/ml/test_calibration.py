"""Isotonic calibration: fitted on validation predictions it scores better on held-out rows, keeps each class's
ranking, and the ONNX graph applies exactly the map the train job tuned on."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from scalpbot.errors import DataError
from scalpbot.inference.onnx import OnnxModel
from scalpbot.ml.calibration import Calibration, fit_calibration

from support.model_data import synthetic


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(y.size), y], 1e-12, 1.0))))


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.sum((probs - np.eye(3)[y]) ** 2, axis=1)))


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return a model's raw probabilities and the classes drawn from the true ones, which it overstates.

    The true edge: P(long wins) = 0.25 + 0.15 tanh(s), P(short wins) = 0.25 - 0.15 tanh(s) for a signal s; the
    model reports the same direction three times as strongly (it ranks rows right, its levels are wrong).
    """
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    true = np.stack([0.25 - 0.15 * np.tanh(s), np.full(n, 0.5), 0.25 + 0.15 * np.tanh(s)], axis=1)
    y = (rng.random(n)[:, None] > np.cumsum(true, axis=1)).sum(axis=1)
    raw = np.stack([0.25 - 0.24 * np.tanh(3 * s), np.full(n, 0.5), 0.25 + 0.24 * np.tanh(3 * s)], axis=1)
    return raw, y


def test_calibration_fitted_on_validation_predictions_lowers_held_out_brier_score_and_log_loss() -> None:
    raw_val, y_val = overconfident(20_000, seed=1)
    raw_test, y_test = overconfident(20_000, seed=2)
    calibration = fit_calibration(raw_val, y_val)
    calibrated = calibration.apply(raw_test)
    assert brier(calibrated, y_test) < brier(raw_test, y_test) - 0.01
    assert log_loss(calibrated, y_test) < log_loss(raw_test, y_test) - 0.02
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=1e-12)
    assert calibration.rows == 20_000


def test_calibration_is_monotone_so_each_class_keeps_its_ranking() -> None:
    raw, y = overconfident(20_000, seed=3)
    calibration = fit_calibration(raw, y)
    probe = np.random.default_rng(4).dirichlet([1.0, 1.0, 1.0], size=5_000)
    for data in (raw, probe):
        calibrated = calibration.apply(data)
        for column in (0, 2):
            order = np.argsort(data[:, column], kind="stable")
            assert np.all(np.diff(calibrated[order, column]) >= -1e-12)
    for x, y_knots in (calibration.short, calibration.long):
        assert x[0] == 0.0 and x[-1] == 1.0 and np.all(np.diff(x) > 0) and np.all(np.diff(y_knots) >= 0)


def test_the_isotonic_map_on_an_mlp_trained_with_class_weights_repairs_its_probabilities() -> None:
    """A class-weighted fit inflates the rare classes (a known distortion); the calibration undoes it out of
    sample."""
    pytest.importorskip("keras")
    from scalpbot.ml.model import ModelHyperParams, configure_threads, predict_keras, train_model

    configure_threads(1)
    x, y, vol = synthetic(6_000, seed=1)
    rare = np.flatnonzero(y != 1)[::3]  # thin the win classes so that weighting distorts
    keep = np.setdiff1d(np.arange(y.size), rare)
    x, y, vol = x[keep], y[keep], vol[keep]
    hp = ModelHyperParams(widths=(16,), batch_size=256, max_epochs=8, class_weighting=True, seed=2)
    fitted = train_model(x[:3_000], y[:3_000], vol[:3_000], x[3_000:], y[3_000:], vol[3_000:], hp)
    validation, held_out = slice(3_000, 4_000), slice(4_000, None)
    probs = predict_keras(fitted.model, x)[0]
    calibration = fit_calibration(probs[validation], y[validation])
    calibrated = calibration.apply(probs[held_out])
    assert log_loss(calibrated, y[held_out]) < log_loss(probs[held_out], y[held_out])
    assert brier(calibrated, y[held_out]) < brier(probs[held_out], y[held_out])


def passthrough_graph() -> bytes:
    """Return an ONNX graph of the inference contract whose probabilities are its input [batch, 3]."""
    nodes = [
        helper.make_node("Identity", ["features"], ["probs"]),
        helper.make_node("Slice", ["features", "one", "two", "one"], ["vol"]),
    ]
    graph = helper.make_graph(
        nodes,
        "passthrough",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("vol", TensorProto.FLOAT, ["batch", 1]),
        ],
        initializer=[
            numpy_helper.from_array(np.array([1], np.int64), "one"),
            numpy_helper.from_array(np.array([2], np.int64), "two"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    data: bytes = model.SerializeToString()
    return data


def test_the_onnx_graph_applies_the_calibration_the_tuning_saw_and_the_manifest_record_rebuilds_it() -> None:
    raw, y = overconfident(10_000, seed=5)
    calibration = fit_calibration(raw, y)
    rebuilt = Calibration.from_dict(calibration.to_dict())
    probe = np.vstack([raw[:2_000], np.random.default_rng(6).dirichlet([0.3, 0.3, 0.3], size=2_000)])
    graph = calibration.append_to(passthrough_graph())
    onnx.checker.check_model(onnx.load_from_string(graph))
    probs, vol = OnnxModel.from_bytes(graph).predict(probe.astype(np.float32))
    np.testing.assert_allclose(probs, calibration.apply(probe.astype(np.float32)), atol=1e-6)
    np.testing.assert_allclose(rebuilt.apply(probe), calibration.apply(probe))
    np.testing.assert_allclose(vol, probe[:, 1].astype(np.float32))  # the volatility passes untouched


def test_calibration_needs_enough_labelled_predictions() -> None:
    raw, y = overconfident(100, seed=7)
    raw[40:] = np.nan
    with pytest.raises(DataError, match="calibration needs at least 50 predicted and labelled rows, got 40"):
        fit_calibration(raw, y)
