"""Meta-labelling: a second model that decides whether to take the primary model's signal.

The primary model and the tuned policy choose the side (and the size, stop, target and time stop); the meta
filter says whether a trade on that side, with those exits, is more likely to pay after costs than not. It is an
L2-regularized logistic regression of "the trade's net return is positive"
(:mod:`scalpbot.core.trade_outcomes`) on the decision bar's features, standardized, each once as it is and once
times the side (+1/-1: a feature that favours longs favours shorts when negated), on the side itself, and on
the primary's win probability of the side and its edge ``|p_long - p_short|``:

    z = u . w + (side * u) . w_side + d * side + a * p_win + b * edge + c,   u = (x - mean) / scale

A row whose ``z < logit(threshold)`` gets the probabilities ``(0, 1, 0)``, which no policy trades; other rows
keep the primary's. The train job fits it on the primary's out-of-sample fold predictions
(:mod:`scalpbot.jobs.train_meta`); the published ONNX graph applies it (:func:`append_to`), so the execute path
needs nothing new. :meth:`MetaFilter.apply` computes the same in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from scalpbot.errors import DataError

__all__ = ["MetaFilter", "fit_meta_filter", "meta_scores"]

MIN_ROWS = 100
"""Candidate trades (each outcome present at least 20 times) a filter needs to be fitted."""
_MIN_CLASS = 20
_L2 = 5.0
"""Penalty ``_L2 * |w|^2`` added to the summed log loss (standardized inputs; sklearn's C = 0.1)."""


@dataclass(frozen=True)
class MetaFilter:
    """The fitted filter (module docstring): the feature columns it reads of the model input, their mean and
    scale, the weights ``w`` and ``w_side`` (one per column), ``d``, ``a``, ``b``, ``c`` and the
    win-probability ``threshold`` under which a signal is dropped; ``rows``: candidate trades it was fitted on."""

    columns: tuple[int, ...]
    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray
    w_side: np.ndarray
    d: float
    a: float
    b: float
    c: float
    threshold: float
    rows: int

    def scores(self, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Return ``z`` (the log-odds that the side's trade pays) per row of inputs ``x`` and ``probs`` [n, 3]."""
        return meta_scores(self, x, probs)

    def apply(self, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Return ``probs`` [n, 3] with the dropped rows set to ``(0, 1, 0)`` (float64; NaN rows stay NaN)."""
        p = np.asarray(probs, dtype=np.float64)
        drop = self.scores(x, p) < _logit(self.threshold)  # NaN compares False: the row keeps its NaN
        out = p.copy()
        out[drop] = (0.0, 1.0, 0.0)
        return out

    def append_to(self, onnx_bytes: bytes) -> bytes:
        """Return the ONNX graph with the filter applied to its probability output."""
        from scalpbot.ml.onnx_graph import append_meta_filter

        return append_meta_filter(
            onnx_bytes,
            columns=np.asarray(self.columns, np.int64),
            mean=self.mean,
            scale=self.scale,
            w=self.w,
            w_side=self.w_side,
            extra=(self.d, self.a, self.b, self.c),
            cut=_logit(self.threshold),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest's record of the filter (everything :meth:`from_dict` needs)."""
        return {
            "method": "logistic",
            "rows": self.rows,
            "threshold": self.threshold,
            "columns": list(self.columns),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "w": self.w.tolist(),
            "w_side": self.w_side.tolist(),
            "d": self.d,
            "a": self.a,
            "b": self.b,
            "c": self.c,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> MetaFilter:
        """Return the filter a manifest recorded."""
        arrays = {k: np.asarray(record[k], np.float64) for k in ("mean", "scale", "w", "w_side")}
        return cls(
            columns=tuple(int(c) for c in record["columns"]),
            d=float(record["d"]),
            a=float(record["a"]),
            b=float(record["b"]),
            c=float(record["c"]),
            threshold=float(record["threshold"]),
            rows=int(record["rows"]),
            **arrays,
        )


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _side_inputs(x: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(side, p_win, edge)`` columns [n, 1] of ``probs`` [n, 3] (side 0 where the edge is 0)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] != x.shape[0]:
        raise DataError(f"probs must be [n, 3] with one row per input row ({x.shape[0]}); got {p.shape}")
    edge = p[:, 2:3] - p[:, 0:1]
    return np.sign(edge), np.maximum(p[:, 0:1], p[:, 2:3]), np.abs(edge)


def meta_scores(meta: MetaFilter, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Return the filter's ``z`` [n] for model inputs ``x`` [n, columns] and primary ``probs`` [n, 3]."""
    x = np.asarray(x, dtype=np.float64)
    u = (x[:, list(meta.columns)] - meta.mean) / meta.scale
    side, p_win, edge = _side_inputs(x, probs)
    z = (
        u @ meta.w
        + (side * u) @ meta.w_side
        + meta.d * side[:, 0]
        + meta.a * p_win[:, 0]
        + meta.b * edge[:, 0]
        + meta.c
    )
    out: np.ndarray = z
    return out


def fit_meta_filter(
    x: np.ndarray,
    probs: np.ndarray,
    wins: np.ndarray,
    *,
    columns: tuple[int, ...],
    threshold: float = 0.5,
) -> MetaFilter:
    """Return the filter fitted on candidate trades: inputs ``x`` [n, >= columns], primary ``probs`` [n, 3] and
    ``wins`` [n] (True: the trade's net return was positive).

    Rows with a non-finite input, or no side (``p_long == p_short``), are left out. The penalty weighs every
    input standardized (the features, the primary's win probability and edge); the weights are returned on
    the inputs' own scale. ``DataError`` when fewer than :data:`MIN_ROWS` remain or either
    outcome has fewer than 20 rows (a filter of so few trades would be noise).
    """
    if not 0.0 < threshold < 1.0:
        raise DataError(f"the meta filter's threshold must lie in (0, 1); got {threshold}")
    x = np.asarray(x, dtype=np.float64)
    side, p_win, edge = _side_inputs(x, probs)
    raw = x[:, list(columns)]
    y = np.asarray(wins, dtype=bool)
    keep = np.isfinite(raw).all(axis=1) & np.isfinite(p_win[:, 0]) & (side[:, 0] != 0)
    n, positives = int(keep.sum()), int(y[keep].sum())
    if n < MIN_ROWS or min(positives, n - positives) < _MIN_CLASS:
        raise DataError(
            f"a meta filter needs at least {MIN_ROWS} candidate trades with {_MIN_CLASS} of each outcome; got "
            f"{n} ({positives} paid): train on more bars or set train.meta_label = 'off'"
        )
    raw, side, p_win, edge, y = raw[keep], side[keep], p_win[keep], edge[keep], y[keep]
    mean = raw.mean(axis=0)
    scale = raw.std(axis=0)
    scale[~(scale > 1e-12)] = 1.0
    u = (raw - mean) / scale
    primary = np.hstack([p_win, edge])
    p_mean, p_scale = primary.mean(axis=0), primary.std(axis=0)
    p_scale[~(p_scale > 1e-12)] = 1.0
    design = np.hstack([u, side * u, side, (primary - p_mean) / p_scale, np.ones((n, 1))])
    target = np.where(y, 1.0, -1.0)
    penalty = np.full(design.shape[1], _L2)
    penalty[-1] = 0.0  # the intercept is not shrunk

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = target * (design @ theta)
        value = float(np.logaddexp(0.0, -margin).sum() + (penalty * theta * theta).sum())
        weight = -target * _sigmoid(-margin)
        return value, design.T @ weight + 2.0 * penalty * theta

    result = minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B")
    theta = result.x
    k = len(columns)
    a, b = theta[2 * k + 1 : 2 * k + 3] / p_scale  # back to the raw probability and edge
    return MetaFilter(
        columns=tuple(int(c) for c in columns),
        mean=mean,
        scale=scale,
        w=theta[:k],
        w_side=theta[k : 2 * k],
        d=float(theta[2 * k]),
        a=float(a),
        b=float(b),
        c=float(theta[2 * k + 3] - a * p_mean[0] - b * p_mean[1]),
        threshold=float(threshold),
        rows=n,
    )


def _sigmoid(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * v))
    return out
