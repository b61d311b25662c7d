"""The train job: prepare, fit, tune, evaluate, publish - a release and the promotion gate's verdict on it.

* **prepare**: bars ``[until - days, until)``, the venue profile, the features and the walk-forward folds
  (:func:`scalpbot.core.folds.walk_forward`): consecutive validation folds, each with a training span that ends
  a purge (the longest label horizon) plus an embargo before it, then the test window that only the gate sees.
* **fit**: for each candidate label (the barrier labels ``train.horizon``/``k_sl``/``k_tp`` and
  ``train.label_search``, the holding labels ``train.holding_horizons``; cost-aware,
  :class:`scalpbot.jobs.learning.LabelConfig`), one model per fold, fitted on the fold's training rows with early
  stopping on its validation rows; each fold's validation window is predicted by its own model only. The model
  is of the kind ``train.model`` names (:mod:`scalpbot.ml.registry`; the Keras MLP by default).
* **tune**: the policy is tuned by Optuna on all folds at once (hourly returns pooled, penalized by the folds'
  spread; :mod:`scalpbot.ml.tuning`); the candidate label with the best objective is chosen. The release ships
  the last fold's model: the most recent one, fitted like the models the policy was tuned on.
* **evaluate**: the test window scores the release, the baselines (not trading, sma-cross, random) and the
  release trading now; the gate weighs the evidence (the deflated Sharpe ratio and the PBO come from the
  trials' fold returns); permutation feature importance on the validation folds.
* **publish**: the release is written and becomes current only if the gate says so, by compare-and-swap.

**A rerun converges.** A run is identified by its training key (the sha256 of the series, the bars' content
and the venue, train, cost and gate settings). The tuning studies kept in the store are topped up to
``train.trials``, not extended, and the fits are seeded, so the same key trains the same release. A run killed
after it wrote its release finds that release when run again and only finishes its promotion; a run killed
before leaves no complete release (a release is visible once its manifest exists) and trains it again.

Everything is simulated on the market's venue profile (:func:`scalpbot.jobs.services.venue_profile`): labels, tuning,
scores and the gate pay its taker fee, round to its amount step, skip orders under its minimums, and neither
label nor trade a short where it cannot short. The manifest keeps the profile the release was made with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalpbot.core.features import FEATURE_SPEC_VERSION
from scalpbot.core.metrics import Metrics
from scalpbot.core.policy import signals_frame
from scalpbot.inference.signals import predict_bars
from scalpbot.jobs.learning import promote_through_gate, score_signals, simulate
from scalpbot.jobs.services import Services
from scalpbot.jobs.train_evaluation import (
    baselines,
    feature_importance,
    incumbent_score,
    judge_test,
    library_versions,
    promotion_reason,
    timed,
)
from scalpbot.jobs.train_models import calibrate, choose_kind
from scalpbot.jobs.train_steps import (
    Fitted,
    Prepared,
    check_workers,
    fold_windows,
    model_rows,
    prepare,
    split_folds,
    study_name,
    training_key,
    tune,
)
from scalpbot.state.dataset import SeriesId
from scalpbot.state.releases import ONNX_ARTIFACT, ReleaseStore, new_release_id

if TYPE_CHECKING:
    from scalpbot.ml.registry import ModelKind

__all__ = [
    "TrainReport",
    "conclude",
    "floor_text",
    "report_of",
    "resumed",
    "score_signals",
    "simulate",
    "split_folds",
    "train",
    "training_key",
    "tune_candidate",
]


def _windows_text(prepared: Prepared) -> str:
    """Return the folds and the test window in words: ``3 validation folds from 11-20 00:00, test 12-24 14:01 ..
    12-31 23:59`` (bar open times, UTC)."""
    index = prepared.bars.index
    folds = prepared.folds.folds
    first, (start, end) = folds[0].validation[0], prepared.folds.test
    return (
        f"{len(folds)} validation fold{'s' if len(folds) > 1 else ''} from {index[first]:%m-%d %H:%M}, "
        f"test {index[start]:%m-%d %H:%M} .. {index[end - 1]:%m-%d %H:%M} UTC"
    )


@dataclass(frozen=True)
class TrainReport:
    """What one train run did, with the time split in seconds and every score it compared."""

    series: SeriesId
    release_id: str
    promoted: bool
    reason: str
    timings: dict[str, float]
    windows: dict[str, tuple[str, str]]
    params: dict[str, float | int | bool]
    validation: Metrics
    test: Metrics
    baselines: dict[str, Metrics]
    incumbent: dict[str, Any] | None
    tuning: dict[str, Any]
    gate: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)
    importance: dict[str, float] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    meta_label: dict[str, Any] | None = None

    def announcement(self) -> tuple[str, str]:
        """Return the ``(subject, message)`` that announces the run's verdict."""
        verdict = "promoted" if self.promoted else "not promoted"
        return f"train {self.series}: release {self.release_id} {verdict}", self.reason

    def payload(self) -> dict[str, Any]:
        """Return the whole report as one JSON-ready object."""
        payload = dataclasses.asdict(self)
        payload["series"] = str(self.series)
        return payload


