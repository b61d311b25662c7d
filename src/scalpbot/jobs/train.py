"""The train job: features, labels, Keras model, Bayesian optimization, a release and the promotion gate.

Bars ``[until - days, until)`` are split by time into train / validation / test windows with a purge of
``horizon`` bars after train and after validation, so no label of an earlier window reads a bar of a later
one. The model is fitted on train (early stopping on validation), the policy is tuned on validation with the
model's ONNX predictions, and the test window - seen by neither - scores the release, the baselines and the
release trading now. The new release becomes current only if the gate says so, by compare-and-swap.

**A rerun converges.** A run is identified by its training key (the sha256 of the series, the bars' content
and the venue, train, cost and gate settings). The tuning study kept in the store is topped up to ``train.trials``, not
extended, and the model fit is seeded, so the same key trains the same release. A run killed after it
wrote its release finds that release when run again and only finishes its promotion; a run killed before
leaves no complete release (a release is visible once its manifest exists) and trains it again.

Everything is simulated on the market's venue profile (:func:`scalpbot.wiring.venue_profile`): labels, tuning,
scores and the gate pay its taker fee, round to its amount step, skip orders under its minimums, and neither
label nor trade a short where it cannot short. The manifest keeps the profile the release was made with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalpbot.core.backtest.frame import BacktestResult, backtest
from scalpbot.core.evaluation import PolicyWindow
from scalpbot.core.features import FEATURE_NAMES, FEATURE_SPEC_VERSION, FEATURE_WARMUP, build_features
from scalpbot.core.gate import GateVerdict, judge
from scalpbot.core.labels import triple_barrier_labels
from scalpbot.core.metrics import Metrics
from scalpbot.core.policy import signals_frame
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.core.strategies import sma_cross_signals
from scalpbot.core.venue import Venue
from scalpbot.errors import ConfigError, DataError, PreconditionFailed, ScalpbotError
from scalpbot.inference.signals import TradingModel, predict_bars
from scalpbot.state.dataset import SeriesId
from scalpbot.state.releases import KERAS_ARTIFACT, ONNX_ARTIFACT, ReleaseStore, new_release_id, pair_of
from scalpbot.wiring import Services, venue_profile

if TYPE_CHECKING:
    from scalpbot.ml.evidence import TrialSelection

_LIBRARIES = (
    "scalpbot",
    "numpy",
    "pandas",
    "numba",
    "keras",
    "torch",
    "onnx",
    "onnxruntime",
    "optuna",
    "arch",
)
_MIN_WINDOW_BARS = 2 * 1440


@dataclass(frozen=True, slots=True)
class Windows:
    """Bar positions of the three windows: ``[start, stop)`` each; label rows end ``horizon`` bars earlier."""

    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]


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

    def announcement(self) -> tuple[str, str]:
        """Return the ``(subject, message)`` that announces the run's verdict."""
        verdict = "promoted" if self.promoted else "not promoted"
        return f"train {self.series}: release {self.release_id} {verdict}", self.reason

    def payload(self) -> dict[str, Any]:
        """Return the whole report as one JSON-ready object."""
        payload = dataclasses.asdict(self)
        payload["series"] = str(self.series)
        return payload


