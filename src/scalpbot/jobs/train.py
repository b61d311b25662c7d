"""The train job: prepare, fit, tune, evaluate, publish - a release and the promotion gate's verdict on it.

* **prepare**: bars ``[until - days, until)``, the venue profile, the features and the walk-forward folds
  (:func:`scalpbot.core.folds.walk_forward`): consecutive validation folds, each with a training span that ends
  a purge (the longest label horizon) plus an embargo before it, then the test window that only the gate sees.
* **fit**: for each candidate label (``train.horizon``/``k_sl``/``k_tp`` and ``train.label_search``; cost-aware,
  :class:`scalpbot.jobs.learning.LabelConfig`), one model per fold, fitted on the fold's training rows with early
  stopping on its validation rows; each fold's validation window is predicted by its own model only.
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

Everything is simulated on the market's venue profile (:func:`scalpbot.wiring.venue_profile`): labels, tuning,
scores and the gate pay its taker fee, round to its amount step, skip orders under its minimums, and neither
label nor trade a short where it cannot short. The manifest keeps the profile the release was made with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.core.evaluation import PolicyWindow
from scalpbot.core.features import FEATURE_NAMES, FEATURE_SPEC_VERSION, FEATURE_WARMUP, build_features
from scalpbot.core.folds import WalkForward, label_rows, walk_forward
from scalpbot.core.metrics import Metrics
from scalpbot.core.policy import signals_frame
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.core.venue import Venue
from scalpbot.data.dataset import SeriesId
from scalpbot.errors import ConfigError, DataError
from scalpbot.jobs.learning import LabelConfig, labelled_rows, promote_through_gate, score_signals, simulate
from scalpbot.jobs.train_evaluation import (
    baselines,
    feature_importance,
    incumbent_score,
    judge_test,
    library_versions,
    promotion_reason,
    timed,
)
from scalpbot.release_signals import predict_bars
from scalpbot.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore, new_release_id, pair_of
from scalpbot.wiring import Services, venue_profile

__all__ = ["TrainReport", "report_of", "score_signals", "simulate", "split_folds", "train", "training_key"]

_MIN_WINDOW_BARS = 2 * 1440
_MIN_FOLD_BARS = 1440
_TUNING_PERIOD = "1h"
_HOURS_PER_YEAR = 365.0 * 24.0


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

    def announcement(self) -> tuple[str, str]:
        """Return the ``(subject, message)`` that announces the run's verdict."""
        verdict = "promoted" if self.promoted else "not promoted"
        return f"train {self.series}: release {self.release_id} {verdict}", self.reason

    def payload(self) -> dict[str, Any]:
        """Return the whole report as one JSON-ready object."""
        payload = dataclasses.asdict(self)
        payload["series"] = str(self.series)
        return payload


@dataclass(frozen=True)
class Prepared:
    """The inputs of a run: bars, venue, features, folds, the candidate labels and the training key."""

    series: SeriesId
    bars: pd.DataFrame
    venue: Venue
    features: np.ndarray
    folds: WalkForward
    candidates: tuple[LabelConfig, ...]
    key: str
    trials: int


@dataclass(frozen=True)
class Fitted:
    """One candidate label's fold models, the fold predictions and the tuned policy."""

    label: LabelConfig
    models: tuple[Any, ...]
    records: tuple[dict[str, Any], ...]
    probs: np.ndarray
    vol: np.ndarray
    tuned: Any


def split_folds(n_bars: int, cfg: Any, horizon: int) -> WalkForward:
    """Return the walk-forward folds of ``train`` settings ``cfg`` over ``n_bars`` 1m bars, purged by ``horizon``."""
    return walk_forward(
        n_bars,
        warmup=FEATURE_WARMUP,
        horizon=horizon,
        embargo=cfg.embargo,
        n_folds=cfg.folds,
        validation_fraction=cfg.validation_fraction,
        test_fraction=cfg.test_fraction,
        min_window_bars=min(_MIN_FOLD_BARS, _MIN_WINDOW_BARS),
        max_train_bars=None if cfg.max_train_days is None else int(cfg.max_train_days * 1440),
    )


def _candidates(cfg: Any, venue: Venue, slippage: float) -> tuple[LabelConfig, ...]:
    shapes = [(cfg.horizon, cfg.k_sl, cfg.k_tp), *cfg.label_search]
    unique = list(dict.fromkeys((int(h), float(a), float(b)) for h, a, b in shapes))
    return tuple(
        LabelConfig(h, k_sl, k_tp, venue.taker_fee, slippage, venue.shorts, cfg.min_tp_round_trips)
        for h, k_sl, k_tp in unique
    )


