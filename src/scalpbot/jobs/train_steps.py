"""The train job's steps before publishing: prepare the data and folds, fit the fold models, tune the policy.

See :mod:`scalpbot.jobs.train` for how they fit together. Everything here is deterministic for a seed: the fits
are seeded, and a tuning study kept in the store is topped up, not extended.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalpbot.core.evaluation import PolicyWindow
from scalpbot.core.feature_set import OHLCV_FEATURES, FeatureSet, choose_feature_set
from scalpbot.core.features import FEATURE_SPEC_VERSION, FEATURE_WARMUP
from scalpbot.core.folds import WalkForward, label_rows, walk_forward
from scalpbot.core.funding import funding_at_bars
from scalpbot.core.order_flow import ORDER_FLOW_SPEC_VERSION
from scalpbot.core.policy_params import ParamBounds, StrategyParams
from scalpbot.core.sample_weights import label_moves, mean_one
from scalpbot.core.venue import Venue
from scalpbot.core.window_features import trailing_window
from scalpbot.errors import ConfigError, DataError
from scalpbot.jobs.learning import LabelConfig, label_frame, labelled_rows
from scalpbot.jobs.services import Services, stored_funding, venue_profile
from scalpbot.jobs.train_evaluation import library_versions, timed
from scalpbot.state.dataset import SeriesId
from scalpbot.state.releases import pair_of

if TYPE_CHECKING:
    from scalpbot.ml.registry import ModelKind

__all__ = [
    "HOLDING_STOP",
    "TUNING_PERIOD",
    "Fitted",
    "FoldFit",
    "Prepared",
    "check_workers",
    "exit_ranges",
    "fit_labels",
    "fold_windows",
    "hyper_parameters",
    "label_exits",
    "model_rows",
    "prepare",
    "split_folds",
    "study_name",
    "training_key",
    "tune",
    "tuning_options",
]

_MIN_FOLD_BARS = 1440
_MIN_HOLD = 5  # bars: the shortest time stop tuned (the default search space's low end)
TUNING_PERIOD = "1h"
"""The policy is tuned on hourly returns of the validation folds."""
_HOURS_PER_YEAR = 365.0 * 24.0


@dataclass(frozen=True)
class Prepared:
    """The inputs of a run: bars, venue, features, folds, the candidate labels and the training key; on a
    perpetual swap the funding rates stored over the bars (``None`` elsewhere), charged wherever a run simulates;
    the feature set the ``features`` columns follow (OHLCV, or with order flow where every bar has it).
    """

    series: SeriesId
    bars: pd.DataFrame
    venue: Venue
    features: np.ndarray
    folds: WalkForward
    candidates: tuple[LabelConfig, ...]
    key: str
    trials: int
    funding: pd.Series | None = None
    feature_set: FeatureSet = OHLCV_FEATURES

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Return the names of the ``features`` columns, in order."""
        return self.feature_set.names


@dataclass(frozen=True)
class Fitted:
    """One candidate label's fold models, the fold predictions (calibrated when ``calibration`` is set: the
    policy is tuned on what the release will output) and the tuned policy.

    ``artifact``: the last fold model as saved when it was fitted (a run split across invocations hands it
    over); ``None``: saved when the release is written.
    """

    label: LabelConfig
    models: tuple[Any, ...]
    records: tuple[dict[str, Any], ...]
    probs: np.ndarray
    vol: np.ndarray
    tuned: Any
    artifact: bytes | None = None
    calibration: Any = None
    """The :class:`scalpbot.ml.calibration.Calibration` fitted on the folds' validation predictions, or None."""
    calibration_record: dict[str, Any] | None = None
    """The manifest's ``calibration`` record (None: not calibrated)."""
    meta: Any = None
    """The :class:`scalpbot.ml.meta_label.MetaFilter` the release applies after the model (and its
    calibration), or None; ``probs`` stay the model's (:mod:`scalpbot.jobs.train_meta`)."""
    meta_record: dict[str, Any] | None = None
    """The manifest's ``meta_label`` record (None: ``train.meta_label`` is off)."""


def model_rows(prepared: Prepared, window: int) -> np.ndarray:
    """Return the rows a model reads: the feature set's features, then ``window`` bars of the trailing window
    (0: none).

    Equal to :func:`scalpbot.core.window_features.model_inputs` of the bars with the run's feature set, reusing
    the computed features.
    """
    if window == 0:
        return prepared.features
    return np.hstack([prepared.features, trailing_window(prepared.bars, window)])


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
        min_window_bars=_MIN_FOLD_BARS,
        max_train_bars=None if cfg.max_train_days is None else int(cfg.max_train_days * 1440),
    )