def split_windows(n_bars: int, *, horizon: int, validation_fraction: float, test_fraction: float) -> Windows:
    """Return time-ordered train/validation/test windows over ``n_bars`` bars, after the feature warm-up."""
    usable = n_bars - FEATURE_WARMUP
    test_bars = round(usable * test_fraction)
    validation_bars = round(usable * validation_fraction)
    test_start = n_bars - test_bars
    validation_start = test_start - validation_bars
    train_rows = validation_start - horizon - FEATURE_WARMUP
    if min(test_bars, validation_bars) < _MIN_WINDOW_BARS or train_rows < _MIN_WINDOW_BARS:
        need = FEATURE_WARMUP + int(_MIN_WINDOW_BARS / min(validation_fraction, test_fraction)) + horizon
        raise DataError(
            f"{n_bars} bars are too few to train (need about {need}); fetch more history or raise train.days"
        )
    return Windows((FEATURE_WARMUP, validation_start), (validation_start, test_start), (test_start, n_bars))


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


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

    settings, cfg, costs = services.settings, services.settings.train, services.settings.backtest
    venue = venue_profile(services.store, settings, series)
    timings: dict[str, float] = {}
    with _timed(timings, "load"):
        end = None if until is None else pd.Timestamp(until)
        last = services.dataset.last_open_time(series) if end is None else end
        if last is None:
            raise DataError(f"no bars stored for {series}; run `scalpbot fetch` first")
        start = (end if end is not None else last) - pd.Timedelta(days=cfg.days)
        bars = services.dataset.read(series, start, end)
    windows = split_windows(
        len(bars),
        horizon=cfg.horizon,
        validation_fraction=cfg.validation_fraction,
        test_fraction=cfg.test_fraction,
    )
    log(f"{len(bars):,} bars of {series}: train/validation/test split at {windows}")
    key = training_key(series, bars, settings, venue, trials or cfg.trials)
    trained = ReleaseStore(services.store).find(series.symbol, training_key=key)
    if trained is not None:
        log(f"these bars were trained with these settings already: release {trained[0]}")
        return _resumed(services, series, *trained, timings)
    with _timed(timings, "features"):
        features = build_features(bars).to_numpy(dtype=np.float64)
    with _timed(timings, "labels"):
        labels = triple_barrier_labels(
            bars,
            horizon=cfg.horizon,
            k_sl=cfg.k_sl,
            k_tp=cfg.k_tp,
            fee=venue.taker_fee,
            slippage=costs.slippage,
            shorts=venue.shorts,
        )
    label = labels["label"].to_numpy()
    fwd_vol = labels["fwd_vol"].to_numpy()
    usable = (label >= 0) & np.isfinite(features).all(axis=1) & np.isfinite(fwd_vol) & (fwd_vol > 0)
    rows = np.arange(len(bars))
    train_rows = usable & (rows >= windows.train[0]) & (rows < windows.train[1] - cfg.horizon)
    val_rows = usable & (rows >= windows.validation[0]) & (rows < windows.validation[1] - cfg.horizon)
    hp = ml_model.ModelHyperParams(widths=tuple(cfg.widths), max_epochs=cfg.max_epochs, seed=cfg.seed)
    fit_data = (
        features[train_rows].astype(np.float32),
        label[train_rows],
        fwd_vol[train_rows],
        features[val_rows].astype(np.float32),
        label[val_rows],
        fwd_vol[val_rows],
    )
    ml_model.configure_threads(1)
    model_record: dict[str, Any] = {}
    if cfg.model_trials:
        from scalpbot.ml.model_search import search_model

        with _timed(timings, "model_search"):
            search = search_model(*fit_data, hp, trials=cfg.model_trials)
        hp = search.best
        model_record["search"] = search.summary()
        log(
            f"model search: {cfg.model_trials} trials, chosen widths {list(hp.widths)}, dropout {hp.dropout:.3f}, "
            f"learning rate {hp.learning_rate:.2e} (validation loss {search.best_val_loss:.4f})"
        )
    with _timed(timings, "fit"):
        fitted = ml_model.train_model(*fit_data, hp, show_progress=show_progress)
    log(f"model fitted: {fitted.epochs_run} epochs, best validation loss {fitted.best_val_loss}")
    model_record.update(epochs_run=fitted.epochs_run, best_val_loss=fitted.best_val_loss)
    with _timed(timings, "export"):
        keras_bytes = ml_model.save_keras(fitted.model)
        onnx_bytes = ml_model.export_onnx(fitted.model)
    from scalpbot.inference.onnx import OnnxModel

    onnx_model = OnnxModel.from_bytes(onnx_bytes)
    with _timed(timings, "predict"):
        probs, vol = predict_bars(bars, onnx_model)
    val_bars = bars.iloc[windows.validation[0] : windows.validation[1]]
    test_bars = bars.iloc[windows.test[0] : windows.test[1]]
    val_slice = slice(*windows.validation)
    test_slice = slice(*windows.test)
    study_name = f"{series.exchange}-{pair_of(series.symbol)}-{series.timeframe}-{bars.index[-1]:%Y%m%dT%H%M}"
    with _timed(timings, "tuning"), TemporaryDirectory() as tmp:
        window = PolicyWindow.from_frame(val_bars, probs[val_slice], vol[val_slice])
        tuned = _tune(
            services,
            series,
            window,
            venue,
            study_name=study_name,
            study_db=Path(tmp) / "study.db",
            n_trials=trials or cfg.trials,
            show_progress=show_progress,
            log=log,
        )
    params = tuned.best_params
    with _timed(timings, "evaluation"):
        validation = score_signals(
            val_bars, signals_frame(val_bars.index, probs[val_slice], vol[val_slice], params), costs, venue
        )
        test_signals = signals_frame(test_bars.index, probs[test_slice], vol[test_slice], params)
        test_result = simulate(test_bars, test_signals, costs, venue)
        test = test_result.metrics
        baselines = _baselines(test_bars, test_signals, test_result.trades, costs, venue, cfg.seed)
        overfitting = tuned.summary()
    releases = ReleaseStore(services.store)
    with _timed(timings, "gate"):
        from scalpbot.ml.evidence import TrialSelection

        selection = TrialSelection.from_tuning(tuned, cfg.model_trials)
        overfitting["probability_of_backtest_overfitting"] = selection.pbo
        overfitting["trials_run"] = selection.n_trials
        pointer = releases.pointer(series.symbol)
        incumbent, incumbent_equity = _incumbent(releases, series, pointer, bars, test_slice, costs, venue)
        verdict = _judge(services, venue, test_result, incumbent, incumbent_equity, selection)
    now = services.clock.now()
    release_id = new_release_id(now, onnx_bytes)
    manifest = {
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "training_key": key,
        "exchange": series.exchange,
        "timeframe": series.timeframe,
        "data_window": {name: _iso_window(bars, span) for name, span in _spans(windows).items()},
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "labels": {
            "horizon": cfg.horizon,
            "k_sl": cfg.k_sl,
            "k_tp": cfg.k_tp,
            "fee": venue.taker_fee,
            "shorts": venue.shorts,
        },
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
        "metrics": {"validation": validation, "test": test},
        "baselines": baselines,
        "tuning": overfitting,
        "model": model_record,
        "gate": {**verdict.to_dict(), "incumbent": incumbent},
        "libraries": _library_versions(),
    }
    with _timed(timings, "release"):
        releases.write(
            series.symbol, release_id, manifest, {ONNX_ARTIFACT: onnx_bytes, KERAS_ARTIFACT: keras_bytes}
        )
        promoted, reason = _apply(releases, series, release_id, verdict, pointer, now)
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
    )