def prepare(
    services: Services, series: SeriesId, until: datetime | None, trials: int, timings: dict[str, float]
) -> Prepared:
    """Load the bars before ``until``, the venue profile, the features and the folds; ``DataError`` if too few."""
    settings, cfg = services.settings, services.settings.train
    venue = venue_profile(services.store, settings, series)
    with timed(timings, "load"):
        end = None if until is None else pd.Timestamp(until)
        last = services.dataset.last_open_time(series) if end is None else end
        if last is None:
            raise DataError(f"no bars stored for {series}; run `scalpbot fetch` first")
        start = (end if end is not None else last) - pd.Timedelta(days=cfg.days)
        bars = services.dataset.read(series, start, end)
    candidates = _candidates(cfg, venue, settings.backtest.slippage)
    folds = split_folds(len(bars), cfg, max(c.horizon for c in candidates))
    key = training_key(series, bars, settings, venue, trials)
    with timed(timings, "features"):
        features = build_features(bars).to_numpy(dtype=np.float64) if len(bars) else np.empty((0, 0))
    return Prepared(series, bars, venue, features, folds, candidates, key, trials)


def fit(
    prepared: Prepared,
    label: LabelConfig,
    hp: Any,
    timings: dict[str, float],
    show_progress: bool = False,
) -> tuple[tuple[Any, ...], tuple[dict[str, Any], ...], np.ndarray, np.ndarray]:
    """Fit one model per fold on ``label``; return the models, their records and the fold predictions.

    Predictions cover every bar (NaN outside the validation folds); fold ``k``'s come from its own model.
    """
    from scalpbot.ml import model as ml_model

    n = len(prepared.bars)
    with timed(timings, "labels"):
        y, fwd_vol, usable = labelled_rows(prepared.bars, prepared.features, label)
    x = prepared.features
    probs = np.full((n, 3), np.nan)
    vol = np.full(n, np.nan)
    models, records = [], []
    for k, fold in enumerate(prepared.folds.folds):
        train_rows = usable & label_rows(fold.train, label.horizon, n)
        val_rows = usable & label_rows(fold.validation, label.horizon, n)
        with timed(timings, "fit"):
            fitted = ml_model.train_model(
                x[train_rows], y[train_rows], fwd_vol[train_rows],
                x[val_rows], y[val_rows], fwd_vol[val_rows],
                hp, show_progress=show_progress and k == len(prepared.folds.folds) - 1,
            )  # fmt: skip
        with timed(timings, "predict"):
            span = slice(*fold.validation)
            probs[span], vol[span] = ml_model.predict_keras(fitted.model, x[span])
        models.append(fitted.model)
        records.append(
            {
                "fold": k + 1,
                "train_rows": int(train_rows.sum()),
                "validation_rows": int(val_rows.sum()),
                "epochs_run": fitted.epochs_run,
                "best_val_loss": fitted.best_val_loss,
            }
        )
    return tuple(models), tuple(records), probs, vol


def fold_windows(prepared: Prepared, probs: np.ndarray, vol: np.ndarray) -> list[PolicyWindow]:
    """Return one hourly-scored policy window per validation fold with its predictions."""
    windows = []
    for fold in prepared.folds.folds:
        span = slice(*fold.validation)
        bars = prepared.bars.iloc[span]
        windows.append(PolicyWindow.from_frame(bars, probs[span], vol[span], period=_TUNING_PERIOD))
    return windows


def tune(
    services: Services,
    prepared: Prepared,
    windows: list[PolicyWindow],
    *,
    study_name: str,
    show_progress: bool,
    log: Callable[[str], None],
) -> Any:
    """Run the study in ``train.study_storage`` or, by default, in an sqlite file kept in the store.

    The stored study is resumed when the same data is trained again and topped up to the run's trials (so
    a rerun reproduces the run it repeats); a study that no longer matches the folds (other costs or bounds)
    is started afresh. Trials pay the venue's taker fee and follow its order rules; where it cannot short, no
    trial shorts (``allow_short`` off in the base params).
    """
    from scalpbot.ml.tuning import load_study_db, save_study_db, tune_policy

    cfg, costs, venue = services.settings.train, services.settings.backtest, prepared.venue
    key = f"models/{pair_of(prepared.series.symbol)}/studies/{study_name}.db"
    stored = cfg.study_storage is None
    with TemporaryDirectory() as tmp:
        study_db = Path(tmp) / "study.db"
        if stored and load_study_db(services.store, key, study_db):
            log(f"resuming the stored study {study_name}")
        storage = cfg.study_storage or f"sqlite:///{study_db}"

        def run() -> Any:
            return tune_policy(
                windows,
                ParamBounds(ParamBounds.default().ranges, StrategyParams(allow_short=venue.shorts)),
                n_trials=prepared.trials,
                seed=cfg.seed,
                sampler=cfg.sampler,
                fee=venue.taker_fee,
                slippage=costs.slippage,
                rules=venue.order_rules(),
                initial_equity=costs.initial_equity,
                min_trades=cfg.min_trades,
                periods_per_year=_HOURS_PER_YEAR,
                dispersion=cfg.dispersion,
                objective=cfg.objective,
                storage=storage,
                study_name=study_name,
                show_progress=show_progress,
                top_up=True,
            )

        try:
            tuned = run()
        except ConfigError as e:
            if not stored:
                raise
            log(f"the stored study does not match this run ({e}); starting a new one")
            study_db.unlink(missing_ok=True)
            tuned = run()
        if stored:
            save_study_db(services.store, key, study_db)
    return tuned