def longest_horizon(cfg: Any) -> int:
    """Return the longest label horizon (bars) of ``train`` settings ``cfg``: the purge of its folds."""
    shapes = (cfg.horizon, *(shape[0] for shape in cfg.label_search), *cfg.holding_horizons)
    return max(int(h) for h in shapes)


def _candidates(cfg: Any, venue: Venue, slippage: float) -> tuple[LabelConfig, ...]:
    shapes = [(cfg.horizon, cfg.k_sl, cfg.k_tp), *cfg.label_search]
    unique = list(dict.fromkeys((int(h), float(a), float(b)) for h, a, b in shapes))
    barriers = tuple(
        LabelConfig(h, k_sl, k_tp, venue.taker_fee, slippage, venue.shorts, cfg.min_tp_round_trips)
        for h, k_sl, k_tp in unique
    )
    holdings = tuple(
        LabelConfig.holding(h, venue.taker_fee, slippage, venue.shorts, cfg.min_tp_round_trips)
        for h in dict.fromkeys(int(h) for h in cfg.holding_horizons)
    )
    return barriers + holdings


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
        index = pd.DatetimeIndex(bars.index)
        funding = stored_funding(services.store, series, index[0], index[-1]) if len(bars) else None
    candidates = _candidates(cfg, venue, settings.backtest.slippage)
    folds = split_folds(len(bars), cfg, longest_horizon(cfg))
    feature_set = choose_feature_set(bars, cfg.order_flow, series=str(series))
    key = training_key(series, bars, settings, venue, trials, funding, feature_set)
    with timed(timings, "features"):
        features = feature_set.build(bars).to_numpy(dtype=np.float64) if len(bars) else np.empty((0, 0))
    return Prepared(series, bars, venue, features, folds, candidates, key, trials, funding, feature_set)


def row_moves(
    bars: pd.DataFrame, label: LabelConfig, weighting: str, frame: pd.DataFrame | None = None
) -> np.ndarray | None:
    """Return the move each row's ``label`` spans (:func:`scalpbot.core.sample_weights.label_moves`: to the
    barrier its winning side touched, else to the horizon; 0 where it is not finite), or None when
    ``weighting`` is ``none``. ``frame``: the label's :func:`~scalpbot.jobs.learning.label_frame`, computed
    when not given."""
    if weighting == "none":
        return None
    exit_bars = None
    if label.kind != "holding":
        frame = label_frame(bars, label) if frame is None else frame
        classes = frame["label"].to_numpy()
        exit_bars = np.where(
            classes == 2, frame["long_bars"], np.where(classes == 0, frame["short_bars"], label.horizon)
        )
    raw = label_moves(bars, label.horizon, exit_bars)
    moves: np.ndarray = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
    return moves


FoldFit = tuple[tuple[Any, ...], tuple[dict[str, Any], ...], np.ndarray, np.ndarray]
"""One label's fit on the folds: the fold models, their records, the fold probabilities and volatilities."""


