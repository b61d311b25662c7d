"""The train job's model choices on the walk-forward folds: which kind, an ensemble of it, a calibration.

* :func:`choose_kind`: each kind ``train.model`` names (every registered kind for ``"auto"``) is fitted per fold
  on the first candidate label, as an ensemble of ``train.ensemble`` seeds; the kind whose folds' validation
  predictions have the lowest class log loss wins. The losses are comparable across kinds because every fold
  is predicted by its own model on the same labelled rows; the test window is never seen. The chosen kind is
  then fitted on the other candidate labels (one kind alone: every label at once, one batch of fits).
* :func:`calibrate`: the isotonic calibration of the win probabilities (:mod:`scalpbot.ml.calibration`), fitted
  on the folds' validation rows whose label windows end inside their fold, so no label looks into the next
  fold or the test window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from scalpbot.core.folds import label_rows
from scalpbot.jobs.learning import LabelConfig, labelled_rows
from scalpbot.jobs.train_evaluation import timed
from scalpbot.jobs.train_steps import FoldFit, Prepared, fit_labels, hyper_parameters

if TYPE_CHECKING:
    from scalpbot.ml.calibration import Calibration
    from scalpbot.ml.registry import ModelKind

__all__ = ["KindChoice", "calibrate", "choose_kind", "validation_rows"]


@dataclass(frozen=True)
class KindChoice:
    """The chosen kind (an ensemble when ``train.ensemble`` > 1), its hyper-parameters, its fit on each
    candidate label (in ``Prepared.candidates`` order) and the record of the choice for the manifest."""

    kind: ModelKind
    hp: Any
    fits: tuple[FoldFit, ...]
    record: dict[str, Any]


def validation_rows(prepared: Prepared, label: LabelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return the mask of labelled validation rows whose label window ends inside their fold, and the classes."""
    n = len(prepared.bars)
    y, _, usable = labelled_rows(prepared.bars, prepared.features, label)
    rows = np.zeros(n, dtype=bool)
    for fold in prepared.folds.folds:
        rows |= label_rows(fold.validation, label.horizon, n)
    return usable & rows, y


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    picked = probs[np.arange(y.size), y]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def choose_kind(
    prepared: Prepared,
    cfg: Any,
    timings: dict[str, float],
    log: Callable[[str], None],
    show_progress: bool = False,
) -> KindChoice:
    """Return the kind of ``train.model`` with the lowest validation log loss on the first candidate label,
    fitted on every candidate label."""
    from scalpbot.ml.ensemble import EnsembleKind
    from scalpbot.ml.registry import model_kind

    names = cfg.model_kinds()
    labels = prepared.candidates
    several = len(names) > 1
    rows, y = validation_rows(prepared, labels[0]) if several else (None, np.empty(0, dtype=np.int64))
    choices: list[tuple[float, KindChoice]] = []
    for name in names:
        member = model_kind(name)
        member.threads(1)
        hp, record = hyper_parameters(prepared, member, cfg, timings, log)
        kind = member if cfg.ensemble <= 1 else EnsembleKind(member, cfg.ensemble)
        fitted = fit_labels(
            prepared,
            kind,
            labels[:1] if several else labels,
            hp,
            timings,
            show_progress,
            cfg.fit_workers,
            log,
            cfg.sample_weights,
        )
        loss = float("inf") if rows is None or not rows.any() else _log_loss(fitted[0][2][rows], y[rows])
        choices.append((loss, KindChoice(kind, hp, tuple(fitted), record)))
    _, best = min(choices, key=lambda c: c[0])
    record = {**best.record, "ensemble": cfg.ensemble}
    fits = best.fits
    if several:
        losses = ", ".join(f"{c.kind.name} {loss:.4f}" for loss, c in choices)
        log(f"model kinds on the validation folds (class log loss): {losses}; chosen {best.kind.name}")
        record["kind_search"] = {
            "chosen": best.kind.name,
            "validation_rows": int(rows.sum()) if rows is not None else 0,
            "validation_log_loss": {c.kind.name: loss for loss, c in choices},
        }
        rest = fit_labels(
            prepared, best.kind, labels[1:], best.hp, timings, show_progress, cfg.fit_workers, log,
            cfg.sample_weights,
        )  # fmt: skip
        fits = (*fits, *rest)
    return KindChoice(best.kind, best.hp, fits, record)


def calibrate(
    prepared: Prepared, label: LabelConfig, probs: np.ndarray, timings: dict[str, float]
) -> tuple[Calibration, dict[str, Any]]:
    """Return the calibration fitted on the folds' validation predictions ``probs`` and its manifest record.

    The record adds the fitted rows' windows and the class log loss and Brier score of those rows before and
    after calibration (in sample for the calibration: the gate judges on the test window).
    """
    from scalpbot.ml.calibration import fit_calibration

    rows, y = validation_rows(prepared, label)
    with timed(timings, "calibration"):
        calibration = fit_calibration(probs[rows], y[rows])
    raw, calibrated = probs[rows], calibration.apply(probs[rows])
    index = prepared.bars.index
    record = {
        **calibration.to_dict(),
        "fitted_on": [
            [
                f"{index[a]:%Y-%m-%dT%H:%M:%SZ}",
                f"{index[max(b - label.horizon, a + 1) - 1]:%Y-%m-%dT%H:%M:%SZ}",
            ]
            for a, b in (f.validation for f in prepared.folds.folds)
        ],
        "validation_log_loss": {"raw": _log_loss(raw, y[rows]), "calibrated": _log_loss(calibrated, y[rows])},
        "validation_brier": {"raw": _brier(raw, y[rows]), "calibrated": _brier(calibrated, y[rows])},
    }
    return calibration, record


def _brier(probs: np.ndarray, y: np.ndarray) -> float:
    onehot = np.eye(3)[y]
    return float(np.mean(np.sum(np.square(probs - onehot), axis=1)))
