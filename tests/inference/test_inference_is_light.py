"""The ONNX inference path: light to import, and strict about the model and the features it is given."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from scalpbot.errors import CorruptArtifactError, ModelError
from scalpbot.inference.onnx import OnnxModel

HEAVY = ("keras", "torch", "optuna", "gymnasium", "stable_baselines3", "tensorflow", "jax")


def tiny_onnx(n_features: int = 4, *, vol_first: bool = False, outputs: int = 2) -> bytes:
    """Return a hand-built model: probs = softmax(x @ W) [batch, 3], vol = exp(x @ v) [batch, 1]."""
    w = numpy_helper.from_array(np.arange(n_features * 3, dtype=np.float32).reshape(n_features, 3) / 10, "w")
    v = numpy_helper.from_array(np.full((n_features, 1), 0.1, dtype=np.float32), "v")
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["features", "v"], ["log_vol"]),
        helper.make_node("Exp", ["log_vol"], ["vol"]),
    ]
    probs_out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3])
    vol_out = helper.make_tensor_value_info("vol", TensorProto.FLOAT, ["batch", 1])
    outs = [vol_out, probs_out] if vol_first else [probs_out, vol_out]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_features])],
        outs[:outputs],
        initializer=[w, v],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.arange(x.shape[1] * 3).reshape(x.shape[1], 3) / 10
    logits = x @ w
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), np.exp(x.sum(axis=1) * 0.1)


def test_importing_inference_pulls_in_no_heavy_framework() -> None:
    code = (
        "import json, sys\n"
        "import scalpbot.inference.onnx\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("vol_first", [False, True])
def test_outputs_are_told_apart_by_shape_not_name_or_order(vol_first: bool) -> None:
    model = OnnxModel.from_bytes(tiny_onnx(vol_first=vol_first))
    x = np.random.default_rng(0).normal(size=(5, 4))
    probs, vol = model.predict(x)
    expected_probs, expected_vol = reference(x.astype(np.float32).astype(np.float64))
    assert probs.shape == (5, 3)
    assert vol.shape == (5,)
    assert probs.dtype == vol.dtype == np.float64
    np.testing.assert_allclose(probs, expected_probs, rtol=1e-5)
    np.testing.assert_allclose(vol, expected_vol, rtol=1e-5)


def test_one_row_and_zero_rows_keep_their_shapes() -> None:
    model = OnnxModel.from_bytes(tiny_onnx())
    probs, vol = model.predict(np.ones((1, 4), dtype=np.float32))
    assert probs.shape == (1, 3)
    assert vol.shape == (1,)
    probs, vol = model.predict(np.ones((0, 4)))
    assert probs.shape == (0, 3)
    assert vol.shape == (0,)


@pytest.mark.parametrize("shape", [(1, 5), (2, 3), (4,)])
def test_wrong_feature_count_is_refused_with_model_error(shape: tuple[int, ...]) -> None:
    model = OnnxModel.from_bytes(tiny_onnx())
    assert model.n_features == 4
    with pytest.raises(ModelError, match=r"features must have shape \[n, 4\]"):
        model.predict(np.zeros(shape))


def test_garbage_bytes_raise_corrupt_artifact_error() -> None:
    with pytest.raises(CorruptArtifactError, match=r"model\.onnx \(7 bytes\) cannot be loaded"):
        OnnxModel.from_bytes(b"garbage")


def test_model_without_two_outputs_is_refused() -> None:
    with pytest.raises(ModelError, match="must have 2 outputs"):
        OnnxModel.from_bytes(tiny_onnx(outputs=1))