def _tune(
    services: Services,
    series: SeriesId,
    window: PolicyWindow,
    venue: Venue,
    *,
    study_name: str,
    study_db: Path,
    n_trials: int,
    show_progress: bool,
    log: Callable[[str], None],
) -> Any:
    """Run the study in ``train.study_storage`` or, by default, in an sqlite file kept in the store.

    The stored study is resumed when the same data is trained again and topped up to ``n_trials`` trials (so
    a rerun reproduces the run it repeats; ask for more trials to extend it); a study that no longer matches
    the window (other costs or bounds) is started afresh. Trials pay the venue's taker fee and
    follow its order rules; where it cannot short, no trial shorts (``allow_short`` off in the base params).
    """
    from scalpbot.ml.tuning import load_study_db, save_study_db, tune_policy

    cfg, costs = services.settings.train, services.settings.backtest
    key = f"models/{pair_of(series.symbol)}/studies/{study_name}.db"
    stored = cfg.study_storage is None
    if stored and load_study_db(services.store, key, study_db):
        log(f"resuming the stored study {study_name}")
    storage = cfg.study_storage or f"sqlite:///{study_db}"

    def run() -> Any:
        return tune_policy(
            window,
            ParamBounds(ParamBounds.default().ranges, StrategyParams(allow_short=venue.shorts)),
            n_trials=n_trials,
            seed=cfg.seed,
            sampler=cfg.sampler,
            fee=venue.taker_fee,
            slippage=costs.slippage,
            rules=venue.order_rules(),
            initial_equity=costs.initial_equity,
            min_trades=cfg.min_trades,
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
        "scalpbot": _library_versions()["scalpbot"],
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
        reason = str(gate.get("reason", ""))
        promoted, reason = _promote(releases, series, release_id, reason, pointer, services.clock.now())
    else:
        promoted, reason = False, f"these bars were trained already as {release_id}: {gate.get('reason', '')}"
    return report_of(series, release_id, manifest, promoted, reason, timings)


def _apply(
    releases: ReleaseStore,
    series: SeriesId,
    release_id: str,
    verdict: GateVerdict,
    pointer: Any,
    now: datetime,
) -> tuple[bool, str]:
    if not verdict.promote:
        return False, verdict.reason
    return _promote(releases, series, release_id, verdict.reason, pointer, now)


def _promote(
    releases: ReleaseStore, series: SeriesId, release_id: str, reason: str, pointer: Any, now: datetime
) -> tuple[bool, str]:
    """Point ``current.json`` at ``release_id`` unless another release was promoted since ``pointer`` was read."""
    try:
        releases.promote(series.symbol, release_id, expected=pointer, reason=reason, now=now)
    except PreconditionFailed:
        return False, "another release was promoted while this one was scored; the pointer was left as it is"
    return True, reason


def simulate(bars: pd.DataFrame, signals: pd.DataFrame, costs: Any, venue: Venue) -> BacktestResult:
    """Return the backtest of ``signals`` on ``bars`` on ``venue`` (``costs``: ``BacktestSettings``)."""
    return backtest(
        bars,
        signals,
        fee=venue.taker_fee,
        slippage=costs.slippage,
        initial_equity=costs.initial_equity,
        rules=venue.order_rules(),
    )


def score_signals(bars: pd.DataFrame, signals: pd.DataFrame, costs: Any, venue: Venue) -> Metrics:
    """Return the metrics of ``signals`` on ``bars`` on ``venue`` with the configured slippage and equity."""
    metrics: Metrics = simulate(bars, signals, costs, venue).metrics
    return metrics


def _baselines(
    bars: pd.DataFrame, signals: pd.DataFrame, trades: pd.DataFrame, costs: Any, venue: Venue, seed: int
) -> dict[str, Metrics]:
    """Return not trading, ``sma-cross`` and random entries with the release's SL/TP, size and trade count."""
    flat = signals.assign(side=0)
    sma = sma_cross_signals(
        bars, length=costs.sma_length, sl=costs.sl, tp=costs.tp, size=costs.size, max_hold=costs.max_hold
    )
    entries = signals.loc[signals["side"] != 0]
    random = flat.copy()
    count = min(len(trades), len(bars) - 1)
    if count and len(entries):
        rng = np.random.default_rng(seed)
        picks = np.sort(rng.choice(len(bars) - 1, size=count, replace=False))
        side = np.zeros(len(bars), dtype=np.int8)
        sides = np.array([-1, 1] if venue.shorts else [1], dtype=np.int8)
        side[picks] = rng.choice(sides, size=count)
        random["side"] = side
        for column in ("size", "sl", "tp", "max_hold"):
            values = random[column].to_numpy(copy=True)
            values[picks] = entries[column].median()
            random[column] = values
    return {
        "not_trading": score_signals(bars, flat, costs, venue),
        "sma_cross": score_signals(bars, sma, costs, venue),
        "random": score_signals(bars, random, costs, venue),
    }


def _incumbent(
    releases: ReleaseStore,
    series: SeriesId,
    pointer: Any,
    bars: pd.DataFrame,
    test: slice,
    costs: Any,
    venue: Venue,
) -> tuple[dict[str, Any] | None, pd.Series | None]:
    """Return the current release's score on the same test window (or why it could not be scored) and its equity.

    Its predictions come from the same full history as the challenger's, so both start the window warmed up.
    """
    if pointer is None:
        return None, None
    try:
        trading = TradingModel.from_release(releases.load(series.symbol, pointer.release_id)).for_venue(venue)
    except ScalpbotError as e:
        return {"release_id": pointer.release_id, "error": str(e)}, None
    probs, vol = predict_bars(bars, trading.model)
    window = bars.iloc[test]
    result = simulate(
        window, signals_frame(window.index, probs[test], vol[test], trading.params), costs, venue
    )
    return {"release_id": pointer.release_id, "metrics": result.metrics}, result.equity


def _judge(
    services: Services,
    venue: Venue,
    test: BacktestResult,
    incumbent: dict[str, Any] | None,
    incumbent_equity: pd.Series | None,
    selection: TrialSelection,
) -> GateVerdict:
    """Weigh the challenger's test window against the current release (or not trading) with the gate.

    A current release that cannot be loaded is no rival: the challenger must then beat not trading.
    """
    from scalpbot.ml.evidence import gate_statistics, period_returns, window_days

    settings = services.settings
    rival = None if incumbent_equity is None else incumbent
    statistics = gate_statistics(
        window="test window",
        rival="not trading" if rival is None else f"current release {rival['release_id']}",
        challenger_returns=period_returns(test.equity),
        rival_returns=None if incumbent_equity is None else period_returns(incumbent_equity),
        total_return=float(test.metrics["total_return"] or 0.0),
        rival_return=0.0 if rival is None else rival["metrics"]["total_return"],
        trades=int(test.metrics["trades"] or 0),
        days=window_days(pd.DatetimeIndex(test.equity.index)),
        selection=selection,
        costs=venue.trading_costs(settings.backtest.slippage),
        resamples=settings.gate.bootstrap_resamples,
        seed=settings.train.seed,
    )
    return judge(statistics, settings.gate.rules(settings.train.min_trades))


def _spans(windows: Windows) -> dict[str, tuple[int, int]]:
    return {"train": windows.train, "validation": windows.validation, "test": windows.test}


def _iso_window(bars: pd.DataFrame, span: tuple[int, int]) -> tuple[str, str]:
    first, last = bars.index[span[0]], bars.index[span[1] - 1]
    return first.strftime("%Y-%m-%dT%H:%M:%SZ"), last.strftime("%Y-%m-%dT%H:%M:%SZ")


def _library_versions() -> Mapping[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