def train(
    services: Services,
    series: SeriesId,
    *,
    until: datetime | None = None,
    trials: int | None = None,
    show_progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
    workers: int = 1,
) -> TrainReport:
    """Train, tune, score and maybe promote a release of ``series`` on bars before ``until`` (default: all).

    ``workers``: local processes tuning each study together (> 1 needs ``train.study_storage`` on PostgreSQL).
    """
    from scalpbot.ml.registry import input_window

    cfg = services.settings.train
    check_workers(cfg, workers)
    timings: dict[str, float] = {}
    prepared = prepare(services, series, until, trials or cfg.trials, timings)
    log(f"{len(prepared.bars):,} bars of {series}: {_windows_text(prepared)}")
    trained = ReleaseStore(services.store).find(series.symbol, training_key=prepared.key)
    if trained is not None:
        log(f"these bars were trained with these settings already: release {trained[0]}")
        return resumed(services, series, *trained, timings)
    choice = choose_kind(prepared, cfg, timings, log, show_progress)
    kind, hp, model_record = choice.kind, choice.hp, choice.record
    fits = []
    for i, label in enumerate(prepared.candidates):
        models, records, probs, vol = choice.fits[i]
        calibration, calibration_record = None, None
        if cfg.calibration == "isotonic":  # the policy is tuned on what the release will output
            calibration, calibration_record = calibrate(prepared, label, probs, timings)
            probs = calibration.apply(probs)
        fits.append(
            tune_candidate(
                services,
                prepared,
                i,
                models,
                records,
                probs,
                vol,
                timings,
                log,
                show_progress,
                workers,
                calibration=calibration,
                calibration_record=calibration_record,
            )
        )
    return conclude(
        services,
        prepared,
        kind,
        fits,
        kind.describe(hp),
        model_record,
        timings,
        log,
        window=input_window(kind, hp),
    )


def tune_candidate(
    services: Services,
    prepared: Prepared,
    candidate: int,
    models: tuple[Any, ...],
    records: tuple[dict[str, Any], ...],
    probs: np.ndarray,
    vol: np.ndarray,
    timings: dict[str, float],
    log: Callable[[str], None],
    show_progress: bool = False,
    workers: int = 1,
    artifact: bytes | None = None,
    *,
    calibration: Any = None,
    calibration_record: dict[str, Any] | None = None,
) -> Fitted:
    """Tune the policy on candidate label ``candidate``'s fold predictions (its study topped up to the budget).

    ``artifact``: the last fold model's bytes as saved when fitted, when the fit ran in another invocation.
    ``calibration`` (and its manifest record): the calibration ``probs`` already went through, or ``None``.
    """
    label = prepared.candidates[candidate]
    with timed(timings, "tuning"):
        tuned = tune(
            services,
            prepared,
            fold_windows(prepared, probs, vol),
            study_name=study_name(prepared, candidate),
            label=label.to_dict(),
            show_progress=show_progress,
            log=log,
            workers=workers,
        )
    floor = tuned.floor
    moved = f"; {floor_text(floor)}" if floor and floor["chosen"] != floor["tuned"] else ""
    log(
        f"label {label.describe()}: fold objective "
        f"{tuned.best_value:.2f}{moved}, folds {[round(f['total_return'], 4) for f in tuned.best_folds]}"
    )
    return Fitted(label, models, records, probs, vol, tuned, artifact, calibration, calibration_record)


def floor_text(floor: Mapping[str, Any]) -> str:
    """Return ``confidence floor 0.78 -> 0.66 on the folds' return`` (``confidence floor 0.66 as tuned`` when
    the sweep kept it) for a ``TuningResult.floor`` record (not empty)."""
    if floor["chosen"] == floor["tuned"]:
        return f"confidence floor {floor['chosen']:.2f} as tuned"
    return f"confidence floor {floor['tuned']:.2f} -> {floor['chosen']:.2f} on the folds' return"


