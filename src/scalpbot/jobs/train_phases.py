"""The train job of one symbol split into phases, so that several invocations tune its studies together.

:func:`scalpbot.jobs.train.train` runs a whole train in one process. On AWS a Lambda invocation lives at most
15 minutes and one process tunes alone, so the daily state machine may split the run of one (symbol, time):

1. :func:`prepare_phase` - prepare, choose the model kind as ``train`` does (``train.model``: one kind, a list,
   or ``"auto"``), fit the fold models of every candidate label (``train.ensemble`` members each) and write the
   hand-over (:mod:`scalpbot.state.tuning_handover`: the policy windows with the fold predictions, the fold
   models, the kind, its ensemble size and the trailing-window bars it reads).
   Run again for the same bars and settings it finds the hand-over and fits nothing.
2. :func:`tune_phase` - one of several workers: read the windows (sha256-checked), join each candidate's study
   on the shared PostgreSQL storage (``train.study_storage``) until it holds its budget of complete trials or
   the worker's time is up. A worker killed mid-trial costs only time: the trial's heartbeat stops and
   another worker (or finish) runs it again.
3. :func:`finish_phase` - prepare again (bars and features, no fit), read the fold models back as the kind the
   hand-over names (each checked to predict its fold as it did when fitted), top every study
   up to its budget and collect it, then evaluate, gate and publish exactly as ``train`` does. A run whose
   release exists (finish ran before) only completes that release's promotion: a release is written once.

The studies, their budgets and options are those of ``train`` (:func:`scalpbot.jobs.train_steps.tuning_options`),
so the release is the one ``train`` makes from the same complete trials; with several workers the trial order,
and so the sampler's proposals, depend on the workers' timing (see :func:`scalpbot.ml.tuning.tune_policy`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalpbot.core.funding import funding_at_bars
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, DataError
from scalpbot.jobs.services import Services
from scalpbot.jobs.train import TrainReport, conclude, resumed, tune_candidate
from scalpbot.jobs.train_evaluation import timed
from scalpbot.jobs.train_models import calibrate, choose_kind
from scalpbot.jobs.train_steps import (
    TUNING_PERIOD,
    Prepared,
    model_rows,
    prepare,
    study_name,
    tuning_options,
)
from scalpbot.state.dataset import SeriesId
from scalpbot.state.releases import ReleaseStore
from scalpbot.state.tuning_handover import (
    Handover,
    handover_prefix,
    read_handover,
    read_manifest,
    write_handover,
)

if TYPE_CHECKING:
    from scalpbot.ml.calibration import Calibration
    from scalpbot.ml.registry import ModelKind

__all__ = ["PHASES", "finish_phase", "prepare_phase", "tune_phase"]

_SAME_PREDICTION = 1e-6
"""Largest difference in a class probability between a fold model read back and the model fitted."""

PHASES = ("prepare", "tune", "finish")
"""The phases of a split train run, in the order they run (``tune`` by several workers at once)."""


def prepare_phase(
    services: Services, series: SeriesId, until: datetime, *, log: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Fit the fold models of ``series`` on the bars before ``until`` and write the hand-over; return a summary.

    ``status``: ``prepared`` (fitted and written), ``found`` (a complete hand-over of the same training key
    was there: nothing fitted) or ``trained`` (a release of this run exists: finish will complete it).
    """
    from scalpbot.ml.registry import input_window

    cfg, timings = services.settings.train, dict[str, float]()
    prepared = prepare(services, series, until, cfg.trials, timings)
    prefix = handover_prefix(series.symbol, until)
    summary: dict[str, Any] = {
        "phase": "prepare",
        "symbol": series.symbol,
        "handover": prefix + "manifest.json",
    }
    trained = ReleaseStore(services.store).find(series.symbol, training_key=prepared.key)
    if trained is not None:
        return {**summary, "status": "trained", "release_id": trained[0], "timings": timings}
    studies = [study_name(prepared, i) for i in range(len(prepared.candidates))]
    found = read_manifest(services.store, prefix)
    if found is not None and found.get("training_key") == prepared.key:
        try:
            read_handover(services.store, prefix)
        except DataError as e:
            log(f"the hand-over found is incomplete ({e}); fitting again")
        else:
            log(f"the fold models of this run are at {prefix}: nothing to fit")
            return {**summary, "status": "found", "studies": studies, "timings": timings}
    choice = choose_kind(prepared, cfg, timings, log)  # as train chooses: on the first label's folds
    kind, hp, model_record = choice.kind, choice.hp, choice.record
    fitted = list(choice.fits)
    spans = [fold.validation for fold in prepared.folds.folds]
    calibrations = [
        calibrate(prepared, label, probs, timings)[1] if cfg.calibration == "isotonic" else None
        for label, (_, _, probs, _) in zip(prepared.candidates, fitted, strict=True)
    ]
    meta = {
        "symbol": series.symbol,
        "until": until.isoformat(),
        "training_key": prepared.key,
        "trials": prepared.trials,
        "venue": prepared.venue.to_dict(),
        "model_kind": kind.name,
        "ensemble": cfg.ensemble,
        "window": input_window(kind, hp),
        "studies": studies,
        "labels": [label.to_dict() for label in prepared.candidates],
        "records": [list(records) for _, records, _, _ in fitted],
        "hyperparams": kind.describe(hp),
        "model_record": model_record,
        "calibrations": calibrations,
    }
    with timed(timings, "handover"):
        write_handover(
            services.store,
            prefix,
            meta,
            spans,
            prepared.bars,
            [funding_at_bars(prepared.funding, pd.DatetimeIndex(prepared.bars.index[a:b])) for a, b in spans],
            [(probs, vol) for _, _, probs, vol in fitted],
            [[kind.save(model) for model in models] for models, _, _, _ in fitted],
            kind.artifact,
        )
    log(f"fitted {len(fitted)} candidate labels x {len(spans)} folds; hand-over at {prefix}")
    return {**summary, "status": "prepared", "studies": studies, "timings": timings}


