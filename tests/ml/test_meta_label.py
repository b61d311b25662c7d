"""The meta filter: it learns which of the primary's trades pay, the ONNX graph applies it as fitted, and it
refuses to be fitted on too few trades."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from scalpbot.errors import DataError
from scalpbot.inference.onnx import OnnxModel
from scalpbot.ml.meta_label import MetaFilter, fit_meta_filter

FEATURES = 4


def candidates(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return model inputs [n, 4 + FEATURES] (the first 4 columns: probs and vol, as ``graph`` reads them),
    primary probabilities [n, 3] and whether each trade paid.

    A trade pays when feature 0 agrees with its side (a long after a rise, a short after a fall), 90 % of the
    time; the primary's probabilities say nothing about it.
    """
    rng = np.random.default_rng(seed)
    side = rng.choice([-1, 1], size=n)
    p_win = rng.uniform(0.55, 0.8, size=n)
    probs = np.stack([np.where(side < 0, p_win, 0.1), np.zeros(n), np.where(side > 0, p_win, 0.1)], axis=1)
    probs[:, 1] = 1.0 - probs[:, 0] - probs[:, 2]
    features = rng.normal(size=(n, FEATURES)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 5.0, -1.0, 0.0]
    wins = (side * features[:, 0] > 0) ^ (rng.random(n) < 0.1)
    x = np.hstack([probs, np.full((n, 1), 0.01), features])
    return x, probs, wins


def graph() -> bytes:
    """Return an ONNX graph of the inference contract reading [batch, 4 + FEATURES]: its probabilities are the
    first three columns, its volatility the fourth."""
    nodes = [
        helper.make_node("Slice", ["x", "zero", "three", "one"], ["probs"]),
        helper.make_node("Slice", ["x", "three", "four", "one"], ["vol"]),
    ]
    ints = {"zero": 0, "one": 1, "three": 3, "four": 4}
    g = helper.make_graph(
        nodes,
        "inputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4 + FEATURES])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("vol", TensorProto.FLOAT, ["batch", 1]),
        ],
        initializer=[numpy_helper.from_array(np.array([v], np.int64), k) for k, v in ints.items()],
    )
    data: bytes = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    ).SerializeToString()
    return data


COLUMNS = tuple(range(4, 4 + FEATURES))


def test_the_filter_learns_which_side_a_feature_favours_and_keeps_the_paying_trades_out_of_sample() -> None:
    x, probs, wins = candidates(3_000, seed=1)
    meta = fit_meta_filter(x, probs, wins, columns=COLUMNS)
    test_x, test_probs, test_wins = candidates(3_000, seed=2)
    kept = meta.apply(test_x, test_probs)[:, 1] < 1.0
    assert test_wins[kept].mean() > 0.85  # of the kept trades 85 % pay, against half of all
    assert kept[test_wins].mean() > 0.85  # and most paying trades are kept
    assert abs(meta.w_side[0]) > 5 * np.abs(meta.w_side[1:]).max()  # found by the side-signed feature 0
    dropped = meta.apply(test_x, test_probs)[~kept]
    np.testing.assert_array_equal(dropped, np.tile([0.0, 1.0, 0.0], (len(dropped), 1)))


def test_the_filter_learns_a_side_that_pays_and_the_primarys_own_confidence() -> None:
    """Longs pay 80 % of the time and shorts 30 % (the features say nothing): the shorts are dropped. Then a
    trade pays when the primary's win probability is above 0.67: the filter follows it, though the
    probability spreads over 0.25 only (the penalty weighs it standardized, as the features)."""
    x, probs, _ = candidates(4_000, seed=7)
    rng = np.random.default_rng(8)
    long = probs[:, 2] > probs[:, 0]
    wins = rng.random(4_000) < np.where(long, 0.8, 0.3)
    meta = fit_meta_filter(x[:3_000], probs[:3_000], wins[:3_000], columns=COLUMNS)
    kept = meta.apply(x[3_000:], probs[3_000:])[:, 1] < 1.0
    assert kept[long[3_000:]].mean() > 0.95 and kept[~long[3_000:]].mean() < 0.05
    p_win = probs.max(axis=1)
    wins = (p_win > 0.67) ^ (rng.random(4_000) < 0.05)
    meta = fit_meta_filter(x[:3_000], probs[:3_000], wins[:3_000], columns=COLUMNS)
    kept = meta.apply(x[3_000:], probs[3_000:])[:, 1] < 1.0
    assert (kept == (p_win[3_000:] > 0.67)).mean() > 0.9


def test_the_onnx_graph_drops_the_rows_the_filter_drops_and_the_manifest_record_rebuilds_it() -> None:
    x, probs, wins = candidates(3_000, seed=3)
    meta = fit_meta_filter(x, probs, wins, columns=COLUMNS)
    rebuilt = MetaFilter.from_dict(meta.to_dict())
    probe = candidates(2_000, seed=4)[0].astype(np.float32)
    composed = meta.append_to(graph())
    onnx.checker.check_model(onnx.load_from_string(composed))
    out, vol = OnnxModel.from_bytes(composed).predict(probe)
    expected = meta.apply(probe, probe[:, :3])
    clear = np.abs(meta.scores(probe, probe[:, :3])) > 1e-4  # float32 rounding decides rows on the cut
    assert clear.mean() > 0.99
    np.testing.assert_allclose(out[clear], expected[clear], atol=1e-6)
    assert (out[:, 1] == 1.0).sum() > 500  # it does drop
    np.testing.assert_array_equal(rebuilt.apply(probe, probe[:, :3]), expected)
    np.testing.assert_allclose(vol, probe[:, 3])  # the volatility passes untouched


def test_rows_without_features_keep_the_primarys_probabilities() -> None:
    x, probs, wins = candidates(1_000, seed=5)
    meta = fit_meta_filter(x, probs, wins, columns=COLUMNS)
    x[:10, 5] = np.nan
    np.testing.assert_array_equal(meta.apply(x, probs)[:10], probs[:10])


def test_too_few_trades_or_outcomes_all_alike_are_refused_naming_the_setting() -> None:
    x, probs, wins = candidates(1_000, seed=6)
    with pytest.raises(
        DataError, match=r"at least 100 candidate trades .* got 99 .*train.meta_label = 'off'"
    ):
        fit_meta_filter(x[:99], probs[:99], wins[:99], columns=COLUMNS)
    with pytest.raises(DataError, match=r"got 1000 \(1000 paid\)"):
        fit_meta_filter(x, probs, np.ones(1_000, bool), columns=COLUMNS)
    with pytest.raises(DataError, match="threshold must lie in"):
        fit_meta_filter(x, probs, wins, columns=COLUMNS, threshold=1.0)
