"""Probability calibration on out-of-sample predictions: isotonic maps of P(short wins) and P(long wins).

Each win probability goes through its own monotone map, fitted one-vs-rest by isotonic regression
(``scipy.optimize.isotonic_regression``) on equal-count bins of the raw probability: the knots are the bins'
mean raw probabilities and the fitted win rates, joined linearly (and held flat beyond the outer knots, extended
to 0 and 1). P(neither) becomes the rest; where the two mapped win probabilities add up to more than 1, both are
divided by their sum. A map never reverses the order of its class's probabilities (equal rows may become tied).

The train job fits it on the walk-forward folds' validation predictions, each made by its own fold's model,
which are the only out-of-sample predictions it has (the test window stays the gate's); the published ONNX
graph applies it (:func:`scalpbot.ml.onnx_graph.append_monotone_maps`) and the manifest records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression

from scalpbot.errors import DataError
from scalpbot.ml.onnx_graph import append_monotone_maps

__all__ = ["Calibration", "fit_calibration"]

_BINS = 40
_MIN_ROWS_PER_BIN = 50


@dataclass(frozen=True)
class Calibration:
    """Knots ``(x, y)`` of the monotone maps of P(short wins) and P(long wins), and the rows they were fitted on."""

    short: tuple[np.ndarray, np.ndarray]
    long: tuple[np.ndarray, np.ndarray]
    rows: int

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities [n, 3] (float64) of raw ones [n, 3]; NaN rows stay NaN."""
        p = np.asarray(probs, dtype=np.float64)
        short = _map(p[:, 0], self.short)
        long = _map(p[:, 2], self.long)
        total = np.maximum(short + long, 1.0)
        short, long = short / total, long / total
        neither = np.maximum(1.0 - (short + long), 0.0)
        out: np.ndarray = np.stack([short, neither, long], axis=1)
        out[~np.isfinite(p).all(axis=1)] = np.nan
        return out

    def append_to(self, onnx_bytes: bytes) -> bytes:
        """Return the ONNX graph with the maps applied to its probability output."""
        return append_monotone_maps(onnx_bytes, self.short, self.long)

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest's ``calibration`` record."""
        return {
            "method": "isotonic",
            "rows": self.rows,
            "short": {"x": self.short[0].tolist(), "y": self.short[1].tolist()},
            "long": {"x": self.long[0].tolist(), "y": self.long[1].tolist()},
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Calibration:
        """Return the calibration a manifest recorded."""
        knots = {
            side: (np.asarray(record[side]["x"], np.float64), np.asarray(record[side]["y"], np.float64))
            for side in ("short", "long")
        }
        return cls(knots["short"], knots["long"], int(record["rows"]))


def _map(p: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Piecewise-linear map through ``knots`` as the ONNX graph computes it: y0 + sum of clipped segment rises."""
    x, y = knots
    widths = np.diff(x)
    slopes = np.diff(y) / widths
    rise = np.clip(p[:, None] - x[None, :-1], 0.0, widths[None, :]) @ slopes
    mapped: np.ndarray = y[0] + rise
    return mapped


def _class_map(p: np.ndarray, wins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the knots of the isotonic map of raw probability ``p`` to the win rate ``wins`` (0/1)."""
    order = np.argsort(p, kind="stable")
    bins = max(1, min(_BINS, p.size // _MIN_ROWS_PER_BIN))
    groups = np.array_split(order, bins)
    # Knots are float32 values (the graph's precision), so the graph computes the map the tuning saw to ~1e-7;
    # bins whose means round to the same float32 (tied raw probabilities) share one knot.
    means = np.array([p[g].mean() for g in groups]).astype(np.float32).astype(np.float64)
    x, keys = np.unique(means, return_inverse=True)
    weight = np.bincount(keys, weights=[g.size for g in groups]).astype(np.float64)
    rate = np.bincount(keys, weights=[wins[g].sum() for g in groups]).astype(np.float64) / weight
    fitted = isotonic_regression(rate, weights=weight, increasing=True).x
    knots_x = np.concatenate([[0.0], x, [1.0]])
    knots_y = np.concatenate([[fitted[0]], fitted, [fitted[-1]]])
    keep = np.concatenate([[True], np.diff(knots_x) > 0.0])  # a knot at 0 or 1 already is not repeated
    return knots_x[keep], np.clip(knots_y[keep], 0.0, 1.0).astype(np.float32).astype(np.float64)


def fit_calibration(probs: np.ndarray, y_class: np.ndarray) -> Calibration:
    """Return the isotonic calibration of predictions ``probs`` [n, 3] against the classes ``y_class`` [n].

    Only finite rows with a class in {0, 1, 2} count; fit it on out-of-sample predictions only.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_class)
    rows = np.isfinite(p).all(axis=1) & np.isin(y, (0, 1, 2))
    if rows.sum() < _MIN_ROWS_PER_BIN:
        raise DataError(
            f"calibration needs at least {_MIN_ROWS_PER_BIN} predicted and labelled rows, got {int(rows.sum())}; "
            "set train.calibration = 'none' or train on more bars"
        )
    p, y = p[rows], y[rows]
    return Calibration(_class_map(p[:, 0], y == 0), _class_map(p[:, 2], y == 2), int(rows.sum()))