def conclude(
    services: Services,
    prepared: Prepared,
    kind: ModelKind,
    fits: list[Fitted],
    hyperparams: dict[str, Any],
    model_record: dict[str, Any],
    timings: dict[str, float],
    log: Callable[[str], None],
    *,
    window: int,
) -> TrainReport:
    """Choose the candidate label whose study scored best, put it through the meta filter when
    ``train.meta_label`` asks (:mod:`scalpbot.jobs.train_meta`), and publish it (:func:`publish`).

    ``window``: the bars of the trailing window the model reads beside the features (0: none).
    """
    from scalpbot.jobs.train_meta import meta_label

    best = max(fits, key=lambda f: f.tuned.best_value)
    chosen = best
    if services.settings.train.meta_label != "off":
        with timed(timings, "meta label"):
            chosen = meta_label(services, prepared, best, log)
    fits = [chosen if f is best else f for f in fits]
    model_record.update(folds=list(chosen.records), label_candidates=[f.label.to_dict() for f in fits])
    return publish(
        services, prepared, kind, chosen, fits, hyperparams, model_record, timings, log, window=window
    )


def publish(
    services: Services,
    prepared: Prepared,
    kind: ModelKind,
    chosen: Fitted,
    fits: list[Fitted],
    hyperparams: dict[str, Any],
    model_record: dict[str, Any],
    timings: dict[str, float],
    log: Callable[[str], None],
    *,
    window: int,
) -> TrainReport:
    """Evaluate the chosen candidate on the test window, write the release and promote it through the gate.

    The release holds the ONNX export (what execution loads; with the chosen candidate's calibration and meta
    filter appended) and the kind's own artifact (what online learning fine-tunes); the manifest records the
    kind, the feature set and the ``window`` bars of the trailing window the model reads after the features.
    """
    from scalpbot.inference.onnx import OnnxModel
    from scalpbot.ml.evidence import TrialSelection

    settings, cfg, costs = services.settings, services.settings.train, services.settings.backtest
    bars, venue, series, folds = prepared.bars, prepared.venue, prepared.series, prepared.folds
    with timed(timings, "export"):
        model_bytes = kind.save(chosen.models[-1]) if chosen.artifact is None else chosen.artifact
        onnx_bytes = kind.export_onnx(chosen.models[-1])
        if chosen.calibration is not None:
            onnx_bytes = chosen.calibration.append_to(onnx_bytes)
        if chosen.meta is not None:
            onnx_bytes = chosen.meta.append_to(onnx_bytes)
    with timed(timings, "predict"):
        probs, vol = predict_bars(
            bars, OnnxModel.from_bytes(onnx_bytes), feature_set=prepared.feature_set, window=window
        )
    params, tuned = chosen.tuned.best_params, chosen.tuned
    with timed(timings, "evaluation"):
        val_span, test_span = slice(*folds.validation), slice(*folds.test)
        val_bars, test_bars = bars.iloc[val_span], bars.iloc[test_span]
        fold_signals = signals_frame(val_bars.index, chosen.probs[val_span], chosen.vol[val_span], params)
        funding = prepared.funding
        validation = score_signals(val_bars, fold_signals, costs, venue, funding)
        test_signals = signals_frame(test_bars.index, probs[test_span], vol[test_span], params)
        test_result = simulate(test_bars, test_signals, costs, venue, funding)
        rivals = baselines(test_bars, test_signals, test_result.trades, costs, venue, cfg.seed, funding)
        importance = feature_importance(prepared, chosen, kind, seed=cfg.seed, x=model_rows(prepared, window))
    fold_results = [
        {**record, "validation": [bars.index[a].isoformat(), bars.index[b - 1].isoformat()], **result}
        for record, result, (a, b) in zip(
            chosen.records, tuned.best_folds, (f.validation for f in folds.folds), strict=True
        )
    ]
    releases = ReleaseStore(services.store)
    with timed(timings, "gate"):
        returns = np.vstack([f.tuned.trial_returns for f in fits])
        best_row = sum(f.tuned.n_rows for f in fits[: fits.index(chosen)]) + tuned.best_index
        selection = TrialSelection.from_folds(
            returns, best_row, "validation hour", multiplier=max(1, cfg.model_trials)
        )
        overfitting = {
            **tuned.summary(),
            "probability_of_backtest_overfitting": selection.pbo,
            "probability_of_loss": selection.pbo_loss,
            "deflated_sharpe": selection.deflated_sharpe(),
            "trials_run": selection.trials_run,
            "effective_trials": selection.n_trials,
            "label_candidates": len(fits),
            "exits": cfg.exits,
        }
        pointer = releases.pointer(series.symbol)
        incumbent, incumbent_equity = incumbent_score(
            releases, series, pointer, bars, test_span, costs, venue, prepared.funding
        )
        verdict = judge_test(settings, venue, test_bars, test_result, incumbent, incumbent_equity, selection)
    reason = promotion_reason(verdict, fold_results, test_result.metrics, rivals)
    now = services.clock.now()
    release_id = new_release_id(now, onnx_bytes)
    manifest = {
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "training_key": prepared.key,
        "exchange": series.exchange,
        "timeframe": series.timeframe,
        "data_window": {
            name: _iso_window(bars, span)
            for name, span in {
                "train": folds.train,
                "validation": folds.validation,
                "test": folds.test,
            }.items()
        },
        "folds": fold_results,
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": list(prepared.feature_names),
        "feature_set": prepared.feature_set.to_manifest(),
        "feature_importance": [[name, value] for name, value in importance.items()],
        "labels": chosen.label.to_dict(),
        "costs": {"fee": venue.taker_fee, "slippage": costs.slippage, "initial_equity": costs.initial_equity},
        "venue": venue.to_dict(),
        "model_kind": kind.name,
        "hyperparams": hyperparams,
        "window_bars": window,
        "ensemble": cfg.ensemble,
        "sample_weights": cfg.sample_weights,
        "calibration": chosen.calibration_record,
        "meta_label": chosen.meta_record,
        "params": params.to_dict(),
        "metrics": {"validation": validation, "test": test_result.metrics},
        "baselines": rivals,
        "tuning": overfitting,
        "model": model_record,
        "gate": {**verdict.to_dict(), "reason": reason, "incumbent": incumbent},
        "libraries": library_versions(),
    }
    with timed(timings, "release"):
        releases.write(
            series.symbol, release_id, manifest, {ONNX_ARTIFACT: onnx_bytes, kind.artifact: model_bytes}
        )
        promoted, reason = promote_through_gate(
            releases, series.symbol, release_id, verdict, pointer, now, reason=reason
        )
    log(reason)
    return report_of(series, release_id, manifest, promoted, reason, timings)


