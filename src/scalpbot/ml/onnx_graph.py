"""Compose exported ONNX graphs: average several models into one graph, append a calibration or a meta filter to a
graph's output.

Both keep the inference contract (:mod:`scalpbot.ml.registry`): one float32 input [batch, columns] and two
outputs, class probabilities [batch, 3] and forward volatility [batch, 1], told apart by shape as
:mod:`scalpbot.inference.onnx` does. One graph per release keeps a decision to one onnxruntime call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from scalpbot.errors import ModelError

__all__ = ["append_meta_filter", "append_monotone_maps", "average_graphs"]

_PROBS = "class_probs"
_VOL = "vol"


def _outputs(graph: onnx.GraphProto) -> tuple[str, str]:
    """Return the names of the probability and volatility outputs (by the last dimension: 3 and 1)."""
    probs = vol = None
    for out in graph.output:
        dims = out.type.tensor_type.shape.dim
        last = dims[-1].dim_value if dims else 0
        if last == 3:
            probs = out.name
        elif last == 1 or len(dims) == 1:
            vol = out.name
    if probs is None or vol is None or len(graph.output) != 2:
        raise ModelError(
            "the ONNX graph must have two outputs, probabilities [batch, 3] and volatility [batch, 1]"
        )
    return probs, vol


def average_graphs(graphs: Sequence[bytes]) -> bytes:
    """Return one ONNX graph whose outputs are the means of ``graphs``' outputs (same input, same contract).

    Each member's nodes and weights are prefixed ``m{i}_`` and read the shared input; the probabilities and
    the volatilities are averaged arithmetically (a mean of distributions is a distribution).
    """
    if not graphs:
        raise ModelError("an ensemble needs at least one member graph")
    models = [onnx.load_from_string(g) for g in graphs]
    first = models[0]
    shared = first.graph.input[0]
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    functions: list[onnx.FunctionProto] = []
    probs: list[str] = []
    vols: list[str] = []
    for i, model in enumerate(models):
        if [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:] != [
            d.dim_value for d in shared.type.tensor_type.shape.dim
        ][1:]:
            raise ModelError(f"ensemble member {i} reads another input shape than member 0")
        prefixed = compose.add_prefix(model, f"m{i}_")
        nodes.append(helper.make_node("Identity", [shared.name], [prefixed.graph.input[0].name]))
        nodes.extend(prefixed.graph.node)
        initializers.extend(prefixed.graph.initializer)
        functions.extend(prefixed.functions)
        p, v = _outputs(prefixed.graph)
        probs.append(p)
        vols.append(v)
    nodes.append(helper.make_node("Mean", probs, [_PROBS]))
    nodes.append(helper.make_node("Mean", vols, [_VOL]))
    batch = shared.type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_param or (batch.dim_value if batch.dim_value else "batch")
    graph = helper.make_graph(
        nodes,
        "scalpbot_ensemble",
        [shared],
        [
            helper.make_tensor_value_info(_PROBS, TensorProto.FLOAT, [batch_dim, 3]),
            helper.make_tensor_value_info(_VOL, TensorProto.FLOAT, [batch_dim, 1]),
        ],
        initializer=initializers,
    )
    merged = helper.make_model(
        graph, opset_imports=list(first.opset_import), functions=functions, ir_version=first.ir_version
    )
    onnx.checker.check_model(merged)
    data: bytes = merged.SerializeToString()
    return data


def append_monotone_maps(
    graph_bytes: bytes, short: tuple[np.ndarray, np.ndarray], long: tuple[np.ndarray, np.ndarray]
) -> bytes:
    """Return the graph with its probabilities passed through two piecewise-linear monotone maps.

    ``short``/``long``: knots ``(x, y)`` (x increasing, y non-decreasing) of the maps of P(short wins) and
    P(long wins); P(neither) becomes the rest. Where the two mapped probabilities add up to more than 1 both are
    divided by their sum (:meth:`scalpbot.ml.calibration.Calibration.apply` computes the same in float64).
    """
    model = onnx.load_from_string(graph_bytes)
    g = model.graph
    probs, _ = _outputs(g)
    out = f"{_PROBS}_calibrated"
    nodes = []
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "cal_start_0"),
        numpy_helper.from_array(np.array([1], np.int64), "cal_end_0"),
        numpy_helper.from_array(np.array([2], np.int64), "cal_start_2"),
        numpy_helper.from_array(np.array([3], np.int64), "cal_end_2"),
        numpy_helper.from_array(np.array([1], np.int64), "cal_axis"),
        numpy_helper.from_array(np.array(0.0, np.float32), "cal_zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "cal_one"),
    ]
    mapped = []
    for name, column, (x, y) in (("short", 0, short), ("long", 2, long)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        widths = np.diff(x)
        slopes = np.diff(y) / widths
        inits += [
            numpy_helper.from_array(x[:-1].astype(np.float32)[None, :], f"cal_{name}_x"),
            numpy_helper.from_array(widths.astype(np.float32)[None, :], f"cal_{name}_w"),
            numpy_helper.from_array(slopes.astype(np.float32)[:, None], f"cal_{name}_s"),
            numpy_helper.from_array(np.array([[y[0]]], np.float32), f"cal_{name}_y0"),
        ]
        p = f"cal_{name}_p"
        nodes += [
            helper.make_node("Slice", [probs, f"cal_start_{column}", f"cal_end_{column}", "cal_axis"], [p]),
            helper.make_node("Sub", [p, f"cal_{name}_x"], [f"{p}_d"]),
            helper.make_node("Max", [f"{p}_d", "cal_zero"], [f"{p}_pos"]),
            helper.make_node("Min", [f"{p}_pos", f"cal_{name}_w"], [f"{p}_seg"]),
            helper.make_node("MatMul", [f"{p}_seg", f"cal_{name}_s"], [f"{p}_rise"]),
            helper.make_node("Add", [f"{p}_rise", f"cal_{name}_y0"], [f"{p}_mapped"]),
        ]
        mapped.append(f"{p}_mapped")
    s, lg = mapped
    nodes += [
        helper.make_node("Add", [s, lg], ["cal_wins"]),
        helper.make_node("Max", ["cal_wins", "cal_one"], ["cal_total"]),
        helper.make_node("Div", [s, "cal_total"], ["cal_short"]),
        helper.make_node("Div", [lg, "cal_total"], ["cal_long"]),
        helper.make_node("Add", ["cal_short", "cal_long"], ["cal_wins_scaled"]),
        helper.make_node("Sub", ["cal_one", "cal_wins_scaled"], ["cal_rest"]),
        helper.make_node("Max", ["cal_rest", "cal_zero"], ["cal_neither"]),
        helper.make_node("Concat", ["cal_short", "cal_neither", "cal_long"], [out], axis=1),
    ]
    return _with_probs_output(model, probs, out, nodes, inits)


def append_meta_filter(
    graph_bytes: bytes,
    *,
    columns: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    w: np.ndarray,
    w_side: np.ndarray,
    extra: tuple[float, float, float, float],
    cut: float,
) -> bytes:
    """Return the graph with its probabilities set to ``(0, 1, 0)`` on rows the meta filter drops.

    The filter reads input ``columns`` of the graph's input row, standardized by ``mean`` and ``scale``, and the
    graph's own probabilities: ``z = u . w + (side * u) . w_side + d * side + a * p_win + b * edge + c`` with
    ``(d, a, b, c) = extra``; a row is dropped when ``z < cut`` (:meth:`scalpbot.ml.meta_label.MetaFilter.apply` computes the same
    in float64).
    """
    model = onnx.load_from_string(graph_bytes)
    g = model.graph
    probs, _ = _outputs(g)
    source = g.input[0].name
    out = f"{_PROBS}_filtered"
    d, a, b, c = extra

    def tensor(value: np.ndarray, name: str) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value), name)

    inits = [
        tensor(np.asarray(columns, np.int64), "meta_columns"),
        tensor(np.asarray(mean, np.float32)[None, :], "meta_mean"),
        tensor(np.asarray(scale, np.float32)[None, :], "meta_scale"),
        tensor(np.asarray(w, np.float32)[:, None], "meta_w"),
        tensor(np.asarray(w_side, np.float32)[:, None], "meta_w_side"),
        tensor(np.array([[d]], np.float32), "meta_d"),
        tensor(np.array([[a]], np.float32), "meta_a"),
        tensor(np.array([[b]], np.float32), "meta_b"),
        tensor(np.array([[c]], np.float32), "meta_c"),
        tensor(np.array([[cut]], np.float32), "meta_cut"),
        tensor(np.array([[0.0, 1.0, 0.0]], np.float32), "meta_none"),
        tensor(np.array([0], np.int64), "meta_start_0"),
        tensor(np.array([1], np.int64), "meta_end_0"),
        tensor(np.array([2], np.int64), "meta_start_2"),
        tensor(np.array([3], np.int64), "meta_end_2"),
        tensor(np.array([1], np.int64), "meta_axis"),
    ]
    nodes = [
        helper.make_node("Gather", [source, "meta_columns"], ["meta_x"], axis=1),
        helper.make_node("Sub", ["meta_x", "meta_mean"], ["meta_centred"]),
        helper.make_node("Div", ["meta_centred", "meta_scale"], ["meta_u"]),
        helper.make_node("Slice", [probs, "meta_start_0", "meta_end_0", "meta_axis"], ["meta_p_short"]),
        helper.make_node("Slice", [probs, "meta_start_2", "meta_end_2", "meta_axis"], ["meta_p_long"]),
        helper.make_node("Sub", ["meta_p_long", "meta_p_short"], ["meta_signed_edge"]),
        helper.make_node("Sign", ["meta_signed_edge"], ["meta_side"]),
        helper.make_node("Abs", ["meta_signed_edge"], ["meta_edge"]),
        helper.make_node("Max", ["meta_p_short", "meta_p_long"], ["meta_p_win"]),
        helper.make_node("MatMul", ["meta_u", "meta_w"], ["meta_z_plain"]),
        helper.make_node("Mul", ["meta_u", "meta_side"], ["meta_u_side"]),
        helper.make_node("MatMul", ["meta_u_side", "meta_w_side"], ["meta_z_side"]),
        helper.make_node("Mul", ["meta_side", "meta_d"], ["meta_z_sign"]),
        helper.make_node("Mul", ["meta_p_win", "meta_a"], ["meta_z_win"]),
        helper.make_node("Mul", ["meta_edge", "meta_b"], ["meta_z_edge"]),
        helper.make_node(
            "Sum",
            ["meta_z_plain", "meta_z_side", "meta_z_sign", "meta_z_win", "meta_z_edge", "meta_c"],
            ["meta_z"],
        ),
        helper.make_node("Less", ["meta_z", "meta_cut"], ["meta_drop"]),
        helper.make_node("Where", ["meta_drop", "meta_none", probs], [out]),
    ]
    return _with_probs_output(model, probs, out, nodes, inits)


def _with_probs_output(
    model: onnx.ModelProto,
    probs: str,
    out: str,
    nodes: Sequence[onnx.NodeProto],
    inits: Sequence[onnx.TensorProto],
) -> bytes:
    """Return ``model`` with ``nodes`` and ``inits`` added and its probability output ``probs`` replaced by
    ``out`` [batch, 3] (the volatility output kept), checked and serialized."""
    g = model.graph
    g.node.extend(nodes)
    g.initializer.extend(inits)
    old = next(o for o in g.output if o.name == probs)
    batch = old.type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_param or (batch.dim_value if batch.dim_value else "batch")
    replacement = helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch_dim, 3])
    outputs = [replacement if o.name == probs else o for o in g.output]
    del g.output[:]
    g.output.extend(outputs)
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data