def train(
    services: Services,
    series: SeriesId,
    *,
    until: datetime | None = None,
    trials: int | None = None,
    show_progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> TrainReport:
    """Train, tune, score and maybe promote a release of ``series`` on bars before ``until`` (default: all)."""
    from scalpbot.ml import model as ml_model

    cfg = services.settings.train
    timings: dict[str, float] = {}
    prepared = prepare(services, series, until, trials or cfg.trials, timings)
    spans = {f"fold {i + 1}": f.validation for i, f in enumerate(prepared.folds.folds)}
    log(f"{len(prepared.bars):,} bars of {series}: validation folds {spans}, test {prepared.folds.test}")
    trained = ReleaseStore(services.store).find(series.symbol, training_key=prepared.key)
    if trained is not None:
        log(f"these bars were trained with these settings already: release {trained[0]}")
        return _resumed(services, series, *trained, timings)
    ml_model.configure_threads(1)
    hp, model_record = _hyper_parameters(prepared, cfg, timings, log)
    fits = []
    stamp = f"{prepared.bars.index[-1]:%Y%m%dT%H%M}"
    for i, label in enumerate(prepared.candidates):
        models, records, probs, vol = fit(prepared, label, hp, timings, show_progress)
        name = f"{series.exchange}-{pair_of(series.symbol)}-{series.timeframe}-{stamp}" + (
            f"-l{i}" if i else ""
        )
        with timed(timings, "tuning"):
            tuned = tune(
                services,
                prepared,
                fold_windows(prepared, probs, vol),
                study_name=name,
                show_progress=show_progress,
                log=log,
            )
        fits.append(Fitted(label, models, records, probs, vol, tuned))
        log(
            f"label horizon {label.horizon}, SL/TP {label.k_sl:g}/{label.k_tp:g} sigma: fold objective "
            f"{tuned.best_value:.2f}, folds {[round(f['total_return'], 4) for f in tuned.best_folds]}"
        )
    chosen = max(fits, key=lambda f: f.tuned.best_value)
    model_record.update(folds=list(chosen.records), label_candidates=[f.label.to_dict() for f in fits])
    return publish(services, prepared, chosen, fits, hp, model_record, timings, log)


def _hyper_parameters(
    prepared: Prepared, cfg: Any, timings: dict[str, float], log: Callable[[str], None]
) -> tuple[Any, dict[str, Any]]:
    """Return the model's hyper-parameters: the configured ones, or the model search's on the last fold."""
    from scalpbot.ml import model as ml_model

    hp = ml_model.ModelHyperParams(widths=tuple(cfg.widths), max_epochs=cfg.max_epochs, seed=cfg.seed)
    if not cfg.model_trials:
        return hp, {}
    from scalpbot.ml.model_search import search_model

    label, x, n = prepared.candidates[0], prepared.features, len(prepared.bars)
    y, fwd_vol, usable = labelled_rows(prepared.bars, x, label)
    fold = prepared.folds.folds[-1]
    tr = usable & label_rows(fold.train, label.horizon, n)
    va = usable & label_rows(fold.validation, label.horizon, n)
    with timed(timings, "model_search"):
        search = search_model(
            x[tr], y[tr], fwd_vol[tr], x[va], y[va], fwd_vol[va], hp, trials=cfg.model_trials
        )
    log(
        f"model search: {cfg.model_trials} trials, chosen widths {list(search.best.widths)}, dropout "
        f"{search.best.dropout:.3f}, learning rate {search.best.learning_rate:.2e} "
        f"(validation loss {search.best_val_loss:.4f})"
    )
    return search.best, {"search": search.summary()}


def publish(
    services: Services,
    prepared: Prepared,
    chosen: Fitted,
    fits: list[Fitted],
    hp: Any,
    model_record: dict[str, Any],
    timings: dict[str, float],
    log: Callable[[str], None],
) -> TrainReport:
    """Evaluate the chosen candidate on the test window, write the release and promote it through the gate."""
    from scalpbot.inference import OnnxModel
    from scalpbot.ml import model as ml_model
    from scalpbot.ml.evidence import TrialSelection

    settings, cfg, costs = services.settings, services.settings.train, services.settings.backtest
    bars, venue, series, folds = prepared.bars, prepared.venue, prepared.series, prepared.folds
    with timed(timings, "export"):
        keras_bytes = ml_model.save_keras(chosen.models[-1])
        onnx_bytes = ml_model.export_onnx(chosen.models[-1])
    with timed(timings, "predict"):
        probs, vol = predict_bars(bars, OnnxModel.from_bytes(onnx_bytes))
    params, tuned = chosen.tuned.best_params, chosen.tuned
    with timed(timings, "evaluation"):
        val_span, test_span = slice(*folds.validation), slice(*folds.test)
        val_bars, test_bars = bars.iloc[val_span], bars.iloc[test_span]
        fold_signals = signals_frame(val_bars.index, chosen.probs[val_span], chosen.vol[val_span], params)
        validation = score_signals(val_bars, fold_signals, costs, venue)
        test_signals = signals_frame(test_bars.index, probs[test_span], vol[test_span], params)
        test_result = simulate(test_bars, test_signals, costs, venue)
        rivals = baselines(test_bars, test_signals, test_result.trades, costs, venue, cfg.seed)
        importance = feature_importance(prepared, chosen, seed=cfg.seed)
    fold_results = [
        {**record, "validation": [bars.index[a].isoformat(), bars.index[b - 1].isoformat()], **result}
        for record, result, (a, b) in zip(
            chosen.records, tuned.best_folds, (f.validation for f in folds.folds), strict=True
        )
    ]
    releases = ReleaseStore(services.store)
    with timed(timings, "gate"):
        returns = np.vstack([f.tuned.trial_returns for f in fits])
        best_row = sum(f.tuned.n_trials for f in fits[: fits.index(chosen)]) + tuned.best_index
        selection = TrialSelection.from_folds(
            returns, best_row, "validation hour", multiplier=max(1, cfg.model_trials)
        )
        overfitting = {
            **tuned.summary(),
            "probability_of_backtest_overfitting": selection.pbo,
            "deflated_sharpe": selection.deflated_sharpe(),
            "trials_run": returns.shape[0] * max(1, cfg.model_trials),
            "effective_trials": selection.n_trials,
            "label_candidates": len(fits),
        }
        pointer = releases.pointer(series.symbol)
        incumbent, incumbent_equity = incumbent_score(
            releases, series, pointer, bars, test_span, costs, venue
        )
        verdict = judge_test(settings, venue, test_result, incumbent, incumbent_equity, selection)
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
        "feature_names": list(FEATURE_NAMES),
        "feature_importance": [[name, value] for name, value in importance.items()],
        "labels": chosen.label.to_dict(),
        "costs": {"fee": venue.taker_fee, "slippage": costs.slippage, "initial_equity": costs.initial_equity},
        "venue": venue.to_dict(),
        "hyperparams": {
            "widths": list(hp.widths),
            "dropout": hp.dropout,
            "learning_rate": hp.learning_rate,
            "max_epochs": hp.max_epochs,
            "seed": hp.seed,
        },
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
            series.symbol, release_id, manifest, {ONNX_ARTIFACT: onnx_bytes, KERAS_ARTIFACT: keras_bytes}
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
    )


def training_key(series: SeriesId, bars: pd.DataFrame, settings: Any, venue: Venue, trials: int) -> str:
    """Return the sha256 that identifies a train run: series, bars, venue, train, cost and gate settings."""
    train_settings = settings.train.model_dump(mode="json", exclude={"study_storage"})
    identity = {
        "series": str(series),
        "trials": trials,
        "train": train_settings,
        "costs": settings.backtest.model_dump(mode="json"),
        "gate": settings.gate.model_dump(mode="json"),
        "venue": venue.to_dict(),
        "features": FEATURE_SPEC_VERSION,
        "scalpbot": library_versions()["scalpbot"],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    digest.update(pd.DatetimeIndex(bars.index).asi8.tobytes())
    digest.update(np.ascontiguousarray(bars.to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()


def _resumed(
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