def tune_phase(
    services: Services,
    series: SeriesId,
    until: datetime,
    *,
    worker: int,
    seconds: float | None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Tune the studies of the run prepared for ``series`` at ``until`` as worker ``worker``; return a summary.

    Joins each candidate's study in turn until it holds its budget of complete trials (counting every
    worker's), and stops starting trials once ``seconds`` (wall time; ``None``: no limit) have passed, leaving
    the rest to the other workers and to finish. ``trials`` counts the trials this worker completed per study.
    """
    from scalpbot.ml.shared_study import is_shared
    from scalpbot.ml.tuning import join_policy_study

    cfg = services.settings.train
    if not is_shared(cfg.study_storage):
        raise ConfigError(
            "the tune phase joins a study shared by several workers: set train.study_storage to "
            "postgresql://user@host/database (SCALPBOT_TRAIN__STUDY_STORAGE, or the template's StudyStorage)"
        )
    if seconds is not None and seconds <= 0:
        raise ConfigError(f"a tuning worker needs time to tune; got {seconds:.1f} s left")
    prefix = handover_prefix(series.symbol, until)
    handover = read_handover(services.store, prefix, models=False)
    summary: dict[str, Any] = {"phase": "tune", "symbol": series.symbol, "worker": worker, "trials": {}}
    trained = ReleaseStore(services.store).find(series.symbol, training_key=handover.training_key)
    if trained is not None:
        return {**summary, "status": "trained", "release_id": trained[0]}
    venue = Venue.from_dict(handover.meta["venue"])
    deadline = None if seconds is None else time.monotonic() + seconds
    for i, name in enumerate(handover.studies):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        options = tuning_options(
            services.settings,
            venue,
            int(handover.meta["trials"]),
            list(handover.funding),
            name,
            label=handover.meta["labels"][i],
        )
        windows = handover.policy_windows(i, TUNING_PERIOD, _tuned_probs(handover, i)[0])
        summary["trials"][name] = join_policy_study(
            windows, storage=cfg.study_storage, timeout_s=left, **options
        )
        log(f"worker {worker}: {summary['trials'][name]} trials of {name}")
    done = deadline is None or len(summary["trials"]) == len(handover.studies)
    return {**summary, "status": "tuned" if done else "out of time"}


def finish_phase(
    services: Services, series: SeriesId, until: datetime, *, log: Callable[[str], None] = lambda _: None
) -> TrainReport:
    """Complete the studies of the prepared run, then evaluate, gate and publish as ``train`` does.

    ``DataError`` naming the key when the hand-over is missing, altered, or was prepared from other bars or
    settings (nothing is published then).
    """
    from scalpbot.ml.ensemble import release_kind

    cfg, timings = services.settings.train, dict[str, float]()
    prepared = prepare(services, series, until, cfg.trials, timings)
    trained = ReleaseStore(services.store).find(series.symbol, training_key=prepared.key)
    if trained is not None:
        log(f"these bars were trained with these settings already: release {trained[0]}")
        return resumed(services, series, *trained, timings)
    prefix = handover_prefix(series.symbol, until)
    handover = read_handover(services.store, prefix)
    _check_handover(prepared, handover.training_key, handover.meta, prefix)
    meta = handover.meta
    kind = release_kind(str(meta["model_kind"]), int(meta.get("ensemble", 1)))
    kind.threads(1)
    window = int(meta.get("window", 0))
    x = model_rows(prepared, window)
    fits = []
    for i in range(len(prepared.candidates)):
        models = _fold_models(prepared, kind, x, handover.models[i], handover.probs[i], prefix)
        records = tuple(dict(record) for record in handover.meta["records"][i])
        probs, calibration = _tuned_probs(handover, i)
        fits.append(
            tune_candidate(
                services,
                prepared,
                i,
                models,
                records,
                probs,
                handover.vol[i],
                timings,
                log,
                artifact=handover.models[i][-1],
                calibration=calibration,
                calibration_record=handover.calibration(i),
            )
        )
    del x  # publish builds the rows it needs
    hyperparams = dict(handover.meta["hyperparams"])
    return conclude(
        services,
        prepared,
        kind,
        fits,
        hyperparams,
        dict(handover.meta["model_record"]),
        timings,
        log,
        window=window,
    )


def _tuned_probs(handover: Handover, candidate: int) -> tuple[np.ndarray, Calibration | None]:
    """Return candidate ``candidate``'s probabilities as its policy is tuned on them (through its calibration,
    when the run calibrates) and the calibration."""
    from scalpbot.ml.calibration import Calibration

    record = handover.calibration(candidate)
    if record is None:
        return handover.probs[candidate], None
    calibration = Calibration.from_dict(record)
    return calibration.apply(handover.probs[candidate]), calibration


def _fold_models(
    prepared: Prepared,
    kind: ModelKind,
    x: np.ndarray,
    saved: tuple[bytes, ...],
    probs: np.ndarray,
    prefix: str,
) -> tuple[Any, ...]:
    """Load a candidate's fold models and check each predicts its fold's rows of ``x`` (the model's inputs) as
    it did when fitted (which also builds the model's graph for the export)."""
    models = []
    for k, (data, fold) in enumerate(zip(saved, prepared.folds.folds, strict=True)):
        model = kind.load(data)
        span = slice(*fold.validation)
        again, _ = kind.predict(model, x[span])
        if not np.allclose(again, probs[span], rtol=0.0, atol=_SAME_PREDICTION, equal_nan=True):
            raise DataError(
                f"fold {k + 1}'s model in {prefix} does not predict its validation fold as it did when fitted; "
                "run the prepare phase again"
            )
        models.append(model)
    return tuple(models)


def _check_handover(prepared: Prepared, key: str, meta: Any, prefix: str) -> None:
    if key != prepared.key:
        raise DataError(
            f"the tuning hand-over {prefix}manifest.json was prepared from other bars or settings (training key "
            f"{key[:12]}, this run {prepared.key[:12]}); run the prepare phase again"
        )
    if len(meta["studies"]) != len(prepared.candidates):
        raise DataError(
            f"the tuning hand-over {prefix}manifest.json holds another number of candidate labels"
        )