def report_of(
    series: SeriesId,
    release_id: str,
    manifest: Mapping[str, Any],
    promoted: bool,
    reason: str,
    timings: dict[str, float],
) -> TrainReport:
    """Return the report of the train run that wrote ``manifest`` (this run, or an earlier one it repeats)."""
    metrics, gate = manifest.get("metrics", {}), dict(manifest.get("gate", {}))
    return TrainReport(
        series=series,
        release_id=release_id,
        promoted=promoted,
        reason=reason,
        timings=timings,
        windows={k: (str(v[0]), str(v[1])) for k, v in manifest.get("data_window", {}).items()},
        params=dict(manifest.get("params", {})),
        validation=metrics.get("validation", {}),
        test=metrics.get("test", {}),
        baselines=dict(manifest.get("baselines", {})),
        incumbent=gate.pop("incumbent", None),
        tuning=dict(manifest.get("tuning", {})),
        gate=gate,
        model=dict(manifest.get("model", {})),
        folds=list(manifest.get("folds", [])),
        importance={str(name): float(value) for name, value in manifest.get("feature_importance", [])},
        labels=dict(manifest.get("labels", {})),
        meta_label=manifest.get("meta_label"),
    )


def resumed(
    services: Services,
    series: SeriesId,
    release_id: str,
    manifest: Mapping[str, Any],
    timings: dict[str, float],
) -> TrainReport:
    """Finish the run that wrote ``release_id`` (killed before, or repeated): promote it if its verdict said so."""
    releases = ReleaseStore(services.store)
    gate = manifest.get("gate", {})
    pointer = releases.pointer(series.symbol)
    judged_against = (gate.get("incumbent") or {}).get("release_id")
    if pointer is not None and pointer.release_id == release_id:
        promoted, reason = True, f"already current: {gate.get('reason', '')}"
    elif gate.get("promote") and judged_against == (None if pointer is None else pointer.release_id):
        promoted, reason = promote_through_gate(
            releases,
            series.symbol,
            release_id,
            None,
            pointer,
            services.clock.now(),
            reason=str(gate.get("reason", "")),
        )
    else:
        promoted, reason = False, f"these bars were trained already as {release_id}: {gate.get('reason', '')}"
    return report_of(series, release_id, manifest, promoted, reason, timings)


def _iso_window(bars: pd.DataFrame, span: tuple[int, int]) -> tuple[str, str]:
    first, last = bars.index[span[0]], bars.index[span[1] - 1]
    return first.strftime("%Y-%m-%dT%H:%M:%SZ"), last.strftime("%Y-%m-%dT%H:%M:%SZ")