def fit_labels(
    prepared: Prepared,
    kind: ModelKind,
    labels: Sequence[LabelConfig],
    hp: Any,
    timings: dict[str, float],
    show_progress: bool = False,
    workers: int = 1,
    log: Callable[[str], None] = lambda _: None,
    weighting: str = "none",
) -> list[FoldFit]:
    """Fit one model of ``kind`` per fold on each of ``labels``; return each label's :data:`FoldFit`.

    Predictions cover every bar (NaN outside the validation folds); fold ``k``'s come from its own model.
    ``workers``: processes fitting at once (``train.fit_workers``; 0: one per core); every label's folds are
    one batch of work (:func:`scalpbot.ml.fit_pool.fit_each`, which says on ``log`` how it went), and the
    models are the same for any number. ``weighting`` (``train.sample_weights``): ``return`` weighs each row's
    class loss by the move its label spans (:mod:`scalpbot.core.sample_weights`), scaled to a mean of 1 over
    each fold's training rows and over its validation rows; ``none``: all alike.
    """
    from scalpbot.ml.fit_pool import RowsSource, fit_each
    from scalpbot.ml.registry import LabelledRows, input_window

    if not labels:
        return []
    n = len(prepared.bars)
    with timed(timings, "features"):
        x = model_rows(prepared, input_window(kind, hp))
    folds = prepared.folds.folds
    sources: list[RowsSource] = []
    counts = []
    for label in labels:
        with timed(timings, "labels"):
            frame = label_frame(prepared.bars, label)
            y, fwd_vol, usable = labelled_rows(prepared.bars, prepared.features, label, frame)
            moves = row_moves(prepared.bars, label, weighting, frame)
        for fold in folds:
            train_rows = usable & label_rows(fold.train, label.horizon, n)
            val_rows = usable & label_rows(fold.validation, label.horizon, n)

            def rows(
                y: np.ndarray = y,
                v: np.ndarray = fwd_vol,
                m: np.ndarray | None = moves,
                t: np.ndarray = train_rows,
                w: np.ndarray = val_rows,
            ) -> tuple[LabelledRows, LabelledRows]:
                return (
                    LabelledRows(x[t], y[t], v[t], None if m is None else mean_one(m[t])),
                    LabelledRows(x[w], y[w], v[w], None if m is None else mean_one(m[w])),
                )

            sources.append(rows)
            counts.append((int(train_rows.sum()), int(val_rows.sum())))
    with timed(timings, "fit"):
        fitted = fit_each(kind, sources, hp, workers=workers, show_progress=show_progress, log=log)
    fits: list[FoldFit] = []
    for i in range(len(labels)):
        probs = np.full((n, 3), np.nan)
        vol = np.full(n, np.nan)
        records = []
        models = fitted[i * len(folds) : (i + 1) * len(folds)]
        for k, (fold, model) in enumerate(zip(folds, models, strict=True)):
            with timed(timings, "predict"):
                span = slice(*fold.validation)
                probs[span], vol[span] = kind.predict(model.model, x[span])
            train_count, val_count = counts[i * len(folds) + k]
            records.append(
                {
                    "fold": k + 1,
                    "train_rows": train_count,
                    "validation_rows": val_count,
                    "epochs_run": model.epochs_run,
                    "best_val_loss": model.best_val_loss,
                }
            )
        fits.append((tuple(m.model for m in models), tuple(records), probs, vol))
    return fits


def fold_windows(prepared: Prepared, probs: np.ndarray, vol: np.ndarray) -> list[PolicyWindow]:
    """Return one hourly-scored policy window per validation fold with its predictions."""
    windows = []
    for fold in prepared.folds.folds:
        span = slice(*fold.validation)
        bars = prepared.bars.iloc[span]
        windows.append(PolicyWindow.from_frame(bars, probs[span], vol[span], period=TUNING_PERIOD))
    return windows


def check_workers(cfg: Any, workers: int) -> None:
    """Raise ``ConfigError`` unless ``workers`` processes can tune one study with ``train`` settings ``cfg``."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1 process; got {workers}")
    if workers > 1 and not str(cfg.study_storage or "").startswith(("postgresql:", "postgresql+")):
        raise ConfigError(
            f"--workers {workers} needs a study several processes can share: set train.study_storage to "
            "postgresql://user@host/database"
        )


def tune(
    services: Services,
    prepared: Prepared,
    windows: list[PolicyWindow],
    *,
    study_name: str,
    label: Mapping[str, Any],
    show_progress: bool,
    log: Callable[[str], None],
    workers: int = 1,
) -> Any:
    """Run the study of ``label`` (its manifest ``labels`` entry) in ``train.study_storage`` or, by default, in an
    sqlite file kept in the store.

    ``workers`` > 1: as many local processes tune the study together, which needs ``train.study_storage`` on
    PostgreSQL (:func:`scalpbot.ml.tuning_workers.tune_with_workers`); a worker that dies is logged, its trial
    retried by the others.

    The stored study is resumed when the same data is trained again and topped up to the run's trials (so
    a rerun reproduces the run it repeats); a study that no longer matches the folds (other costs or bounds)
    is started afresh. Trials pay the venue's taker fee and follow its order rules; where it cannot short, no
    trial shorts (``allow_short`` off in the base params); on a perpetual swap they pay the stored funding.
    """
    from scalpbot.ml.tuning import load_study_db, save_study_db, tune_policy

    cfg = services.settings.train
    key = f"models/{pair_of(prepared.series.symbol)}/studies/{study_name}.db"
    funding = [funding_at_bars(prepared.funding, w.index) for w in windows]
    stored = cfg.study_storage is None
    check_workers(cfg, workers)
    with TemporaryDirectory() as tmp:
        study_db = Path(tmp) / "study.db"
        if stored and load_study_db(services.store, key, study_db):
            log(f"resuming the stored study {study_name}")
        storage = cfg.study_storage or f"sqlite:///{study_db}"

        def run() -> Any:
            options = tuning_options(
                services.settings,
                prepared.venue,
                prepared.trials,
                funding,
                study_name,
                show_progress,
                label=label,
            )
            if workers > 1:
                return _tune_in_workers(windows, workers, storage, options, log)
            return tune_policy(windows, storage=storage, **options)

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


def hold_range(horizon: int) -> tuple[int, int]:
    """Return the time stop's range (``max_hold``, bars) tuned for a label of ``horizon`` bars: from half to
    twice the horizon, at least ``_MIN_HOLD`` bars. The model predicts the move over its label's horizon; a
    policy holding far longer trades what it was not taught (and a free range lets the folds' noise choose)."""
    return max(_MIN_HOLD, horizon // 2), max(_MIN_HOLD, 2 * horizon)


HOLDING_STOP = 3.0
"""The protective stop, in predicted volatilities over the horizon, of a policy that takes a holding label's
exits (``train.exits = "label"``): the label has no stop, but every position carries one on the exchange."""


def label_exits(label: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Return the ranges that fix a policy's exits to those of ``label`` (a manifest ``labels`` entry): a
    barrier label's stop and take-profit (``k_sl``, ``k_tp`` times the predicted volatility) and its horizon as
    the time stop; a holding label's horizon as the time stop, with a protective stop at :data:`HOLDING_STOP`
    volatilities and the take-profit at the top of the default range (a holding label takes none).

    The model learned which side wins *with these exits*; tuned exits fit the folds' few dozen events and
    often cut trades the label would have won (a stop tighter than the label's, a hold longer than taught).
    """
    horizon = float(label["horizon"])
    if label.get("kind", "barrier") == "holding":
        stop, target = HOLDING_STOP, ParamBounds.default().ranges["tp_mult"][1]
    else:
        stop, target = float(label["k_sl"]), float(label["k_tp"])
    return {"sl_mult": (stop, stop), "tp_mult": (target, target), "max_hold": (horizon, horizon)}


def exit_ranges(exits: str, label: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Return the exit ranges ``train.exits`` fixes for a study of ``label``: none (``"tuned"``), the label's
    stop, take-profit and time stop (``"label"``), or its stop alone (``"label stop"``), see
    :func:`label_exits`."""
    if exits == "tuned":
        return {}
    if exits not in ("label", "label stop"):
        raise ConfigError(f"train.exits must be 'tuned', 'label' or 'label stop'; got {exits!r}")
    ranges = label_exits(label)
    return ranges if exits == "label" else {"sl_mult": ranges["sl_mult"]}


def policy_bounds(
    venue: Venue,
    horizon: int,
    time_stop: str = "any",
    risk_per_trade: float | None = None,
    *,
    fixed: Mapping[str, tuple[float, float]] | None = None,
) -> ParamBounds:
    """Return the tuning's search space on ``venue``: the default ranges, no short where the venue cannot
    short; ``time_stop`` ``"label"``: the time stop's range from :func:`hold_range` of the label's
    ``horizon`` (bars), ``"any"``: the default range; ``risk_per_trade`` (``train.risk_per_trade``): the
    fraction of equity a stop-out at full size loses, fixed (None: the policy's default); ``fixed``: ranges
    that replace the defaults (e.g. :func:`label_exits`, for ``train.exits``)."""
    ranges = dict(ParamBounds.default().ranges)
    if time_stop == "label":
        ranges["max_hold"] = hold_range(horizon)
    if fixed is not None:
        ranges.update(fixed)
    base = StrategyParams(allow_short=venue.shorts)
    if risk_per_trade is not None:
        base = dataclasses.replace(base, risk_per_trade=risk_per_trade)
    return ParamBounds(ranges, base)


def tuning_options(
    settings: Any,
    venue: Venue,
    trials: int,
    funding: list[np.ndarray],
    study_name: str,
    show_progress: bool = False,
    *,
    label: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the options of :func:`scalpbot.ml.tuning.tune_policy` for one study of a train run (storage aside).

    ``trials`` is the study's budget of complete trials (``top_up``); ``funding`` holds one array per validation
    window, the rate due at each bar's open (empty arrays: none); ``label`` is the study's label, its manifest
    ``labels`` entry (:func:`policy_bounds`, with ``train.time_stop`` and ``train.exits``). Every worker of a
    shared study and the run that collects it pass the same options, so they all tune one fingerprint.
    """
    cfg, costs = settings.train, settings.backtest
    return dict(
        bounds=policy_bounds(
            venue,
            int(label["horizon"]),
            cfg.time_stop,
            cfg.risk_per_trade,
            fixed=exit_ranges(cfg.exits, label),
        ),
        n_trials=trials,
        n_startup_trials=max(20, trials // 10),  # random proposals first: a tenth of the budget
        seed=cfg.seed,
        sampler=cfg.sampler,
        fee=venue.taker_fee,
        slippage=costs.slippage,
        rules=venue.order_rules(),
        funding=funding,
        initial_equity=costs.initial_equity,
        min_trades=cfg.min_trades,
        periods_per_year=_HOURS_PER_YEAR,
        dispersion=cfg.dispersion,
        objective=cfg.objective,
        floor=cfg.confidence_floor,
        study_name=study_name,
        show_progress=show_progress,
        top_up=True,
    )


def study_name(prepared: Prepared, candidate: int) -> str:
    """Return the name of the tuning study of candidate label ``candidate`` (0: the configured label)."""
    series = prepared.series
    stamp = f"{prepared.bars.index[-1]:%Y%m%dT%H%M}"
    name = f"{series.exchange}-{pair_of(series.symbol)}-{series.timeframe}-{stamp}"
    return name + (f"-l{candidate}" if candidate else "")


def _tune_in_workers(
    windows: list[PolicyWindow],
    workers: int,
    storage: str,
    options: dict[str, Any],
    log: Callable[[str], None],
) -> Any:
    from scalpbot.ml.tuning_workers import tune_with_workers

    log(f"tuning with {workers} worker processes on the shared study {options['study_name']}")
    tuned, exits = tune_with_workers(windows, workers=workers, storage=storage, **options)
    for i, code in enumerate(exits, start=1):
        if code != 0:
            log(f"tuning worker {i} exited with status {code}: its running trial was retried by the others")
    return tuned


def hyper_parameters(
    prepared: Prepared, kind: ModelKind, cfg: Any, timings: dict[str, float], log: Callable[[str], None]
) -> tuple[Any, dict[str, Any]]:
    """Return the hyper-parameters of ``kind``: the configured ones, or the model search's on the last fold."""
    hp = kind.hyper_parameters(cfg.model_dump())
    if not cfg.model_trials:
        return hp, {}
    from scalpbot.ml.model_search import search_model
    from scalpbot.ml.registry import input_window

    label, n = prepared.candidates[0], len(prepared.bars)
    frame = label_frame(prepared.bars, label)
    y, fwd_vol, usable = labelled_rows(prepared.bars, prepared.features, label, frame)
    x = model_rows(prepared, input_window(kind, hp))
    fold = prepared.folds.folds[-1]
    tr = usable & label_rows(fold.train, label.horizon, n)
    va = usable & label_rows(fold.validation, label.horizon, n)
    moves = row_moves(prepared.bars, label, cfg.sample_weights, frame)
    weights = (None, None) if moves is None else (mean_one(moves[tr]), mean_one(moves[va]))
    with timed(timings, "model_search"):
        search = search_model(
            x[tr], y[tr], fwd_vol[tr], x[va], y[va], fwd_vol[va], hp, trials=cfg.model_trials, kind=kind,
            weights=weights,
        )  # fmt: skip
    chosen = ", ".join(
        f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in search.best_record.items()
    )
    log(
        f"model search ({kind.name}): {cfg.model_trials} trials, chosen {chosen} "
        f"(validation loss {search.best_val_loss:.4f})"
    )
    return search.best, {"search": search.summary()}


def training_key(
    series: SeriesId,
    bars: pd.DataFrame,
    settings: Any,
    venue: Venue,
    trials: int,
    funding: pd.Series | None = None,
    feature_set: FeatureSet = OHLCV_FEATURES,
) -> str:
    """Return the sha256 that identifies a train run: series, bars, venue, train, cost and gate settings, a
    swap's funding rates over the bars (none stored: the key of a market without funding) and the feature set
    (``train.order_flow`` counts only through the set it chose)."""
    train_settings = settings.train.model_dump(
        mode="json", exclude={"study_storage", "study_storage_secret_id", "order_flow", "fit_workers"}
    )
    features = FEATURE_SPEC_VERSION
    if feature_set.order_flow:
        features += f"+order_flow{ORDER_FLOW_SPEC_VERSION}"
    identity = {
        "series": str(series),
        "trials": trials,
        "train": train_settings,
        "costs": settings.backtest.model_dump(mode="json"),
        "gate": settings.gate.model_dump(mode="json"),
        "venue": venue.to_dict(),
        "features": features,
        "scalpbot": library_versions()["scalpbot"],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    digest.update(pd.DatetimeIndex(bars.index).asi8.tobytes())
    digest.update(np.ascontiguousarray(bars.to_numpy(dtype=np.float64)).tobytes())
    if funding is not None and len(funding):
        digest.update(pd.DatetimeIndex(funding.index).as_unit("ms").asi8.tobytes())
        digest.update(funding.to_numpy(dtype=np.float64).tobytes())
    return digest.hexdigest()
